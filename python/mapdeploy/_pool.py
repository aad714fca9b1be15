"""Warm pools: after a job, its supervisor and workers wait a while for the next job of the same environment.

A job started from the same Python environment (interpreter, ``sys.path``, working directory,
environment variables, memory limit, session folder) within ``MAPDEPLOY_POOL_LINGER`` seconds
of the previous job's end runs on the workers that job left running, without starting a
supervisor or a Python interpreter (docs/architecture.md, "Warm workers").
"""
from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from . import _engine
from ._mapdeploy import SPARE_PREFIX, pool_digest

DEFAULT_LINGER = 60.0
MAX_LINGER = 86400.0
_STOP_SECONDS = 10.0


def linger() -> float:
    """Seconds a finished job's workers wait for the next job: MAPDEPLOY_POOL_LINGER, else 60; 0 turns pools off."""
    return float(_engine.setting("MAPDEPLOY_POOL_LINGER", float, 0.0, MAX_LINGER, DEFAULT_LINGER,
                                 f"a number of seconds from 0 to {MAX_LINGER:g} (how long idle "
                                 "workers wait for the next job; 0 turns that off)"))


def pools_dir() -> Path:
    """Where each lingering pool holds a file with its pid: <home>/pools (not created here)."""
    return _engine.home_path() / "pools"


def pool_name(definition: dict[str, Any], supervisor: str, worker: str) -> str:
    """The pool a job may run on: a digest of everything its workers' interpreter depends on.

    Two jobs share warm workers only when all of it is equal, so a job never sees another
    interpreter, path, working directory, environment variable or memory limit than the one
    it was submitted from.
    """
    parts = [str(_engine.home_path()), supervisor, worker, sys.version]
    parts += [repr(definition.get(key)) for key in (
        "python_version", "cwd", "executable", "prefix", "exec_prefix", "sys_path",
        "worker_memory_limit", "slots_dir")]
    # with the process environment, which the pool's workers inherited
    return pool_digest(parts)


def spare_name(pool: str) -> str:
    """The name of the job folder a pool makes ahead of time for its next job, in the jobs folder.

    Listings skip it (it starts with '.'); csrc/supervisor/spare.c says why it exists.
    """
    return SPARE_PREFIX + pool


def _live_pools() -> list[tuple[str, int]]:
    """(name, pid) of every pool of the session that lingers or runs a job now."""
    folder = pools_dir()
    found: list[tuple[str, int]] = []
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        try:
            with open(entry, "rb") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    text = handle.read(32).decode("ascii", "replace").strip()
                    found.append((entry.name, int(text) if text.isdigit() else 0))
                    continue
                fcntl.flock(handle, fcntl.LOCK_UN)
        except OSError:
            continue
    return found


def _wait_exited(pid: int, deadline: float) -> None:
    """Returns once pid has exited (gone, or a zombie), or at deadline."""
    while pid > 0 and time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                if handle.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    return
        except (OSError, IndexError):
            return
        time.sleep(0.001)


def list_pools() -> list[dict[str, Any]]:
    """The session's pools of warm workers: name and supervisor pid of each."""
    return [{"name": name, "pid": pid} for name, pid in _live_pools()]


def stop_idle_workers() -> int:
    """Stops every pool of warm workers of the session that waits for a job; returns how many stopped.

    It returns once their processes have exited. A pool running a job is left alone (it
    stops by itself after the job plus the linger time); cancel the job to stop it now.
    """
    stopped = 0
    for name, pid in _live_pools():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(_STOP_SECONDS)
            try:
                sock.connect("\0mapdeploy-pool-" + name)
                sock.sendall(b"S")
                if sock.recv(1) == b"S":
                    stopped += 1
                    while sock.recv(64):  # EOF: the pool process is exiting
                        pass
                    _wait_exited(pid, time.monotonic() + _STOP_SECONDS)
            except OSError:
                continue  # busy with a job, or gone already
    return stopped
