"""Many jobs at once share the session's worker budget fairly, across Python processes.

Live workers are counted for real: the children of each job's supervisor in
/proc (zombies included, since a slot is given back only once its worker is
reaped), sampled while the jobs run.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import jobfuncs
import mapdeploy as gl
from conftest import children, pid_alive, supervisor_pid, wait_until

TESTS = os.path.dirname(os.path.abspath(__file__))


def _worker_identity(pid: int) -> tuple[int, int] | None:
    """(pid, start time) of a worker process, zombie or not; None for any other process.

    Only processes that have exec'd the worker count. A supervisor's child
    before its exec has the supervisor's name, and so has the child a
    sanitizer build's supervisor forks at exit to start llvm-symbolizer, which
    closes every descriptor before its exec and so lives for milliseconds.
    """
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    name = stat[stat.index("(") + 1:stat.rindex(")")]
    if not name.startswith("mapdeploy-work"):
        return None
    return pid, int(stat[stat.rindex(")") + 2:].split()[19])


def worker_identities(job) -> set[tuple[int, int]]:
    """The job's supervisor's worker processes now (empty once it has ended)."""
    pid = supervisor_pid(job)
    found = (_worker_identity(child) for child in children(pid)) if pid else ()
    return {identity for identity in found if identity is not None}


def workers_of(job) -> int:
    """How many worker processes the job's supervisor has now."""
    return len(worker_identities(job))


def workers_at_once(jobs) -> int:
    """How many workers of these jobs were all alive at one instant.

    Reading one job's workers and then another's is not one instant: a slot
    given back between the two reads would be counted twice.  So every job is
    read twice, in the same order, and only the workers seen both times are
    counted: each of those was alive from its job's first read to its second,
    and every such span covers the time between the last first read and the
    first second read.
    """
    first = [worker_identities(job) for job in jobs]
    second = [worker_identities(job) for job in jobs]
    return sum(len(before & after) for before, after in zip(first, second))


def start_elsewhere(name: str, count: int, seconds: float, num_workers: int) -> subprocess.Popen:
    """A new Python process that starts a LocalAsync job named name and exits."""
    script = f"import sys; sys.path.insert(0, {TESTS!r})\n" + textwrap.dedent(f"""
        import jobfuncs, mapdeploy as gl
        env = gl.deploy.environment.LocalAsync('wide', num_workers={num_workers})
        gl.deploy.map_job.create(jobfuncs.sleep_then,
                                 [{{'x': i, 'seconds': {seconds}}} for i in range({count})],
                                 environment=env, name={name!r})
        """)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def completed_count(job) -> int:
    return job.get_task_counts()["completed"]


def registrations(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "slots").iterdir() if p.name.startswith("job-"))


def test_two_jobs_from_two_processes_share_the_budget_and_both_complete(monkeypatch):
    monkeypatch.setenv("MAPDEPLOY_WORKER_BUDGET", "3")
    clients = [start_elsewhere(name, 12, 0.3, 3) for name in ("left", "right")]
    for client in clients:
        out, err = client.communicate(timeout=60)
        assert client.returncode == 0, err
    jobs = [gl.deploy.jobs["left"], gl.deploy.jobs["right"]]
    most = 0
    both_had_workers = False
    progress_side_by_side = False
    while any(job.get_status() == "Running" for job in jobs):
        counts = [workers_of(job) for job in jobs]
        most = max(most, workers_at_once(jobs))
        running = all(job.get_status() == "Running" for job in jobs)
        both_had_workers |= running and all(n >= 1 for n in counts)
        # each has results while the other still runs: they progress together
        progress_side_by_side |= running and all(completed_count(job) >= 1 for job in jobs)
        time.sleep(0.005)
    assert both_had_workers and progress_side_by_side
    assert most <= 3, f"{most} workers ran at once with a budget of 3"
    for job in jobs:
        assert job.get_results() == list(range(12))
        assert job.get_status() == "Completed"
    print(f"\nat most {most} workers of a budget of 3 ran at once")


