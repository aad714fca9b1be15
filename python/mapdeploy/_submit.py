"""Turning a function and its argument sets into a job folder and starting it."""
from __future__ import annotations

import inspect
import logging
import os
import re
import secrets
import shutil
import sys
import time
import types
from typing import Any, Callable, Iterable

from . import _engine, _environment, _pool
from ._job import Job
from ._mapdeploy import JobStore, create_job, first_bad_kwargs, flat_pickles
from ._pickling import FlatPickles, dumps_all_kwargs, dumps_function

logger = logging.getLogger("mapdeploy")

_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9\-_]+$")
# Tasks per shard file at most (create_job uses fewer for large kwargs): few
# files, since creating each one is the slowest part of writing a job folder.
_SHARD_SIZE = 65536
_MAX_NAME_ATTEMPTS = 64
DEFAULT_RETRY_ON: tuple[str, ...] = ("WorkerDied", "TaskTimeout")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A job name is a folder name (at most 255 bytes); room is left for the
# "-xxxxx" a repeated name gets.
MAX_NAME_LENGTH = 128


def function_name(function: Callable[..., Any]) -> str:
    """A name usable in job and task names ('<lambda>' becomes 'lambda')."""
    raw = getattr(function, "__name__", None) or type(function).__name__
    cleaned = re.sub(r"[^a-zA-Z0-9\-_]", "", raw)
    return cleaned or "function"


def check_function(function: Any, argument: str) -> None:
    if inspect.ismethod(function):
        raise TypeError(
            f"{argument} must be a plain function, not the bound method {function.__qualname__}; "
            "use a module-level function, a lambda or a closure that calls the method instead")
    if not callable(function):
        raise TypeError(f"{argument} must be a function, not {type(function).__name__}")


def check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"Job name {name[:20]!r}... is {len(name)} characters long; a job name "
                         f"has at most {MAX_NAME_LENGTH} (it names a folder)")
    if not _NAME_PATTERN.match(name):
        raise ValueError(f"Job name {name!r} is not valid: a job name may contain only letters, "
                         "digits, '-' and '_' (it must match ^[a-zA-Z0-9-_]+$)")
    return name


def check_retries(task_timeout: Any, max_retries: Any, retry_on: Any) -> dict[str, Any]:
    """The job definition keys for a timeout and retries, checked."""
    if task_timeout is not None:
        if isinstance(task_timeout, bool) or not isinstance(task_timeout, (int, float)):
            raise TypeError(f"task_timeout must be a number of seconds or None, "
                            f"not {type(task_timeout).__name__}")
        if not task_timeout > 0 or task_timeout != task_timeout or task_timeout == float("inf"):
            raise ValueError(f"task_timeout must be a positive number of seconds, not "
                             f"{task_timeout!r}; pass None for no limit")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int):
        raise TypeError(f"max_retries must be an int, not {type(max_retries).__name__}")
    if not 0 <= max_retries < 2**32:
        raise ValueError(f"max_retries must be 0 or more, not {max_retries}")
    if isinstance(retry_on, (str, type)):
        retry_on = (retry_on,)
    names: list[str] = []
    for entry in retry_on:
        name = entry.__name__ if isinstance(entry, type) and issubclass(entry, BaseException) \
            else entry
        if not isinstance(name, str) or not _IDENTIFIER.match(name):
            raise TypeError("retry_on must hold 'WorkerDied', 'TaskTimeout', 'Exception' or "
                            f"exception classes or class names; got {entry!r}")
        names.append(name)
    return {"task_timeout": None if task_timeout is None else float(task_timeout),
            "max_retries": max_retries, "retry_on": names}


def resolve_environment(environment: Any) -> Any:
    """None → the default LocalAsync('async'); a str → looked up in deploy.environments."""
    if environment is None:
        return _environment.default()
    if isinstance(environment, str):
        from ._session import environments
        return environments[environment]
    if isinstance(environment, _environment._LocalEnvironment):
        return environment
    raise TypeError(
        f"environment must be None, the name of an environment in deploy.environments, or a "
        f"Local or LocalAsync object; got {type(environment).__name__}")


# Source text by code object: inspect.getsource takes ~0.2 ms a call, and the
# same function is usually submitted again and again.
_SOURCES: dict[types.CodeType, str | None] = {}
_SOURCES_MAX = 256


def _source(function: Callable[..., Any]) -> str | None:
    code = getattr(function, "__code__", None)
    if isinstance(code, types.CodeType) and code in _SOURCES:
        return _SOURCES[code]
    try:
        source: str | None = inspect.getsource(function)
    except (OSError, TypeError):
        source = None
    if isinstance(code, types.CodeType):
        if len(_SOURCES) >= _SOURCES_MAX:
            _SOURCES.pop(next(iter(_SOURCES)))
        _SOURCES[code] = source
    return source


def _sys_path() -> list[str]:
    cwd = os.getcwd()
    return [os.path.abspath(entry) if entry else cwd for entry in sys.path if isinstance(entry, str)]


