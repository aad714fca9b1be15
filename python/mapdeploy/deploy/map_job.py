"""map_job.create: one task per argument set, in parallel."""
from __future__ import annotations

from typing import Any, Callable, Iterable

from .._job import Job
from .._submit import check_function, materialize, submit

__all__ = ["create"]


def create(function: Callable[..., Any], parameter_set: Iterable[dict[str, Any]],
           name: str | None = None, environment: Any = None,
           combiner_function: Callable[..., Any] | None = None) -> Job:
    """Runs ``function(**kwargs)`` for every dict in ``parameter_set``, in parallel.

    Equivalent to ``[function(**kwargs) for kwargs in parameter_set]``, with
    every task's status, timing and exception recorded. Task ``i`` is named
    ``<function name>-0-<i>``.

    Args:
        function: a function (lambdas and closures too; not a bound method).
        parameter_set: an iterable of dicts of keyword arguments (a generator is fine).
        name: the job name (letters, digits, '-', '_'); default
            ``<function name>-<Mon-DD-YYYY-HH-MM-SS>``. A name already used in the
            session gets '-' and five random hex characters appended.
        environment: None (the default ``LocalAsync('async')``), the name of an
            environment in ``deploy.environments``, or a ``Local``/``LocalAsync`` object.
        combiner_function: called once all map tasks have ended, as
            ``combiner(**{task_name: result})`` (None for a failed task); its value is
            what ``get_results()`` returns.

    Returns:
        The Job, at once for ``LocalAsync``, when it has ended for ``Local``.

    Raises:
        RuntimeError: parameter_set is empty.
        TypeError: parameter_set holds something other than dicts; function is a bound
            method; environment is of an unknown type.
        ValueError: the name is not valid.
        mapdeploy.SerializationError: the function or an argument cannot be pickled
            (the message names the object).
    """
    check_function(function, "function")
    if combiner_function is not None:
        check_function(combiner_function, "combiner_function")
    kwargs_list = materialize(parameter_set)
    return submit("map", function, kwargs_list, name, environment, combiner_function,
                  lambda i: f"parameter_set[{i}]")
