"""Pickling of functions and arguments, with errors that name the offending object.

Functions are pickled with cloudpickle (lambdas, closures, notebook functions).
Argument dicts are pickled with the standard pickler when that is safe, which
is several times faster, and with cloudpickle when the plain pickle refers to
``__main__`` (objects defined in a script or notebook, which a worker cannot
import by name).
"""
from __future__ import annotations

import linecache
import operator
import os
import pickle
import sys
import types
from typing import Any, Callable, Iterator

import cloudpickle

from . import _code_filename
from ._errors import SerializationError
from ._mapdeploy import blob_collector, flat_pickles

PROTOCOL = 5
_MAIN_MARKER = b"__main__"


def _describe(obj: Any) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}" if kind.__module__ != "builtins" else kind.__qualname__


def _children(obj: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield f"{path}[{key!r}]", value
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for index, value in enumerate(obj):
            yield f"{path}[{index}]", value


def _function_parts(func: Any, path: str) -> Iterator[tuple[str, Any]]:
    code = getattr(func, "__code__", None)
    globals_ = getattr(func, "__globals__", {})
    if code is not None:
        for name in code.co_names:
            if name in globals_:
                yield f"global {name!r} used by {path}", globals_[name]
        for name, cell in zip(code.co_freevars, getattr(func, "__closure__", None) or ()):
            try:
                yield f"variable {name!r} captured by {path}", cell.cell_contents
            except ValueError:
                continue
    for index, default in enumerate(getattr(func, "__defaults__", None) or ()):
        yield f"default argument {index} of {path}", default
    for name, default in (getattr(func, "__kwdefaults__", None) or {}).items():
        yield f"default of keyword argument {name!r} of {path}", default


def _find_culprit(obj: Any, path: str, depth: int = 0) -> tuple[str, Any, BaseException] | None:
    """The innermost part of obj that cannot be pickled, as (where, object, error)."""
    try:
        cloudpickle.dumps(obj, protocol=PROTOCOL)
        return None
    except Exception as error:  # noqa: BLE001 - any pickling failure is what we look for
        own_error = error
    if depth < 6:
        parts = _function_parts(obj, path) if callable(obj) and hasattr(obj, "__code__") else _children(obj, path)
        for where, child in parts:
            found = _find_culprit(child, where, depth + 1)
            if found is not None:
                return found
    return path, obj, own_error


def _fail(what: str, obj: Any) -> SerializationError:
    found = _find_culprit(obj, what)
    if found is None:  # pickles fine on its own: the failure came from a combination
        return SerializationError(f"{what} cannot be pickled")
    where, culprit, error = found
    detail = f"{type(error).__name__}: {error}"
    if where == what:
        return SerializationError(
            f"{what} (a {_describe(culprit)}) cannot be pickled ({detail}). "
            "Pass only values that pickle; create resources such as connections, locks "
            "and open files inside the function instead.")
    return SerializationError(
        f"{what} cannot be pickled: {where} is a {_describe(culprit)}, which cannot be "
        f"pickled ({detail}). Create it inside the function, or pass what is needed to "
        "build it as an argument.")


def _unimportable_module(func: Any) -> Any:
    """The function's module when a worker could not import it by name, else None.

    cloudpickle pickles by value only functions of ``__main__``; a function
    from a module made by ``runpy.run_path``, ``exec`` or a notebook tool has
    a module with no import spec, which workers cannot import either.
    """
    name = getattr(func, "__module__", None)
    module = sys.modules.get(name) if isinstance(name, str) else None
    if module is None or name == "__main__" or getattr(module, "__spec__", None) is not None:
        return None
    return module


# At most this much source text travels with a function (notebook cells).
_SOURCES_LIMIT = 4 * 1024 * 1024


def _unsaved_sources() -> dict[str, tuple[int, None, list[str], str]]:
    """linecache entries of code that exists in no file: notebook cells, IPython input.

    A worker formats a task's traceback with linecache, which finds the
    lines of a script or module by reading its file; the cells of a notebook
    are only in this process's linecache, so their lines travel with the job.
    """
    found: dict[str, tuple[int, None, list[str], str]] = {}
    total = 0
    for filename, entry in list(linecache.cache.items()):
        if len(entry) != 4 or not entry[2] or os.path.exists(filename):
            continue
        size = entry[0] if isinstance(entry[0], int) else 0
        if total + size > _SOURCES_LIMIT:
            break
        total += size
        found[filename] = (size, None, list(entry[2]), filename)  # mtime None: never re-checked
    return found


class _CacheUpdate:
    """Unpickles as ``linecache.cache.update(entries)``, with no import of mapdeploy."""

    def __init__(self, entries: dict[str, Any]) -> None:
        self.entries = entries

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict.update, (_LinecacheCache(), self.entries))


class _LinecacheCache:
    """Unpickles as the unpickling process's ``linecache.cache``."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (getattr, (linecache, "cache"))


class _WithSources:
    """Unpickles as the function, after adding the source lines to linecache."""

    def __init__(self, func: Callable[..., Any], entries: dict[str, Any]) -> None:
        self.func = func
        self.entries = entries

    def __reduce__(self) -> tuple[Any, ...]:
        # getitem((update(...) -> None, func), 1): the update runs first.
        return (operator.getitem, ((_CacheUpdate(self.entries), self.func), 1))


class _WithCodeFilename:
    """Unpickles as the function with its code's original file name (see _code_filename)."""

    def __init__(self, func: Callable[..., Any], filename: str) -> None:
        self.func = func
        self.filename = filename

    def __reduce__(self) -> tuple[Any, ...]:
        return (_code_filename.with_code_filename, (self.func, self.filename))


