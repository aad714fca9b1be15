"""The session: every job and environment this user created, kept in the session folder.

Jobs are their folders under ``<home>/jobs``; environments are small JSON
records under ``<home>/environments``. Both registries read the folder each
time, so another Python process sees the same jobs.

Several processes may list, create and delete at the same time: a job
folder is complete once its ``job`` file exists (written last), a deletion
first renames the folder out of the registry (one atomic step that exactly
one deleting process wins) and only then removes it, and anything that
vanishes while it is being read is simply not listed.
"""
from __future__ import annotations

import fnmatch
import json
import logging
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

from . import _engine, _environment
from ._errors import JobNotFoundError, MapDeployError
from ._job import FINAL_STATES, Job
from ._mapdeploy import JobStore
from ._table import Table

__all__ = ["jobs", "environments"]

logger = logging.getLogger("mapdeploy")


def _date(seconds: float | None) -> str | None:
    return None if seconds is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


class _Registry:
    """A session registry: ``deploy.jobs`` or ``deploy.environments``.

    ``list()`` gives a table, newest first; ``registry[index or name]`` loads an
    entry; ``del registry[...]`` and ``delete(...)`` remove entries (a running
    job must be cancelled first). Both read the session folder each time, so
    every Python process of the user sees the same entries.
    """

    _what = "item"

    def _entries(self) -> list[tuple[str, str, float]]:
        """(name, type or environment, created), newest first."""
        raise NotImplementedError

    def _load(self, name: str) -> Any:
        raise NotImplementedError

    def _remove(self, name: str) -> None:
        raise NotImplementedError

    def _column(self) -> str:
        raise NotImplementedError

    def list(self) -> Table:
        """A table of the session's entries, newest first: Index, Name, type, Creation date."""
        entries = self._entries()
        return Table({
            "Index": list(range(len(entries))),
            "Name": [name for name, _, _ in entries],
            self._column(): [kind for _, kind, _ in entries],
            "Creation date": [_date(created) for _, _, created in entries],
        })

    def _exists(self, name: str) -> bool:
        return name in {n for n, _, _ in self._entries()}

    def _name_of(self, key: Any) -> str:
        if isinstance(key, bool):
            raise TypeError(f"a {self._what} is looked up by index (int) or name (str), not bool")
        if isinstance(key, int):
            entries = self._entries()
            if not -len(entries) <= key < len(entries):
                raise JobNotFoundError(f"there is no {self._what} with index {key}; the session has "
                                       f"{len(entries)} (see .list())")
            return entries[key][0]
        if isinstance(key, str):
            if not self._exists(key):
                raise JobNotFoundError(f"there is no {self._what} named {key!r} in the session "
                                       f"({_engine.home()}); see .list()")
            return key
        name = getattr(key, "name", None)
        if isinstance(name, str):
            return self._name_of(name)
        raise TypeError(f"a {self._what} is looked up by index (int) or name (str), "
                        f"not {type(key).__name__}")

    def __getitem__(self, key: int | str) -> Any:
        return self._load(self._name_of(key))

    def __delitem__(self, key: int | str) -> None:
        self._remove(self._name_of(key))

    def __len__(self) -> int:
        return len(self._entries())

    def __iter__(self) -> Iterator[str]:
        return iter([name for name, _, _ in self._entries()])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._exists(name)

    def delete(self, item: Any = None, pattern: str | None = None, silent: bool = False) -> None:
        """Deletes entries by index, name or object (``item``, or a list of them) and/or by fnmatch ``pattern``.

        With ``silent=False`` an item that does not exist or cannot be deleted
        raises (``JobNotFoundError``, a ``KeyError``, when it does not exist,
        also when another process deleted it a moment ago); with
        ``silent=True`` it is skipped. An entry that matched ``pattern`` and
        that another process deleted meanwhile is skipped either way: it is
        gone, as asked.
        """
        if item is None and pattern is None:
            raise ValueError("give an item (index, name or object) or a pattern to delete")
        if pattern is not None and not isinstance(pattern, str):
            raise TypeError(f"pattern must be an fnmatch pattern (str), not {type(pattern).__name__}")
        names: list[str] = []
        items = item if isinstance(item, (list, tuple)) else ([] if item is None else [item])
        for one in items:
            try:
                names.append(self._name_of(one))
            except (KeyError, TypeError):
                if not silent:
                    raise
        named = set(names)
        if pattern is not None:
            names.extend(n for n, _, _ in self._entries() if fnmatch.fnmatchcase(n, pattern))
        for name in dict.fromkeys(names):
            try:
                self._remove(name)
            except JobNotFoundError:
                if not silent and name in named:
                    raise
            except (MapDeployError, RuntimeError, OSError):
                if not silent:
                    raise

    def __repr__(self) -> str:
        return str(self.list())

    def _repr_html_(self) -> str:
        return self.list()._repr_html_()


