"""The local environments: LocalAsync (the default) and Local."""
from __future__ import annotations

import json
import os
import secrets
import time
from typing import Any

from . import _engine

__all__ = ["Local", "LocalAsync"]

# Below this a worker's interpreter (its libraries are address space too)
# cannot even start.
MIN_WORKER_MEMORY_LIMIT = 256 * 1024 * 1024
# Environment names become file names (escaped, up to 5 bytes a character).
MAX_NAME_LENGTH = 40
# Each worker is a process with its own interpreter; more than this on one
# machine is a typo (and 10**30 must not reach the C side as an overflow).
MAX_NUM_WORKERS = 1024


class _LocalEnvironment:
    _type = "Local"

    def __init__(self, name: str, num_workers: int | None = None,
                 worker_memory_limit: int | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"an environment name must be a non-empty str, not {name!r}")
        if len(name) > MAX_NAME_LENGTH:
            raise ValueError(f"environment name {name[:20]!r}... is {len(name)} characters long; "
                             f"at most {MAX_NAME_LENGTH} are allowed")
        if num_workers is not None and (
                isinstance(num_workers, bool) or not isinstance(num_workers, int)
            or not 1 <= num_workers <= MAX_NUM_WORKERS):
            raise ValueError(f"num_workers must be an int from 1 to {MAX_NUM_WORKERS} or None "
                             f"(one per core), not {num_workers!r}")
        if worker_memory_limit is not None and (
                isinstance(worker_memory_limit, bool) or not isinstance(worker_memory_limit, int)
                or not MIN_WORKER_MEMORY_LIMIT <= worker_memory_limit < 2 ** 63):
            raise ValueError(
                "worker_memory_limit must be None (no limit) or an int number of bytes of at least "
                f"{MIN_WORKER_MEMORY_LIMIT} (a worker's Python needs that much address space to "
                f"start), not {worker_memory_limit!r}")
        self.name = name
        self.num_workers = num_workers
        self.worker_memory_limit = worker_memory_limit
        self._save()

    def _record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"type": self._type, "name": self.name,
                                  "num_workers": self.num_workers}
        if self.worker_memory_limit is not None:  # records written before it existed stay equal
            record["worker_memory_limit"] = self.worker_memory_limit
        return record

    def _save(self) -> None:
        wanted = self._record()
        record = dict(wanted, created=time.time())
        folder = _engine.environments_dir()
        path = folder / f"{_file_name(self.name)}.json"
        text_path = str(path)
        try:
            if _SAVED.get(text_path) == (_signature(os.stat(text_path)), wanted):
                return
            with open(text_path, encoding="utf-8") as file:
                signature = _signature(os.fstat(file.fileno()))
                previous = json.load(file)
            if isinstance(previous, dict) and \
                    {k: v for k, v in previous.items() if k != "created"} == wanted:
                _remember(text_path, signature, wanted)
                return
        except (OSError, ValueError):
            pass  # missing or unreadable: written anew below
        # a name of its own per writer (threads share the pid), then one rename:
        # readers in any process see the old record or the new one, never a part
        temporary = folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            temporary.write_text(json.dumps(record))
            signature = _signature(os.stat(temporary))  # a rename keeps all three
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _remember(text_path, signature, wanted)

    def __repr__(self) -> str:
        workers = "" if self.num_workers is None else f', "num_workers": {self.num_workers}'
        if self.worker_memory_limit is not None:
            workers += f', "worker_memory_limit": {self.worker_memory_limit}'
        return f'{self._type}: ["name": {self.name}{workers}]'

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _LocalEnvironment) and self._record() == other._record()

    def __hash__(self) -> int:
        return hash((self._type, self.name, self.num_workers, self.worker_memory_limit))


class LocalAsync(_LocalEnvironment):
    """Runs jobs on this computer in the background.

    ``create`` returns at once; the job runs in a detached supervisor process
    and outlives the Python process that started it. Load it again later with
    ``mapdeploy.deploy.jobs[name]``. ``num_workers`` defaults to the number
    of cores. ``worker_memory_limit`` (bytes, default no limit) caps each
    worker's address space: a task that allocates past it fails with
    ``MemoryError`` (or ``WorkerDied`` if its worker cannot recover), and the
    other tasks of the job go on.
    """

    _type = "LocalAsync"


class Local(_LocalEnvironment):
    """Runs jobs on this computer; ``create`` returns when the job has ended.

    ``num_workers`` and ``worker_memory_limit`` are as for ``LocalAsync``.

    Ctrl-C while it waits cancels the job.
    """

    _type = "Local"


_TYPES: dict[str, type[_LocalEnvironment]] = {"LocalAsync": LocalAsync, "Local": Local}


# The record last read or written per file, by the file's identity: the
# default environment is saved on every job, and reading its JSON back each
# time cost more than the rest of the check.  Any change to the file (a
# replace is a new inode) makes the entry stale.
_SAVED: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}
_SAVED_MAX = 64


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _remember(path: str, signature: tuple[int, int, int], record: dict[str, Any]) -> None:
    if len(_SAVED) >= _SAVED_MAX:
        _SAVED.clear()
    _SAVED[path] = (signature, record)


def _file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else f"%{ord(c):04x}" for c in name)


def from_record(record: dict[str, Any]) -> _LocalEnvironment:
    kind = _TYPES.get(record.get("type", ""))
    if kind is None:
        raise ValueError(f"unknown environment type {record.get('type')!r}")
    env = kind.__new__(kind)
    env.name = record["name"]
    env.num_workers = record.get("num_workers")
    env.worker_memory_limit = record.get("worker_memory_limit")
    return env


def default() -> LocalAsync:
    return LocalAsync("async")
