"""The exception hierarchy: everything mapdeploy raises itself derives from MapDeployError.

The contract's own exceptions keep their types (``RuntimeError``,
``TypeError``, ``ValueError``); where mapdeploy adds a more specific error it
derives from both, so ``except TypeError`` in old GraphLab code still works.
"""
from __future__ import annotations

import pickle

from ._mapdeploy import FormatError, IntegrityError, MapDeployError, StorageError

__all__ = [
    "MapDeployError",
    "IntegrityError",
    "FormatError",
    "StorageError",
    "SerializationError",
    "JobNotFoundError",
    "TaskTimeout",
    "WorkerDied",
]


class SerializationError(MapDeployError, pickle.PicklingError, TypeError):
    """A function, argument or value could not be pickled; the message names the object."""


class JobNotFoundError(MapDeployError, KeyError):
    """No job or environment by that name or index exists in the session."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class TaskTimeout(MapDeployError):
    """A task ran longer than its job's ``task_timeout``; its worker was killed and replaced.

    Tasks never raise it in your code: it is the ``exception`` a timed-out
    task shows in ``get_metrics()``, and a name ``retry_on`` accepts.
    """


class WorkerDied(MapDeployError):
    """The worker process running a task died (a signal, ``os._exit``, the OOM killer).

    Like ``TaskTimeout``, it is what ``get_metrics()`` shows for such a task
    and a name ``retry_on`` accepts.
    """