class _Jobs(_Registry):
    _what = "job"

    def _column(self) -> str:
        return "Environment"

    def _entries(self) -> list[tuple[str, str, float]]:
        entries = []
        for folder in _engine.jobs_dir().iterdir():
            # dot names are folders being deleted (see _remove); no job name starts with one
            if folder.name.startswith(".") or not (folder / "job").is_file():
                continue
            try:
                definition = JobStore(str(folder)).definition()
            except (MapDeployError, OSError) as error:
                if (folder / "job").is_file():
                    logger.warning("skipping the unreadable job folder %s: %s", folder, error)
                continue  # else another process deleted it while we read: not a job any more
            env = definition.get("environment") or {}
            entries.append((folder.name, f"{env.get('type')}: {env.get('name')}",
                            definition.get("created") or 0.0))
        entries.sort(key=lambda entry: (-entry[2], entry[0]))
        return entries

    def _exists(self, name: str) -> bool:
        # One stat instead of reading every definition. A job folder that
        # exists but cannot be read (a tampered definition, a key others can
        # read) is left out of list(), but asking for it by name must say why
        # it cannot be loaded, not that it does not exist. The checks keep
        # "../x" and the like out of the jobs folder.
        return (name not in ("", ".", "..") and "/" not in name and "\0" not in name
                and (_engine.jobs_dir() / name / "job").is_file())

    def _not_found(self, name: str, why: str) -> JobNotFoundError:
        return JobNotFoundError(f"there is no job named {name!r} in the session "
                                f"({_engine.home()}){why}; see .list()")

    def _load(self, name: str) -> Job:
        folder = _engine.jobs_dir() / name
        try:
            return Job(JobStore(str(folder)))
        except (MapDeployError, OSError):
            if not (folder / "job").is_file():
                raise self._not_found(name, ": another process deleted it") from None
            raise

    def _remove(self, name: str) -> None:
        jobs_dir = _engine.jobs_dir()
        try:
            job = self._load(name)
            being_started = job._being_started()
            state = job.get_status()
        except (MapDeployError, OSError):
            if not (jobs_dir / name / "job").is_file():
                raise self._not_found(name, ": another process deleted it") from None
            raise
        if being_started:
            raise RuntimeError(f"job {name!r} is being started by the process that created it; "
                               "cancel it first with "
                               f"mapdeploy.deploy.jobs[{name!r}].cancel()")
        if state not in FINAL_STATES:
            raise RuntimeError(f"job {name!r} is still {state}; cancel it first with "
                               f"mapdeploy.deploy.jobs[{name!r}].cancel()")
        # the rename takes the job out of the registry in one step, so a
        # process listing the jobs never sees it half removed, and of two
        # processes deleting it exactly one succeeds
        doomed = jobs_dir / f".deleting-{name}-{secrets.token_hex(4)}"
        try:
            os.rename(jobs_dir / name, doomed)
        except FileNotFoundError:
            raise self._not_found(name, ": another process deleted it") from None
        shutil.rmtree(doomed)


class _Environments(_Registry):
    _what = "environment"

    def _column(self) -> str:
        return "Type"

    def _records(self) -> list[dict[str, Any]]:
        records = self._read_records()
        if not any(r.get("name") == "async" for r in records):
            _environment.default()  # the default environment is always there
            records = self._read_records()
        return records

    def _read_records(self) -> list[dict[str, Any]]:
        records = []
        for path in _engine.environments_dir().glob("*.json"):
            try:
                records.append(json.loads(path.read_text()))
            except FileNotFoundError:
                continue  # deleted by another process since the folder was listed
            except (OSError, ValueError) as error:
                logger.warning("skipping the unreadable environment record %s: %s", path, error)
        return records

    def _entries(self) -> list[tuple[str, str, float]]:
        entries = [(r["name"], r["type"], r.get("created") or 0.0) for r in self._records()]
        entries.sort(key=lambda entry: (-entry[2], entry[0]))
        return entries

    def _load(self, name: str) -> Any:
        for record in self._records():
            if record["name"] == name:
                return _environment.from_record(record)
        raise JobNotFoundError(f"there is no environment named {name!r}")

    def __getitem__(self, key: int | str) -> Any:
        try:
            return super().__getitem__(key)
        except JobNotFoundError as error:
            if isinstance(key, str):
                raise ValueError(f"Environment {key!r} was not found in deploy.environments. Create "
                                 "it first (e.g. deploy.environment.LocalAsync(name)) or pass the "
                                 "environment object") from error
            raise

    def _remove(self, name: str) -> None:
        try:
            Path(_engine.environments_dir() / f"{_environment._file_name(name)}.json").unlink()
        except FileNotFoundError:
            raise JobNotFoundError(f"there is no environment named {name!r}: another process "
                                   "deleted it") from None


jobs = _Jobs()
environments = _Environments()
