"""Faults injected for real (SIGKILL, SIGINT, torn files): finished results survive, no process stays.

Every test checks processes by pid: the supervisor's pid from the status and
the workers as its children in /proc, besides the autouse fixture that checks
every pid recorded in the session's job folders.
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


@pytest.fixture(autouse=True)
def no_warm_pool(monkeypatch):
    """These tests follow one job's processes to their end, which a warm pool would
    postpone by its linger time (test_pool.py covers pools, crashes included)."""
    monkeypatch.setenv("MAPDEPLOY_POOL_LINGER", "0")

TESTS = os.path.dirname(os.path.abspath(__file__))


def completed(job) -> dict[str, object]:
    """{task name: result} of the tasks that have completed, as on disk now."""
    fresh = gl.deploy.jobs[job.name]
    fresh._refresh()
    return {name: fresh._value(i) for i, name in enumerate(fresh._task_names)
            if fresh._results.status(i) == "Completed"}


def records_per_task(job) -> dict[int, int]:
    from mapdeploy._mapdeploy import JobStore
    counts: dict[int, int] = {}
    for row in JobStore(job._store.path).read_results():
        counts[row[0]] = counts.get(row[0], 0) + 1
    return counts


def run_client(code: str, **kwargs) -> subprocess.Popen:
    script = f"import sys; sys.path.insert(0, {TESTS!r})\n" + textwrap.dedent(code)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def load_elsewhere(name: str) -> dict[str, str]:
    """Loads the job by name in a new Python process; its status, error and completed count."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import mapdeploy as gl
        job = gl.deploy.jobs[{name!r}]
        metrics = job.get_metrics(wait=False)
        print(job.get_status())
        print(sum(1 for row in metrics if row['status'] == 'Completed'))
        print(job.get_error())
        """)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    status, done, error = out.stdout.split("\n", 2)
    return {"status": status, "completed": done, "error": error.strip()}


def sleepy_job(count: int = 16, seconds: float = 0.3, **options):
    env = gl.deploy.environment.LocalAsync("two", num_workers=2)
    params = [{"x": i, "seconds": seconds} for i in range(count)]
    return gl.deploy.map_job.create(jobfuncs.sleep_then, params, environment=env, **options)


def test_supervisor_sigkill_keeps_results_and_resume_runs_only_the_rest():
    job = sleepy_job()
    assert wait_until(lambda: len(completed(job)) >= 4, timeout=60)
    sup = supervisor_pid(job)
    workers = children(sup)
    assert workers
    killed_at = time.monotonic()
    os.kill(sup, signal.SIGKILL)
    assert wait_until(lambda: job.get_status() == "Failed", timeout=10)
    detected = time.monotonic() - killed_at
    # workers die with their supervisor (PR_SET_PDEATHSIG)
    assert wait_until(lambda: not any(pid_alive(p) for p in workers + [sup]), timeout=10)
    before = completed(job)
    assert len(before) >= 4
    elsewhere = load_elsewhere(job.name)
    assert elsewhere["status"] == "Failed"
    assert int(elsewhere["completed"]) == len(before)
    assert f"(pid {sup}) stopped before the job ended" in elsewhere["error"]
    assert "job.resume()" in elsewhere["error"]
    assert os.listdir(job.get_log_file_path())  # the folder stays readable

    resumed_at = time.monotonic()
    job.resume()
    assert job.get_results() == list(range(16))
    resume_seconds = time.monotonic() - resumed_at
    assert job.get_status() == "Completed" and job.get_error() is None
    # the tasks that had completed were not run again
    counts = records_per_task(job)
    index = {f"sleep_then-0-{i}": i for i in range(16)}
    assert all(counts[index[name]] == 1 for name in before)
    assert completed(job) | before == completed(job)
    assert not pid_alive(sup)
    print(f"\nsupervisor SIGKILL detected as Failed after {detected:.3f} s; "
          f"resume of {16 - len(before)} tasks of 0.3 s took {resume_seconds:.3f} s")


def test_client_sigkill_leaves_the_job_running_to_completion():
    client = run_client("""
        import jobfuncs, mapdeploy as gl
        env = gl.deploy.environment.LocalAsync('two', num_workers=2)
        job = gl.deploy.map_job.create(jobfuncs.sleep_then,
                                       [{'x': i, 'seconds': 0.2} for i in range(10)],
                                       environment=env, name='survivor')
        print(job.name, flush=True)
        job.get_results()
        """)
    name = client.stdout.readline().strip()
    assert name == "survivor"
    job = gl.deploy.jobs[name]
    assert wait_until(lambda: len(completed(job)) >= 1, timeout=60)
    client.kill()
    client.wait()
    assert job.get_results() == list(range(10))
    assert load_elsewhere(name) == {"status": "Completed", "completed": "10", "error": "None"}
    sup = supervisor_pid(job)
    assert wait_until(lambda: not pid_alive(sup), timeout=10)
    client.stdout.close()
    client.stderr.close()


@pytest.mark.parametrize("retries, status", [(0, "Failed"), (1, "Completed")])
def test_worker_sigkill_fails_or_retries_only_its_task(retries, status):
    job = sleepy_job(count=6, seconds=0.5, max_retries=retries, task_timeout=60)
    sup = supervisor_pid(job)
    assert wait_until(lambda: len(children(sup)) == 2 and len(completed(job)) >= 1, timeout=60)
    victim = children(sup)[0]
    os.kill(victim, signal.SIGKILL)
    assert job.get_status() != "Failed"
    results = job.get_map_results()
    metrics = job.get_metrics(detailed=True)
    killed = [row for row in metrics if row["worker_pid"] == victim and row["status"] == "Failed"]
    statuses = [row["status"] for row in metrics]
    if retries == 0:
        assert len(killed) == 1 and killed[0]["exception"] == "WorkerDied"
        assert "killed by signal 9 (SIGKILL)" in killed[0]["exception_message"]
        assert statuses.count("Failed") == 1
        assert results.count(None) == 1
    else:
        assert statuses == ["Completed"] * 6 and results == list(range(6))
        assert max(metrics["attempts"]) == 2
        retried = [row for row in metrics if row["attempts"] == 2][0]
        assert retried["attempt"] == 1 and retried["worker_pid"] != victim
    assert job.get_status() == "Completed"
    assert not pid_alive(victim)
    assert wait_until(lambda: not pid_alive(sup), timeout=10)


def _in_syscall(pid: int, number: str) -> bool:
    """True while pid is blocked in system call number (230: clock_nanosleep, time.sleep)."""
    try:
        with open(f"/proc/{pid}/syscall") as handle:
            return handle.read().split()[0] == number
    except (OSError, IndexError):
        return False


def _blocked_writing_frame(pid: int) -> bool:
    """True while pid is inside sendmsg(2) (46) on fd 3, its socket to the supervisor."""
    try:
        with open(f"/proc/{pid}/syscall") as handle:
            fields = handle.read().split()
    except OSError:
        return False
    return len(fields) > 1 and fields[0] == "46" and fields[1] == "0x3"


def test_worker_sigkill_while_it_writes_a_result():
    size = 32 * 1024 * 1024  # far more than a socket buffer: the write blocks half way
    env = gl.deploy.environment.LocalAsync("two", num_workers=2)
    # a str: a large bytes value would be a blob, and its frame small
    job = gl.deploy.map_job.create(jobfuncs.big_text_after, [{"n": size, "seconds": 0.5}] +
                                   [{"n": 10, "seconds": 0}] * 5, environment=env, max_retries=1)
    sup = supervisor_pid(job)
    # once the big task runs (it sleeps first), a stopped supervisor reads nothing, so the
    # worker sending its result blocks in write
    assert wait_until(lambda: any(_in_syscall(p, "230") for p in children(sup)), timeout=60)
    os.kill(sup, signal.SIGSTOP)
    try:
        assert wait_until(lambda: any(_blocked_writing_frame(p) for p in children(sup)),
                          timeout=60)
        victim = [p for p in children(sup) if _blocked_writing_frame(p)][0]
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: _zombie(victim), timeout=10)
    finally:
        os.kill(sup, signal.SIGCONT)
    results = job.get_map_results()
    assert len(results[0]) == size and results[1:] == ["x" * 10] * 5
    metrics = job.get_metrics(detailed=True)
    assert list(metrics["status"]) == ["Completed"] * 6
    assert metrics[0]["worker_pid"] != victim
    assert wait_until(lambda: not pid_alive(sup), timeout=10)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_cancel_stops_every_worker_and_keeps_finished_results():
    job = sleepy_job(count=12, seconds=0.4)
    sup = supervisor_pid(job)
    assert wait_until(lambda: len(completed(job)) >= 2 and len(children(sup)) == 2, timeout=60)
    workers = children(sup)
    started = time.monotonic()
    job.cancel()
    took = time.monotonic() - started
    # cancel() returns once the supervisor has killed and reaped its workers
    assert not any(pid_alive(p) for p in workers)
    assert wait_until(lambda: not pid_alive(sup), timeout=10)
    assert job.get_status() == "Canceled"
    kept = completed(job)
    assert len(kept) >= 2
    with pytest.raises(RuntimeError, match="cancelled by the user"):
        job.get_results()
    with pytest.raises(RuntimeError, match="cancelled"):
        job.get_map_results()
    end = job.get_end_time()
    job.cancel()  # a finished job: nothing changes
    assert job.get_status() == "Canceled" and job.get_end_time() == end
    assert completed(job) == kept
    assert load_elsewhere(job.name)["status"] == "Canceled"
    print(f"\ncancel() returned with every worker gone after {took:.3f} s")


def test_cancel_of_a_finished_job_changes_nothing():
    job = gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 2}])
    assert job.get_results() == [3]
    end = job.get_end_time()
    job.cancel()
    assert job.get_status() == "Completed" and job.get_results() == [3]
    assert job.get_end_time() == end
    assert not os.path.exists(os.path.join(job._store.path, "cancel"))


def test_timeout_stops_the_task_and_its_worker_and_the_rest_completes():
    env = gl.deploy.environment.LocalAsync("two", num_workers=2)
    params = [{"x": 0, "seconds": 600}] + [{"x": i, "seconds": 0.01} for i in range(1, 6)]
    job = gl.deploy.map_job.create(jobfuncs.sleep_then, params, environment=env,
                                   task_timeout=0.5)
    assert job.get_map_results() == [None, 1, 2, 3, 4, 5]
    row = job.get_metrics(detailed=True)[0]
    assert row["status"] == "Failed" and row["exception"] == "TaskTimeout"
    assert "over its task_timeout of 0.5 seconds" in row["exception_message"]
    assert row["attempt"] == 0 and row["attempts"] == 1
    assert not pid_alive(row["worker_pid"])
    assert job.get_metrics().column_names() == list(
        ("task_name", "status", "start_time", "run_time", "exception", "exception_message",
         "exception_traceback"))


def test_timeouts_are_retried_by_default_and_exceptions_only_when_asked():
    job = gl.deploy.map_job.create(jobfuncs.sleep_then, [{"x": 1, "seconds": 600}],
                                   task_timeout=0.3, max_retries=2)
    assert job.get_map_results() == [None]
    row = job.get_metrics(detailed=True)[0]
    assert row["exception"] == "TaskTimeout" and row["attempt"] == 2 and row["attempts"] == 3

    job = gl.deploy.map_job.create(jobfuncs.raise_value_error, [{"message": "no"}],
                                   max_retries=2)
    assert job.get_metrics(detailed=True)[0]["attempts"] == 1
    job = gl.deploy.map_job.create(jobfuncs.raise_value_error, [{"message": "no"}],
                                   max_retries=2, retry_on=["Exception"])
    assert job.get_metrics(detailed=True)[0]["attempts"] == 3
    job = gl.deploy.map_job.create(jobfuncs.raise_value_error, [{"message": "no"}],
                                   max_retries=1, retry_on=[KeyError])
    assert job.get_metrics(detailed=True)[0]["attempts"] == 1


@pytest.mark.parametrize("kwargs, error", [
    ({"task_timeout": 0}, ValueError),
    ({"task_timeout": "1"}, TypeError),
    ({"max_retries": -1}, ValueError),
    ({"max_retries": 1.5}, TypeError),
    ({"retry_on": [3]}, TypeError),
])
def test_timeout_and_retry_arguments_are_checked(kwargs, error):
    with pytest.raises(error):
        gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 2}], **kwargs)
    assert len(gl.deploy.jobs) == 0


def test_ctrl_c_stops_waiting_and_leaves_the_job_running():
    client = run_client("""
        import jobfuncs, mapdeploy as gl
        job = gl.deploy.map_job.create(jobfuncs.sleep_then, [{'x': 1, 'seconds': 600}],
                                       name='waited')
        print('waiting', flush=True)
        job.get_results()
        """)
    assert client.stdout.readline().strip() == "waiting"
    job = gl.deploy.jobs["waited"]
    assert wait_until(lambda: len(children(supervisor_pid(job))) == 1, timeout=60)
    # the client is inside get_results() once it blocks in poll(2) (7) on the job folder
    assert wait_until(lambda: _in_syscall(client.pid, "7"), timeout=60)
    client.send_signal(signal.SIGINT)
    _, err = client.communicate(timeout=60)
    assert client.returncode != 0
    assert "KeyboardInterrupt: stopped waiting for job 'waited'; the job is still running" in err
    assert "job.cancel()" in err
    assert job.get_status() == "Running"
    workers = children(supervisor_pid(job))
    job.cancel()
    assert job.get_status() == "Canceled" and not any(pid_alive(p) for p in workers)


def test_ctrl_c_cancels_a_local_job_and_cleans_up():
    client = run_client("""
        import jobfuncs, mapdeploy as gl
        env = gl.deploy.environment.Local('here', num_workers=2)
        print('creating', flush=True)
        gl.deploy.map_job.create(jobfuncs.sleep_then,
                                 [{'x': i, 'seconds': 600} for i in range(4)],
                                 environment=env, name='local')
        """)
    assert client.stdout.readline().strip() == "creating"
    assert wait_until(lambda: "local" in gl.deploy.jobs and
                      len(children(supervisor_pid(gl.deploy.jobs["local"]) or 1)) == 2,
                      timeout=60)
    job = gl.deploy.jobs["local"]
    sup = supervisor_pid(job)
    workers = children(sup)
    assert wait_until(lambda: _in_syscall(client.pid, "7"), timeout=60)
    client.send_signal(signal.SIGINT)
    _, err = client.communicate(timeout=60)
    assert "KeyboardInterrupt" in err
    assert job.get_status() == "Canceled"
    assert wait_until(lambda: not any(pid_alive(p) for p in workers + [sup]), timeout=10)


def test_torn_last_record_is_skipped_and_cut_off_on_resume():
    job = sleepy_job(count=10, seconds=0.3)
    assert wait_until(lambda: len(completed(job)) >= 3, timeout=60)
    sup = supervisor_pid(job)
    os.kill(sup, signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(sup), timeout=10)
    before = completed(job)
    log = Path(job._store.path) / "results" / "log"
    whole = log.stat().st_size
    # what a supervisor killed inside write(2) leaves: a record header and part of its bytes
    with open(log, "ab") as handle:
        handle.write((5000).to_bytes(4, "big") + b"\0\0\0\0" + b"\x83partial")
    assert completed(job) == before
    assert load_elsewhere(job.name)["status"] == "Failed"
    job.resume()
    assert job.get_results() == list(range(10))
    data = log.read_bytes()
    assert b"\x83partial" not in data and len(data) > whole


def test_a_newer_format_version_is_refused_and_nothing_is_lost():
    import msgpack
    job = gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 2}, {"x": 3, "y": 4}])
    assert job.get_results() == [3, 7]
    status_file = Path(job._store.path) / "status"
    original = status_file.read_bytes()
    envelope = msgpack.unpackb(original, raw=False)
    envelope["v"] = 2
    status_file.write_bytes(msgpack.packb(envelope, use_bin_type=True))
    with pytest.raises(gl.FormatError, match="format version 2 is newer than this mapdeploy"):
        gl.deploy.jobs[job.name].get_status()
    log = Path(job._store.path) / "results" / "log"
    log_bytes = log.read_bytes()
    status_file.write_bytes(original)  # a mapdeploy that knows version 2 would read it all
    assert gl.deploy.jobs[job.name].get_results() == [3, 7]
    assert log.read_bytes() == log_bytes


def test_jobs_from_several_processes_at_once_all_complete_with_distinct_names():
    code = """
        import jobfuncs, mapdeploy as gl
        jobs = [gl.deploy.map_job.create(jobfuncs.sleep_then,
                                         [{'x': i, 'seconds': 0.05} for i in range(6)],
                                         name='same') for _ in range(2)]
        print(' '.join(job.name for job in jobs), flush=True)
        assert all(job.get_results() == list(range(6)) for job in jobs)
        """
    clients = [run_client(code) for _ in range(3)]
    names = []
    for client in clients:
        out, err = client.communicate(timeout=120)
        assert client.returncode == 0, err
        names.extend(out.split())
    assert len(names) == 6 and len(set(names)) == 6 and "same" in names
    assert sorted(gl.deploy.jobs) == sorted(names)
    assert all(gl.deploy.jobs[name].get_status() == "Completed" for name in names)
