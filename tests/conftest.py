"""Test fixtures: every test gets its own session folder, and leaves no process behind."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


def pid_alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def children(pid: int) -> list[int]:
    """The child process ids of pid (empty once it has ended)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except FileNotFoundError:
        return []


def supervisor_pid(job) -> int:
    """The pid of a job's supervisor, as its status records it."""
    return job._store.status()["supervisor_pid"]


def wait_until(condition, timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Polls condition() until it is true or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


def job_process_ids(home: Path) -> set[int]:
    """Supervisor and worker pids recorded in the session's job folders."""
    from mapdeploy._mapdeploy import JobStore

    pids: set[int] = set()
    jobs = home / "jobs"
    if not jobs.is_dir():
        return pids
    for folder in jobs.iterdir():
        try:
            store = JobStore(str(folder))
            status = store.status()
            rows = store.read_results()
        except Exception:  # a test may have damaged the folder on purpose
            continue
        if status["supervisor_pid"]:
            pids.add(status["supervisor_pid"])
        pids.update(row[5] for row in rows if row[5] > 0)
    return pids


@pytest.fixture(autouse=True)
def session_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("MAPDEPLOY_HOME", str(home))
    yield home
    import mapdeploy as gl

    if (home / "jobs").is_dir():
        for name in list(gl.deploy.jobs):
            try:
                gl.deploy.jobs[name].cancel()
            except Exception:
                pass
    gl.deploy.stop_idle_workers()  # warm workers wait for the next job otherwise
    pids = job_process_ids(home)
    pids.discard(os.getpid())
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=10), \
        f"processes left running after the test: {[p for p in pids if pid_alive(p)]}"
