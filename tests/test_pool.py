"""Warm pools: a finished job's workers run the next job of the same environment.

Pools are on by default (MAPDEPLOY_POOL_LINGER, 60 s); conftest stops them after every test.
"""
from __future__ import annotations

import os
import signal
import socket
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


def run(function, params, **kwargs):
    job = gl.deploy.map_job.create(function, params, **kwargs)
    job.get_results()
    return job


def worker_pids(job) -> set[int]:
    return set(job.get_metrics(detailed=True)["worker_pid"])


def pools(home: Path) -> list[dict]:
    from mapdeploy import _pool
    return _pool.list_pools()


def test_the_next_job_runs_on_the_same_supervisor_and_workers(session_home):
    first = run(jobfuncs.sleep_then, [{"x": i, "seconds": 0.2} for i in range(4)])
    second = run(jobfuncs.add, [{"x": i, "y": 1} for i in range(6)])
    assert second.get_results() == [i + 1 for i in range(6)]
    assert supervisor_pid(second) == supervisor_pid(first)
    assert worker_pids(second) <= worker_pids(first)
    listed = pools(session_home)
    assert [p["pid"] for p in listed] == [supervisor_pid(first)]
    # both jobs ended; the pool waits with its workers for a third
    assert first.get_status() == second.get_status() == "Completed"
    assert pid_alive(supervisor_pid(first))
    assert set(children(supervisor_pid(first))) == worker_pids(second)


def test_each_job_gets_its_own_function_and_fresh_closure_state():
    def make(offset):
        seen = []

        def remember(x):
            seen.append(x)  # state of this job's copy of the closure only
            return (x + offset, len(seen))
        return remember

    first = run(make(100), [{"x": i} for i in range(3)], environment=gl.deploy.environment.Local(
        "one", num_workers=1))
    second = run(make(200), [{"x": i} for i in range(3)], environment=gl.deploy.environment.Local(
        "one", num_workers=1))
    assert supervisor_pid(first) == supervisor_pid(second)
    assert [v for v, _ in first.get_results()] == [100, 101, 102]
    assert [v for v, _ in second.get_results()] == [200, 201, 202]
    # one worker ran all three tasks of each job, counting from 1 again in the second
    assert [n for _, n in second.get_results()] == [1, 2, 3]


def test_a_task_that_changes_directory_does_not_move_the_next_job(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run(os.chdir, [{"path": "/"}])
    job = run(jobfuncs.cwd_and_path, [{}])
    assert job.get_results()[0][0] == str(tmp_path)


def test_what_a_task_prints_goes_to_its_own_jobs_log(session_home):
    first = run(jobfuncs.print_both, [{"x": 1}])
    second = run(jobfuncs.print_both, [{"x": 2}])
    assert supervisor_pid(first) == supervisor_pid(second)
    assert "stdout says 2" in second.get_task_output("print_both-0-0")

    def logs(job) -> str:
        return "".join(p.read_text() for p in Path(job.get_log_file_path()).glob("worker-*.log"))
    assert "stdout says 2" in logs(second) and "stderr says 2" in logs(second)
    assert "says 2" not in logs(first)
    assert "stdout says 1" in logs(first)
    output_logs = second.get_metrics(detailed=True)["output_log"]
    assert all(path.startswith(second.get_log_file_path()) for path in output_logs)


def test_another_environment_gets_another_pool(monkeypatch):
    first = run(jobfuncs.whoami, [{}])
    monkeypatch.setenv("MAPDEPLOY_TEST_MARKER", "other")
    second = run(jobfuncs.whoami, [{}])
    assert supervisor_pid(first) != supervisor_pid(second)
    assert first.get_results() != second.get_results()
    # the second pool waits too (the first one ends when it sees a job of another
    # environment running, see below, unless that job was over before it looked)
    assert supervisor_pid(second) in [p["pid"] for p in pools(None)]


def test_every_job_sees_the_environment_variables_its_client_had(monkeypatch):
    seen = []
    for value in ("one", "two", "one", None):
        if value is None:
            monkeypatch.delenv("MAPDEPLOY_TEST_MARKER")
        else:
            monkeypatch.setenv("MAPDEPLOY_TEST_MARKER", value)
        job = run(jobfuncs.environment_variable, [{"name": "MAPDEPLOY_TEST_MARKER"}])
        seen.append(job.get_results()[0])
    assert seen == ["one", "two", "one", None]


def spare_entries(home: Path) -> list[str]:
    """Every spare-named entry, the one the pool is still filling included."""
    return [name for name in os.listdir(home / "jobs") if name.startswith(".spare-")]


def spares(home: Path) -> list[str]:
    """The finished spares: a pool fills a spare under a temporary name first."""
    return [name for name in spare_entries(home) if not name.endswith(".tmp")]


def test_a_pool_makes_the_next_jobs_folder_ahead_and_removes_it_when_it_ends(session_home):
    run(jobfuncs.add, [{"x": 1, "y": 1}])
    assert wait_until(lambda: len(spares(session_home)) == 1, timeout=10)
    spare = session_home / "jobs" / spares(session_home)[0]
    made = spare.stat().st_ino
    second = run(jobfuncs.add, [{"x": 2, "y": 2}], name="second")
    assert second.get_results() == [4]
    # the spare became the job's folder, and is no job in the listing
    assert (session_home / "jobs" / "second").stat().st_ino == made
    assert sorted(gl.deploy.jobs[i].name for i in range(len(gl.deploy.jobs))) == sorted(
        name for name in os.listdir(session_home / "jobs") if not name.startswith("."))
    # the pool makes the one after while the second runs; it goes with the pool
    assert wait_until(lambda: len(spares(session_home)) == 1, timeout=10)
    gl.deploy.stop_idle_workers()
    assert spare_entries(session_home) == []


def test_a_spare_that_is_not_a_folder_is_put_out_of_the_way(session_home):
    run(jobfuncs.add, [{"x": 1, "y": 1}])
    assert wait_until(lambda: len(spares(session_home)) == 1, timeout=10)
    spare = session_home / "jobs" / spares(session_home)[0]
    subprocess.run(["rm", "-r", str(spare)], check=True)
    spare.write_text("not a folder")
    job = run(jobfuncs.add, [{"x": 2, "y": 2}], name="after")
    assert job.get_results() == [4]
    assert (session_home / "jobs" / "after").is_dir()


def test_a_job_that_took_a_busy_pools_spare_keeps_no_file_of_that_pool(session_home):
    run(jobfuncs.add, [{"x": 1, "y": 1}])  # a warm pool, which makes spares as its jobs start
    busy = gl.deploy.map_job.create(jobfuncs.sleep_then, [{"x": 1, "seconds": 30}])
    assert wait_until(lambda: len(spares(session_home)) == 1, timeout=10)
    spare = (session_home / "jobs" / spares(session_home)[0]).stat().st_ino
    taken = run(jobfuncs.add, [{"x": 2, "y": 2}], name="beside")
    assert taken.get_results() == [4]
    assert busy.get_status() == "Running"
    assert supervisor_pid(taken) != supervisor_pid(busy)  # it could not run on the pool
    folder = session_home / "jobs" / "beside"
    assert folder.stat().st_ino == spare  # but it took the pool's spare
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("status")) == ["status"]
    busy.cancel()


