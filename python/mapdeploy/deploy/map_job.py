"""map_job.create: one task per argument set, in parallel."""
from __future__ import annotations

from typing import Any, Callable, Iterable

from .._job import Job
from .._submit import DEFAULT_RETRY_ON, check_function, check_retries, materialize, submit

__all__ = ["create"]


def create(function: Callable[..., Any], parameter_set: Iterable[dict[str, Any]],
           name: str | None = None, environment: Any = None,
           combiner_function: Callable[..., Any] | None = None, *,
           task_timeout: float | None = None, max_retries: int = 0,
           retry_on: Iterable[str | type] = DEFAULT_RETRY_ON) -> Job:
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
        task_timeout: seconds a task may run (an addition to GraphLab's API); a task
            still running after that is stopped (its worker is killed and replaced) and
            fails with exception ``TaskTimeout``. None (the default): no limit. With a
            timeout, each worker is sent one task at a time.
        max_retries: how many more times a task whose failure is retryable runs again
            (default 0). Every attempt is recorded; ``get_metrics(detailed=True)`` shows
            the attempt a task's row comes from.
        retry_on: which failures are retried: ``'WorkerDied'``, ``'TaskTimeout'``,
            ``'Exception'`` (any exception the function raises) and exception class names
            or classes (matched by class name). Default: worker deaths and timeouts.

    Returns:
        The Job, at once for ``LocalAsync``, when it has ended for ``Local``.

    Raises:
        RuntimeError: parameter_set is empty.
        TypeError: parameter_set holds something other than dicts; function is a bound
            method; environment is of an unknown type.
        ValueError: the name is not valid; task_timeout is not positive; max_retries is
            negative.
        mapdeploy.SerializationError: the function or an argument cannot be pickled
            (the message names the object).
    """
    check_function(function, "function")
    if combiner_function is not None:
        check_function(combiner_function, "combiner_function")
    kwargs_list, flat = materialize(parameter_set)
    options = check_retries(task_timeout, max_retries, retry_on)
    return submit("map", function, kwargs_list, name, environment, combiner_function,
                  lambda i: f"parameter_set[{i}]", options, flat)
