"""GraphLab Create's ``deploy`` API: ``map_job``, ``job``, ``environment``, ``jobs``, ``environments``.

Beyond GraphLab: ``stop_idle_workers()`` ends the warm workers that wait for the next job.
"""
from .._job import Job
from .._pool import stop_idle_workers
from .._session import environments, jobs
from . import environment, job, map_job

__all__ = ["Job", "environment", "environments", "job", "jobs", "map_job", "stop_idle_workers"]