def test_linger_zero_leaves_no_process_once_the_job_ends(monkeypatch):
    monkeypatch.setenv("MAPDEPLOY_POOL_LINGER", "0")
    job = run(jobfuncs.whoami, [{}, {}])
    pids = {supervisor_pid(job), *job.get_results()}
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=5)
    assert pools(None) == []


def test_an_idle_pool_ends_after_its_linger_time(monkeypatch):
    monkeypatch.setenv("MAPDEPLOY_POOL_LINGER", "0.5")
    job = run(jobfuncs.whoami, [{}, {}])
    pids = {supervisor_pid(job), *job.get_results()}
    assert all(pid_alive(p) for p in pids)
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=10)
    assert pools(None) == []


def test_stop_idle_workers_returns_once_their_processes_are_gone():
    job = run(jobfuncs.whoami, [{}, {}])
    pids = {supervisor_pid(job), *job.get_results()}
    assert gl.deploy.stop_idle_workers() == 1
    assert not any(pid_alive(p) for p in pids)
    assert gl.deploy.stop_idle_workers() == 0
    # and the next job starts a new pool
    again = run(jobfuncs.whoami, [{}])
    assert supervisor_pid(again) not in pids


def test_bad_linger_setting_is_refused_before_anything_is_written(monkeypatch, session_home):
    monkeypatch.setenv("MAPDEPLOY_POOL_LINGER", "soon")
    with pytest.raises(ValueError, match="MAPDEPLOY_POOL_LINGER"):
        gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 2}])
    assert list(gl.deploy.jobs) == []


def test_an_idle_pool_gives_its_slots_to_a_job_of_another_environment(monkeypatch):
    monkeypatch.setenv("MAPDEPLOY_WORKER_BUDGET", "2")
    first = run(jobfuncs.sleep_then, [{"x": i, "seconds": 0.3} for i in range(2)])
    pool_pid = supervisor_pid(first)
    assert len(children(pool_pid)) == 2  # both slots held by idle workers
    monkeypatch.setenv("MAPDEPLOY_TEST_MARKER", "other")
    started = time.monotonic()
    second = run(jobfuncs.pid_after, [{"seconds": 0.3} for _ in range(4)])
    assert second.get_status() == "Completed"
    assert len(set(second.get_results())) == 2  # it got both slots
    assert not pid_alive(pool_pid)
    assert time.monotonic() - started < 30  # not the 60 s linger


def test_a_dead_idle_worker_is_replaced_for_the_next_job():
    first = run(jobfuncs.whoami, [{}, {}])
    victim = sorted(set(first.get_results()))[0]
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(victim))
    second = run(jobfuncs.add, [{"x": i, "y": i} for i in range(8)])
    assert second.get_results() == [2 * i for i in range(8)]
    assert victim not in worker_pids(second)


