"""The local environments: LocalAsync (the default) and Local."""
from __future__ import annotations

import json
import os
import secrets
import time
from typing import Any

from . import _engine

__all__ = ["Local", "LocalAsync"]


class _LocalEnvironment:
    _type = "Local"

    def __init__(self, name: str, num_workers: int | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"an environment name must be a non-empty str, not {name!r}")
        if num_workers is not None and (
                isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1):
            raise ValueError(f"num_workers must be a positive int or None (one per core), not {num_workers!r}")
        self.name = name
        self.num_workers = num_workers
        self._save()

    def _record(self) -> dict[str, Any]:
        return {"type": self._type, "name": self.name, "num_workers": self.num_workers}

    def _save(self) -> None:
        record = dict(self._record(), created=time.time())
        folder = _engine.environments_dir()
        path = folder / f"{_file_name(self.name)}.json"
        if path.exists():
            try:
                previous = json.loads(path.read_text())
                if {k: previous.get(k) for k in ("type", "name", "num_workers")} == self._record():
                    return
            except (OSError, ValueError):
                pass
        # a name of its own per writer (threads share the pid), then one rename:
        # readers in any process see the old record or the new one, never a part
        temporary = folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            temporary.write_text(json.dumps(record))
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def __repr__(self) -> str:
        workers = "" if self.num_workers is None else f', "num_workers": {self.num_workers}'
        return f'{self._type}: ["name": {self.name}{workers}]'

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _LocalEnvironment) and self._record() == other._record()

    def __hash__(self) -> int:
        return hash((self._type, self.name, self.num_workers))


class LocalAsync(_LocalEnvironment):
    """Runs jobs on this computer in the background.

    ``create`` returns at once; the job runs in a detached supervisor process
    and outlives the Python process that started it. Load it again later with
    ``mapdeploy.deploy.jobs[name]``. ``num_workers`` defaults to the number
    of cores.
    """

    _type = "LocalAsync"


class Local(_LocalEnvironment):
    """Runs jobs on this computer; ``create`` returns when the job has ended.

    Ctrl-C while it waits cancels the job.
    """

    _type = "Local"


_TYPES: dict[str, type[_LocalEnvironment]] = {"LocalAsync": LocalAsync, "Local": Local}


def _file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else f"%{ord(c):04x}" for c in name)


def from_record(record: dict[str, Any]) -> _LocalEnvironment:
    kind = _TYPES.get(record.get("type", ""))
    if kind is None:
        raise ValueError(f"unknown environment type {record.get('type')!r}")
    env = kind.__new__(kind)
    env.name = record["name"]
    env.num_workers = record.get("num_workers")
    return env


def default() -> LocalAsync:
    return LocalAsync("async")