def test_a_second_job_gets_its_share_from_a_job_holding_every_slot(monkeypatch, session_home):
    monkeypatch.setenv("MAPDEPLOY_WORKER_BUDGET", "4")
    env = gl.deploy.environment.LocalAsync("four", num_workers=4)
    first = gl.deploy.map_job.create(jobfuncs.sleep_then,
                                     [{"x": i, "seconds": 0.4} for i in range(40)], environment=env)
    assert wait_until(lambda: workers_of(first) == 4, timeout=30)
    started = time.monotonic()
    second = gl.deploy.map_job.create(jobfuncs.sleep_then,
                                      [{"x": i, "seconds": 0.4} for i in range(20)], environment=env)
    most = 0

    def shared() -> bool:
        nonlocal most
        a, b = workers_of(first), workers_of(second)
        most = max(most, workers_at_once([first, second]))
        return b == 2 and a <= 2

    # the first shrinks to 2 once its tasks in flight are answered (0.4 s each)
    assert wait_until(shared, timeout=20)
    waited = time.monotonic() - started
    assert most <= 4
    assert second.get_results() == list(range(20))
    # once the second has ended the first takes every slot back
    if first.get_status() == "Running" and first.get_task_counts()["completed"] < 36:
        assert wait_until(lambda: workers_of(first) == 4 or first.get_status() != "Running",
                          timeout=20)
    assert first.get_results() == list(range(40))
    # re-balancing killed no task: every task ran exactly once
    for job in (first, second):
        assert max(job.get_metrics(detailed=True)["attempts"]) == 1
    assert registrations(session_home) == []
    print(f"\nthe second job had its 2 of 4 workers {waited:.3f} s after it was started")


def test_a_job_that_needs_fewer_leaves_the_rest_to_others(monkeypatch):
    monkeypatch.setenv("MAPDEPLOY_WORKER_BUDGET", "4")
    env = gl.deploy.environment.LocalAsync("four", num_workers=4)
    small = gl.deploy.map_job.create(jobfuncs.sleep_then, [{"x": 0, "seconds": 3}], environment=env)
    big = gl.deploy.map_job.create(jobfuncs.sleep_then,
                                   [{"x": i, "seconds": 0.2} for i in range(30)], environment=env)
    assert wait_until(lambda: workers_of(big) == 3, timeout=20)
    assert small.get_status() == "Running" and workers_of(small) == 1
    assert big.get_results() == list(range(30))
    assert small.get_results() == [0]


def test_a_killed_supervisors_slots_are_free_again(monkeypatch, session_home):
    monkeypatch.setenv("MAPDEPLOY_WORKER_BUDGET", "2")
    env = gl.deploy.environment.LocalAsync("two", num_workers=2)
    hog = gl.deploy.map_job.create(jobfuncs.sleep_then,
                                   [{"x": i, "seconds": 60} for i in range(4)], environment=env)
    assert wait_until(lambda: workers_of(hog) == 2, timeout=30)
    sup = supervisor_pid(hog)
    hog_workers = children(sup)
    os.kill(sup, signal.SIGKILL)
    assert wait_until(lambda: not any(pid_alive(p) for p in hog_workers + [sup]), timeout=10)
    assert hog.get_status() == "Failed"
    # its registration is still there (nobody removed it); the next job removes it
    assert len(registrations(session_home)) == 1
    after = gl.deploy.map_job.create(jobfuncs.sleep_then,
                                     [{"x": i, "seconds": 0.3} for i in range(10)], environment=env)
    assert wait_until(lambda: workers_of(after) == 2, timeout=20)
    assert after.get_results() == list(range(10))
    assert registrations(session_home) == []


def test_a_bad_budget_is_refused_before_anything_is_written(monkeypatch, session_home):
    monkeypatch.setenv("MAPDEPLOY_WORKER_BUDGET", "zero")
    with pytest.raises(ValueError, match="MAPDEPLOY_WORKER_BUDGET"):
        gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 2}])
    assert list(gl.deploy.jobs) == []
