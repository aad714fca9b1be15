"""Environments a job can run in."""
from .._environment import Local, LocalAsync

__all__ = ["Local", "LocalAsync"]