def submit(kind: str, function: Callable[..., Any], kwargs_list: list[dict[str, Any]],
           name: str | None, environment: Any, combiner: Callable[..., Any] | None,
           argument_name: Callable[[int], str], options: dict[str, Any] | None = None,
           flat: FlatPickles | None = None) -> Job:
    """Pickles everything (failing before anything is written), creates the job folder, starts it.

    argument_name(i) names kwargs_list[i] in errors (only called when there is one); flat
    is what flat_pickles made of kwargs_list, when the caller has it already.
    """
    env = resolve_environment(environment)
    linger = _pool.linger()  # a bad setting stops the job before anything is written
    fname = function_name(function)
    base_name = check_name(name) if name is not None else \
        f"{fname}-{time.strftime('%b-%d-%Y-%H-%M-%S')}"
    function_bytes = dumps_function(function, f"the function {fname!r}")
    combiner_name = function_name(combiner) if combiner is not None else None
    combiner_bytes = (dumps_function(combiner, f"the combiner function {combiner_name!r}")
                      if combiner is not None else None)
    pickled = dumps_all_kwargs(kwargs_list, argument_name, flat)
    definition = {
        "name": base_name,
        "job_kind": kind,
        "function_name": fname,
        "function": function_bytes,
        "combiner_name": combiner_name,
        "combiner": combiner_bytes,
        "python_version": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "cwd": os.getcwd(),
        "executable": sys.executable or "",
        "prefix": sys.prefix,
        "exec_prefix": sys.exec_prefix,
        "sys_path": _sys_path(),
        "num_workers": env.num_workers or 0,
        "worker_memory_limit": env.worker_memory_limit or 0,
        "created": time.time(),
        "slots_dir": str(_engine.slots_dir()),
        "worker_budget": _engine.worker_budget(),
        "environment": env._record(),
        "code": _source(function),
        "combiner_code": _source(combiner) if combiner is not None else None,
        **(options or {}),
    }
    supervisor = _engine.executable(_engine.SUPERVISOR)
    worker = _engine.executable(_engine.WORKER)
    jobs_dir = _engine.jobs_dir().absolute()  # workers find blobs by this path
    pool = _pool.pool_name(definition, supervisor, worker) if linger > 0 else None
    # the folder this environment's warm pool made ahead of time, if it did
    spare = str(jobs_dir / _pool.spare_name(pool)) if pool is not None else None
    job_name = base_name
    for _ in range(_MAX_NAME_ATTEMPTS):
        definition["name"] = job_name
        path = jobs_dir / job_name
        try:
            create_job(str(path), definition, pickled, _SHARD_SIZE, spare)
            break
        except FileExistsError:
            job_name = f"{base_name}-{secrets.token_hex(3)[:5]}"
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)  # a half-written folder holds nothing of value
            raise
    else:
        raise RuntimeError(f"could not find a free job name starting with {base_name!r}")
    store = JobStore(str(path))
    try:
        if pool is None:
            store.launch(supervisor, worker)
        else:
            store.launch(supervisor, worker, pool=pool, pool_dir=str(_pool.pools_dir()),
                         linger=linger)
    except BaseException as error:
        store.write_status("Failed", error=f"the job could not be started: {error}")
        raise
    job = Job(store)
    logger.info("job %s started: %d task(s) of %s in %r; logs in %s", job.name, len(kwargs_list),
                function_name(function), env, job.get_log_file_path())
    if isinstance(env, _environment.Local):
        try:
            job._wait_progress(None, None)
        except KeyboardInterrupt:
            job.cancel()
            raise
    return job


def materialize(parameter_set: Any) -> tuple[list[dict[str, Any]], FlatPickles]:
    """The parameter set as a list of kwargs dicts, checked, with the pickles of its plain dicts.

    The plain dicts are pickled here, in the walk that checks them (one C
    loop over every dict, where a separate check cost another ~37 ms per
    million); nothing can fail in it, so errors come in the same order.
    """
    if isinstance(parameter_set, (str, bytes, dict)) or not isinstance(parameter_set, Iterable):
        raise TypeError("parameter_set has to be an iterable of dictionaries, one dictionary of "
                        "keyword arguments per call (use {} for a function without arguments); "
                        f"got {type(parameter_set).__name__}")
    # a list is taken as it is: copying a million references costs ~20 ms,
    # and nothing here changes it
    kwargs_list = parameter_set if type(parameter_set) is list else list(parameter_set)
    if not kwargs_list:
        raise RuntimeError("An empty parameter_set was given. Nothing to do.")
    flat = flat_pickles(kwargs_list)
    others = flat[1]  # a plain dict is a dict with str keys: only these need a look
    index = first_bad_kwargs([kwargs_list[i] for i in others]) if others else -1
    if index >= 0:
        index = others[index]
        kwargs = kwargs_list[index]
        if not isinstance(kwargs, dict):
            raise TypeError(
                "parameter_set has to be an iterable of dictionaries, one dictionary of keyword "
                f"arguments per call (use {{}} for a function without arguments); element {index} "
                f"is a {type(kwargs).__name__}: {kwargs!r:.80}")
        for key in kwargs:
            if not isinstance(key, str):
                raise TypeError(f"parameter_set[{index}] has the key {key!r}; keyword argument "
                                "names must be str")
    return kwargs_list, flat
