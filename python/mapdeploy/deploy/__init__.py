"""GraphLab Create's ``deploy`` API: ``map_job``, ``job``, ``environment``, ``jobs``, ``environments``."""
from .._job import Job
from .._session import environments, jobs
from . import environment, job, map_job

__all__ = ["Job", "environment", "environments", "job", "jobs", "map_job"]
