"""mapdeploy: run a Python function over many argument sets in parallel.

A drop-in replacement for GraphLab Create's ``deploy`` API::

    import mapdeploy as gl

    def add(x, y):
        return x + y

    job = gl.deploy.map_job.create(add, [{'x': 1, 'y': 2}, {'x': 3, 'y': 4}])
    job.get_results()      # [3, 7]
    job.get_metrics()      # one row per task: status, times, exceptions
"""
import logging as _logging

# Quiet by default: messages reach the user only once they configure logging
# (e.g. logging.basicConfig(level=logging.INFO)).
_logging.getLogger("mapdeploy").addHandler(_logging.NullHandler())

from ._errors import (FormatError, IntegrityError, JobNotFoundError, MapDeployError,
                      SerializationError, StorageError, TaskTimeout, WorkerDied)
from ._table import Column, Table
from . import deploy

__version__ = "0.1.0"

__all__ = [
    "Column", "FormatError", "IntegrityError", "JobNotFoundError", "MapDeployError",
    "SerializationError", "StorageError", "Table", "TaskTimeout", "WorkerDied", "deploy",
    "__version__",
]
