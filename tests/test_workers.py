"""Workers that die, tasks that print: the job goes on and says what happened."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

import jobfuncs
import mapdeploy as gl


@pytest.mark.parametrize("function, kwargs, expected", [
    (jobfuncs.exit_with, {"code": 3}, "exited with code 3"),
    (jobfuncs.kill_self, {"sig": signal.SIGKILL}, "killed by signal 9 (SIGKILL)"),
    (jobfuncs.segfault, {}, "killed by signal 11 (SIGSEGV)"),
])
def test_a_task_that_kills_its_worker_fails_alone(function, kwargs, expected):
    params = [{"x": i, "bad": -1} for i in range(4)]
    job = gl.deploy.map_job.create(function, [kwargs])
    row = job.get_metrics()[0]
    assert row["status"] == "Failed"
    assert row["exception"] == "WorkerDied"
    assert expected in row["exception_message"], row["exception_message"]
    assert job.get_status() == "Completed"
    assert params  # the other tasks: see the next test


def test_other_tasks_go_on_and_the_worker_is_replaced():
    params = [{"x": i, "bad": 13} for i in range(40)]
    job = gl.deploy.map_job.create(jobfuncs.kill_on, params)
    results = job.get_map_results()
    assert results == [None if i == 13 else i for i in range(40)]
    metrics = job.get_metrics()
    failed = metrics[metrics["status"] == "Failed"]
    assert list(failed["task_name"]) == ["kill_on-0-13"]
    assert "killed by signal 9" in failed[0]["exception_message"]


def test_task_output_goes_to_the_job_logs_not_the_terminal():
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "import jobfuncs, mapdeploy as gl\n"
        "job = gl.deploy.map_job.create(jobfuncs.chatty, [{'x': 1}, {'x': 2}])\n"
        "print(job.get_results())\n"
        "print(job.get_log_file_path())\n" % os.path.dirname(os.path.abspath(jobfuncs.__file__))
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "[1, 2]"
    assert "hello" not in out.stdout + out.stderr
    logs = "".join(open(os.path.join(lines[1], name)).read() for name in os.listdir(lines[1]))
    assert "task says hello 1" in logs and "task says hello 2" in logs
    assert "task complains 2" in logs


def test_workers_are_reused_across_tasks_of_a_job():
    job = gl.deploy.map_job.create(jobfuncs.whoami, [{}] * 200, environment=gl.deploy.environment.LocalAsync("w2", num_workers=2))
    assert len(set(job.get_results())) <= 2


def test_a_task_that_allocates_without_end_fails_alone_under_a_memory_limit():
    limit = 512 * 1024 * 1024
    env = gl.deploy.environment.Local("capped", num_workers=1, worker_memory_limit=limit)
    params = [{"x": 0}, {"x": 1}, {"x": 2}]
    job = gl.deploy.map_job.create(jobfuncs.allocate_or_return, params, environment=env)
    assert job.get_status() == "Completed"
    assert job.get_map_results() == [0, None, 2]
    row = job.get_metrics()[1]
    assert row["status"] == "Failed"
    assert row["exception"] == "MemoryError"
    assert row["exception_message"] == (
        f"the task ran out of memory (the environment's worker_memory_limit is {limit} bytes)")
    # The limit is part of the job: a job loaded from the session shows it.
    assert gl.deploy.jobs[job.name].environment.worker_memory_limit == limit


def test_without_a_memory_limit_the_same_job_definition_reads_zero(session_home):
    env = gl.deploy.environment.Local("uncapped", num_workers=1)
    job = gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 2}], environment=env)
    assert job.get_map_results() == [3]
    assert job._definition["worker_memory_limit"] == 0
    assert job.environment.worker_memory_limit is None