def _by_reference(func: Any) -> bool:
    """True when cloudpickle would write func as a reference for workers to import.

    That is a function found under its own name in an importable module that was
    not registered to be pickled by value; the standard pickler writes the same
    reference in microseconds, where cloudpickle with our wrappers takes ~0.2 ms.
    """
    name = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if (not isinstance(name, str) or not isinstance(qualname, str) or name == "__main__"
            or "<" in qualname):
        return False
    module = sys.modules.get(name)
    if module is None or getattr(module, "__spec__", None) is None:
        return False
    registered = cloudpickle.list_registry_pickle_by_value()
    parts = name.split(".")
    if any(".".join(parts[:i]) in registered for i in range(1, len(parts) + 1)):
        return False
    found: Any = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found is func


def dumps_function(func: Callable[..., Any], what: str) -> bytes:
    """cloudpickle of a function; SerializationError naming the part that fails.

    The source lines of notebook cells go with it, so tracebacks of failed
    tasks show the user's own lines.
    """
    if _by_reference(func):
        try:
            return pickle.dumps(func, protocol=PROTOCOL)
        except Exception:  # noqa: BLE001 - cloudpickle below says what is wrong
            pass
    by_value = _unimportable_module(func)
    if by_value is not None:
        cloudpickle.register_pickle_by_value(by_value)
    cloudpickle.register_pickle_by_value(_code_filename)
    try:
        payload: Any = func
        code = getattr(func, "__code__", None)
        if isinstance(code, types.CodeType):
            payload = _WithCodeFilename(func, code.co_filename)
        sources = _unsaved_sources()
        if sources:
            payload = _WithSources(payload, sources)
        return cloudpickle.dumps(payload, protocol=PROTOCOL)
    except Exception:  # noqa: BLE001
        raise _fail(what, func) from None
    finally:
        cloudpickle.unregister_pickle_by_value(_code_filename)
        if by_value is not None:
            cloudpickle.unregister_pickle_by_value(by_value)


def dumps_kwargs(kwargs: dict[str, Any], what: str) -> Any:
    """Pickle of one task's keyword arguments; SerializationError naming the bad value.

    ``(pickle, buffers)`` when large buffers travel out of band (see
    dumps_all_kwargs).
    """
    try:
        data = _OutOfBand(pickle.dumps)(kwargs)
        if _MAIN_MARKER not in (data if isinstance(data, bytes) else data[0]):
            return data
    except Exception:  # noqa: BLE001 - fall back to cloudpickle, which handles more
        pass
    try:
        return _OutOfBand(cloudpickle.dumps)(kwargs)
    except Exception:  # noqa: BLE001
        raise _fail(what, kwargs) from None


class _OutOfBand:
    """dumps(obj) with buffers of BLOB_THRESHOLD bytes or more out of band.

    Calling it returns the pickle, or (pickle, buffers) when it has
    out-of-band buffers (numpy arrays and anything else pickled through a
    ``PickleBuffer``): create_job writes each buffer once as a blob. One
    instance serves many dicts, so that a dict costs no new callback.
    """

    def __init__(self, dumps: Callable[..., bytes]) -> None:
        self._dumps = dumps
        self._buffers: list[Any] = []
        self._callback = blob_collector(self._buffers)

    def __call__(self, obj: Any) -> Any:
        buffers = self._buffers
        buffers.clear()   # left over from a dumps that failed
        data = self._dumps(obj, protocol=PROTOCOL, buffer_callback=self._callback)
        if not buffers:
            return data
        taken = buffers[:]
        buffers.clear()
        return data, taken


# flat_pickles' answer: the pickles (None where a dict is not plain), and
# the indices of those None entries
FlatPickles = tuple[list[Any], list[int]]


def dumps_all_kwargs(kwargs_list: list[dict[str, Any]], what: Callable[[int], str],
                     flat: FlatPickles | None = None) -> list[Any]:
    """Pickles of every task's keyword arguments, in order.

    Dicts of plain scalars are written by ``flat_pickles`` in C; the others
    by one C-level ``pickle.dumps`` each (about 1 µs a task instead of 2
    through ``dumps_kwargs``). Only the dicts that fail or refer to
    ``__main__`` go through ``dumps_kwargs``; ``what(i)`` names dict i in its
    error, built only when there is one. ``flat``: what ``flat_pickles``
    made of ``kwargs_list`` already, if anything.
    """
    # Dicts of plain scalars (most parameter sets) are written by C with no
    # pickle module at all (~60 ns instead of ~1 us each; nothing in them can
    # refer to __main__); flat_pickles leaves None for every other dict, and
    # says which those are.
    pickled: list[Any]
    pickled, rest = flat if flat is not None else flat_pickles(kwargs_list)
    if not rest:
        return pickled
    dumps = _OutOfBand(pickle.dumps)
    try:
        for i in rest:
            pickled[i] = dumps(kwargs_list[i])
    except Exception:  # noqa: BLE001 - some dict needs cloudpickle, or fails: one at a time
        for i in rest:
            pickled[i] = dumps_kwargs(kwargs_list[i], what(i))
        return pickled
    marker = _MAIN_MARKER
    for i in rest:
        data = pickled[i]
        if marker in (data if isinstance(data, bytes) else data[0]):
            pickled[i] = dumps_kwargs(kwargs_list[i], what(i))
    return pickled


def loads(data: bytes) -> Any:
    """Unpickles bytes whose authenticity the caller has checked."""
    return pickle.loads(data)