def test_a_killed_pool_makes_the_next_job_start_its_own_supervisor():
    first = run(jobfuncs.whoami, [{}])
    os.kill(supervisor_pid(first), signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(supervisor_pid(first)))
    second = run(jobfuncs.add, [{"x": 1, "y": 2}])
    assert second.get_results() == [3]
    assert supervisor_pid(second) != supervisor_pid(first)
    assert first.get_status() == "Completed"


def test_a_canceled_job_ends_its_pool_and_the_next_job_still_runs():
    run(jobfuncs.whoami, [{}])
    job = gl.deploy.map_job.create(jobfuncs.sleep_then, [{"x": i, "seconds": 30} for i in range(2)],
                                   environment=gl.deploy.environment.LocalAsync("bg"))
    assert wait_until(lambda: job.get_status() == "Running")
    pool_pid = supervisor_pid(job)
    job.cancel()
    assert job.get_status() == "Canceled"
    assert wait_until(lambda: not pid_alive(pool_pid))
    assert run(jobfuncs.add, [{"x": 2, "y": 2}]).get_results() == [4]


@pytest.mark.skipif(os.geteuid() != 0, reason="connecting as another user needs root")
def test_a_pool_serves_only_its_own_user():
    job = run(jobfuncs.whoami, [{}])
    pool_pid = supervisor_pid(job)
    (name,) = [p["name"] for p in pools(None)]
    script = textwrap.dedent(f"""
        import os, socket
        os.setgid(65534); os.setuid(65534)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect("\\0mapdeploy-pool-{name}")
        s.settimeout(5)
        try:
            s.sendall(b"S")
            print(s.recv(1))
        except OSError:
            print(b"")  # closed on us: refused
        """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "b''"  # closed without an answer
    assert pid_alive(pool_pid)
    assert run(jobfuncs.add, [{"x": 1, "y": 1}]).get_results() == [2]
    assert supervisor_pid(gl.deploy.jobs[list(gl.deploy.jobs)[-1]]) == pool_pid


def test_a_job_started_by_another_script_uses_the_pool_that_script_left(session_home):
    script = f"import sys; sys.path.insert(0, {TESTS!r})\n" + textwrap.dedent("""
        import jobfuncs, mapdeploy as gl
        job = gl.deploy.map_job.create(jobfuncs.whoami, [{}], name=sys.argv[1])
        print(job.get_results()[0])
        """)
    env = dict(os.environ)
    pids = []
    for name in ("a", "b"):
        out = subprocess.run([sys.executable, "-c", script, name], capture_output=True, text=True,
                             timeout=60, env=env, cwd=TESTS)
        assert out.returncode == 0, out.stderr
        pids.append(int(out.stdout.strip()))
    assert pids[0] == pids[1]  # the second script's task ran on the first one's worker
    assert supervisor_pid(gl.deploy.jobs["a"]) == supervisor_pid(gl.deploy.jobs["b"])


def test_completed_job_whose_last_results_were_lost_reports_it_and_resumes(session_home):
    job = run(jobfuncs.add, [{"x": i, "y": 0} for i in range(5)])
    assert gl.deploy.stop_idle_workers() == 1
    # what a power cut between the Completed status and the log's fsync leaves behind
    log = Path(job._store.path) / "results" / "log"
    log.write_bytes(b"")
    loaded = gl.deploy.jobs[job.name]
    assert loaded.get_status() == "Failed"
    assert "only 0 of 5 tasks have results" in loaded.get_error()
    loaded.resume()
    assert loaded.get_results() == [0, 1, 2, 3, 4]
    assert loaded.get_status() == "Completed"


def test_a_worker_whose_memory_grew_is_not_kept_for_the_next_job():
    env = gl.deploy.environment.Local("one", num_workers=1)
    first = run(jobfuncs.peak_then_pid, [{"megabytes": 1}], environment=env)
    second = run(jobfuncs.peak_then_pid, [{"megabytes": 400}], environment=env)
    assert second.get_results() == first.get_results()  # a small job keeps its worker
    third = run(jobfuncs.whoami, [{}], environment=env)
    # the 400 MB peak made that worker go (and with it its pool: it had no other)
    assert third.get_results() != second.get_results()
    assert not pid_alive(second.get_results()[0])


def test_a_task_that_kills_a_warm_worker_fails_alone():
    env = gl.deploy.environment.Local("one", num_workers=1)
    first = run(jobfuncs.whoami, [{}], environment=env)
    job = gl.deploy.map_job.create(jobfuncs.kill_on, [{"x": i, "bad": 0} for i in range(4)],
                                   environment=env)
    assert supervisor_pid(job) == supervisor_pid(first)  # it ran on the warm worker
    assert job.get_map_results()[1:] == [1, 2, 3]
    metrics = job.get_metrics()
    assert metrics["exception"][0] == "WorkerDied"
    assert not pid_alive(first.get_results()[0])
