"""job.create: one function call as a job."""
from __future__ import annotations

from typing import Any, Callable

from .._job import Job
from .._submit import check_function, function_name, submit

__all__ = ["create"]


def create(function: Callable[..., Any], name: str | None = None, environment: Any = None,
           **kwargs: Any) -> Job:
    """Runs ``function(**kwargs)`` as a job with one task named after the function.

    The job ends ``Failed`` when the function raises; ``get_error()`` says why.
    See ``map_job.create`` for ``name`` and ``environment``.
    """
    check_function(function, "function")
    where = f"the keyword arguments of {function_name(function)}"
    return submit("single", function, [kwargs], name, environment, None, lambda i: where)
