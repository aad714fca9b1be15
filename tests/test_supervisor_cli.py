"""The supervisor executable, driven directly on hand-made job folders.

The CLI tests need only the supervisor; the end-to-end ones also need the
worker (both from `make executables`) and msgpack + cloudpickle, and are
skipped when those are missing.
"""
import fcntl
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The installed executables, the ones map_job.create runs (MAPDEPLOY_BIN_DIR overrides).
from mapdeploy import _engine  # noqa: E402

SUPERVISOR = _engine.executable(_engine.SUPERVISOR)
WORKER = _engine.executable(_engine.WORKER)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))



def run_supervisor(job_dir, *extra, timeout=120):
    return subprocess.run([SUPERVISOR, "--job-dir", str(job_dir), "--worker", WORKER, *extra],
                          capture_output=True, text=True, timeout=timeout)


def start_supervisor(job_dir):
    return subprocess.Popen([SUPERVISOR, "--job-dir", str(job_dir), "--worker", WORKER],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def open_files(pid):
    fd_dir = "/proc/%d/fd" % pid
    out = []
    for fd in os.listdir(fd_dir):
        try:
            out.append(os.readlink(os.path.join(fd_dir, fd)))
        except FileNotFoundError:
            pass
    return out


# ------------------------------------------------------------ CLI only

def test_usage_error():
    p = subprocess.run([SUPERVISOR], capture_output=True, text=True)
    assert p.returncode == 2
    assert "usage" in p.stderr


def test_missing_job_dir(tmp_path):
    missing = tmp_path / "no-such-job"
    p = run_supervisor(missing)
    assert p.returncode != 0
    assert "cannot use job folder" in p.stderr
    assert str(missing) in p.stderr


def test_job_dir_without_job(tmp_path):
    p = run_supervisor(tmp_path)
    assert p.returncode == 1
    assert "cannot read the job key" in p.stderr


def test_second_supervisor_exits_3(tmp_path):
    with open(tmp_path / "supervisor.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        p = run_supervisor(tmp_path)
    assert p.returncode == 3
    assert "another supervisor is already running job %s" % tmp_path in p.stderr


# nanosleep and clock_nanosleep on x86_64 and aarch64, as /proc/<pid>/syscall shows them
_SLEEP_SYSCALLS = {"35", "230", "101", "115"}


def sleeping(pid: int) -> bool:
    """Whether the process is in a nanosleep (by /proc: its wait channel, or its system call)."""
    with open(f"/proc/{pid}/wchan") as wchan, open(f"/proc/{pid}/syscall") as syscall:
        return "nanosleep" in wchan.read() or syscall.read().split()[0] in _SLEEP_SYSCALLS


def test_a_liveness_probe_holding_the_lock_briefly_is_no_second_supervisor(tmp_path):
    # a client's supervisor_alive() takes a shared lock for a moment; a
    # supervisor starting then must wait it out, not report "already running"
    def waiting_for_the_lock() -> bool:
        if p.poll() is not None:
            return True  # it has exited already; the assertion below says how
        try:
            return sleeping(p.pid)  # it tried, found the lock held, and pauses before the next try
        except (FileNotFoundError, ProcessLookupError):
            return True

    with open(tmp_path / "supervisor.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        p = start_supervisor(tmp_path)
        assert wait_until(waiting_for_the_lock, timeout=30, interval=0.001)
    p.communicate(timeout=60)
    assert p.returncode == 1  # it got the lock, then found no job key (not exit 3)


# ------------------------------------------------------------ end to end

from conftest import children, pid_alive, wait_until  # noqa: E402
import jobfolder  # noqa: E402  (needs msgpack and cloudpickle, from the test extras)


def test_worker_that_cannot_start_fails_the_job(tmp_path):
    job = jobfolder.make_job(str(tmp_path / "job"), lambda x: x, [{"x": 1}] * 3,
                             num_workers=1)
    p = subprocess.run([SUPERVISOR, "--job-dir", job.path, "--worker", "/bin/false"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    expected = ("worker could not start: exited with code 1; see %s/logs/worker-0.log"
                % job.path)
    assert expected in p.stderr
    status = job.status()
    assert status["state"] == "Failed"
    assert status["error"] == expected


def test_missing_worker_is_reported_by_the_daemonizing_parent(tmp_path):
    job = jobfolder.make_job(str(tmp_path / "job"), lambda x: x, [{"x": 1}])
    p = subprocess.run([SUPERVISOR, "--job-dir", job.path, "--worker",
                        str(tmp_path / "nope"), "--daemonize"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert "cannot run the worker %s" % (tmp_path / "nope") in p.stderr
    assert job.status()["state"] == "Failed"


def test_cancel_file_before_start(tmp_path):
    job = jobfolder.make_job(str(tmp_path / "job"), lambda x: x, [{"x": 1}])
    job.cancel()
    p = subprocess.run([SUPERVISOR, "--job-dir", job.path, "--worker", "/bin/false"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert job.status()["state"] == "Canceled"


def _add():
    def add(x, y):
        return x + y
    return add


def _killer():
    def maybe_die(x):
        import os as _os
        import signal as _signal
        if x == 7:
            _os.kill(_os.getpid(), _signal.SIGKILL)
        return x * 2
    return maybe_die


def _sleeper():
    def nap(x):
        import time as _time
        _time.sleep(0.5)
        return x
    return nap


def test_20000_adds_two_workers(tmp_path):
    n = 20000
    job = jobfolder.make_job(str(tmp_path / "job"), _add(),
                             [{"x": i, "y": 2 * i} for i in range(n)], num_workers=2)
    p = run_supervisor(job.path)
    assert p.returncode == 0, p.stderr
    status = job.status()
    assert status["state"] == "Completed"
    assert status["num_workers"] == 2
    assert status["end_time"] >= status["start_time"] > 0
    results = job.results()
    assert sorted(results) == list(range(n))
    for i, r in results.items():
        assert r["status"] == jobfolder.COMPLETED
        assert pickle.loads(r["value"]) == 3 * i
    # nothing is left running once the supervisor is gone
    pids = {r["worker_pid"] for r in results.values()}
    assert not any(pid_alive(pid) for pid in pids)


def test_task_that_kills_its_worker_fails_alone(tmp_path):
    n = 40
    job = jobfolder.make_job(str(tmp_path / "job"), _killer(),
                             [{"x": i} for i in range(n)], num_workers=2)
    p = run_supervisor(job.path)
    assert p.returncode == 0, p.stderr
    assert job.status()["state"] == "Completed"
    results = job.results()
    assert sorted(results) == list(range(n))
    dead = results[7]
    assert dead["status"] == jobfolder.FAILED
    assert dead["exc_type"] == "WorkerDied"
    assert "killed by signal 9 (SIGKILL) while running this task" in dead["exc_message"]
    assert dead["exc_traceback"] is None
    for i in range(n):
        if i != 7:
            assert results[i]["status"] == jobfolder.COMPLETED, results[i]
            assert pickle.loads(results[i]["value"]) == 2 * i


def _cancel_test(job, request_cancel):
    sup = start_supervisor(job.path)
    try:
        assert wait_until(lambda: len(children(sup.pid)) == 2 and job.read_log(), 20)
        workers = children(sup.pid)
        for pid in workers:   # the lock must die with the supervisor, not with them
            held = open_files(pid)
            assert not any(f.endswith(("supervisor.lock", "results/log")) for f in held), held
        t0 = time.monotonic()
        request_cancel(sup)
        sup.wait(timeout=5)
        elapsed = time.monotonic() - t0
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
    assert sup.returncode == 0, sup.stderr.read()
    assert elapsed < 1.0
    assert not any(pid_alive(pid) for pid in workers)
    status = job.status()
    assert status["state"] == "Canceled"
    assert status["error"] is None
    assert status["end_time"] >= status["start_time"] > 0
    assert len(job.results()) < job.task_count


def test_sigterm_cancels_within_a_second(tmp_path):
    job = jobfolder.make_job(str(tmp_path / "job"), _sleeper(),
                             [{"x": i} for i in range(100)], num_workers=2)
    _cancel_test(job, lambda sup: sup.send_signal(signal.SIGTERM))


def test_cancel_file_cancels(tmp_path):
    job = jobfolder.make_job(str(tmp_path / "job"), _sleeper(),
                             [{"x": i} for i in range(100)], num_workers=2)
    _cancel_test(job, lambda sup: job.cancel())


def test_combiner_gets_every_value(tmp_path):
    def fails_on_three(x):
        if x == 3:
            raise ValueError("three")
        return x

    def total(**kwargs):
        names = sorted(kwargs, key=lambda k: int(k.rsplit("-", 1)[1]))
        assert names == ["fails_on_three-0-%d" % i for i in range(10)]
        return sum(v for v in kwargs.values() if v is not None)

    job = jobfolder.make_job(str(tmp_path / "job"), fails_on_three,
                             [{"x": i} for i in range(10)], num_workers=2, shard_size=3,
                             combiner=total)
    p = run_supervisor(job.path)
    assert p.returncode == 0, p.stderr
    assert job.status()["state"] == "Completed"
    results = job.results()
    assert results[3]["exc_type"] == "ValueError"
    assert pickle.loads(results[10]["value"]) == sum(range(10)) - 3


def test_failing_combiner_fails_the_job(tmp_path):
    def ident(x):
        return x

    def broken(**kwargs):
        raise KeyError("nope")

    job = jobfolder.make_job(str(tmp_path / "job"), ident, [{"x": i} for i in range(4)],
                             combiner=broken)
    p = run_supervisor(job.path)
    assert p.returncode == 0, p.stderr
    status = job.status()
    assert status["state"] == "Failed"
    assert status["error"].startswith("the combiner function broken raised KeyError: ")
    assert status["error"].endswith("get_map_results()")
    assert len(job.results()) == 5


def test_single_job_failure(tmp_path):
    def boom():
        raise ValueError("boom")

    job = jobfolder.make_job(str(tmp_path / "job"), boom, [{}], job_kind="single")
    p = run_supervisor(job.path)
    assert p.returncode == 0, p.stderr
    status = job.status()
    assert status["state"] == "Failed"
    assert status["error"] == "ValueError: boom"


def test_worker_refusing_the_job_fails_it(tmp_path):
    job = jobfolder.make_job(str(tmp_path / "job"), _add(), [{"x": 1, "y": 2}],
                             python_version="2.7")
    p = run_supervisor(job.path)
    assert p.returncode == 1
    status = job.status()
    assert status["state"] == "Failed"
    assert "2.7" in status["error"]
    assert status["error"] in p.stderr


def test_tampered_shard_fails_before_running(tmp_path):
    job = jobfolder.make_job(str(tmp_path / "job"), _add(),
                             [{"x": i, "y": i} for i in range(10)], shard_size=4)
    shard = os.path.join(job.path, "tasks", "00000001")
    with open(shard, "r+b") as f:
        data = bytearray(f.read())
        data[-40] ^= 1
        f.seek(0)
        f.write(data)
    p = run_supervisor(job.path)
    assert p.returncode == 1
    assert "task shard tasks/00000001 failed its integrity check" in p.stderr
    assert job.status()["state"] == "Failed"
    assert job.read_log() == []


def test_resume_cuts_torn_tail_and_runs_the_rest(tmp_path):
    n = 30
    job = jobfolder.make_job(str(tmp_path / "job"), _add(),
                             [{"x": i, "y": 0} for i in range(n)], num_workers=1)
    assert run_supervisor(job.path).returncode == 0
    log = os.path.join(job.path, "results", "log")
    first = len(job.read_log())
    size = os.path.getsize(log)
    os.truncate(log, size - 3)              # a torn last record
    kept = len(job.read_log())
    assert kept < first
    p = run_supervisor(job.path)
    assert p.returncode == 0, p.stderr
    results = job.results()
    assert sorted(results) == list(range(n))
    assert all(pickle.loads(r["value"]) == i for i, r in results.items())
    assert job.status()["state"] == "Completed"


def test_daemonize_returns_once_running(tmp_path):
    job = jobfolder.make_job(str(tmp_path / "job"), _sleeper(),
                             [{"x": i} for i in range(4)], num_workers=2)
    p = run_supervisor(job.path, "--daemonize", timeout=30)
    assert p.returncode == 0, p.stderr
    assert job.status()["state"] == "Running"
    assert wait_until(lambda: job.status()["state"] == "Completed", 30)
    assert os.path.exists(os.path.join(job.path, "logs", "supervisor.log"))
    # the lock is free again once the daemon is gone
    with open(os.path.join(job.path, "supervisor.lock")) as lock:
        assert wait_until(lambda: _can_lock(lock), 5)


def _can_lock(f):
    try:
        fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
