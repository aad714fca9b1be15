"""The mapdeploy command, run as a real subprocess: output, --json, exit codes, --help."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import jobfuncs
import mapdeploy as gl
from conftest import pid_alive, wait_until


def _command() -> list[str]:
    search = os.pathsep.join([sysconfig.get_path("scripts"), str(Path(sys.executable).parent),
                              os.environ.get("PATH", "")])
    found = shutil.which("mapdeploy", path=search)
    assert found, "the mapdeploy console script is not installed next to this Python"
    return [found]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(_command() + list(args), capture_output=True, text=True,
                          timeout=timeout, env=os.environ, stdin=subprocess.DEVNULL)


def run_json(*args: str) -> tuple[int, object]:
    out = run(*args, "--json")
    return out.returncode, json.loads(out.stdout)


@pytest.fixture
def mixed_job():
    job = gl.deploy.map_job.create(jobfuncs.print_both, [{"x": 1}, {"x": -2}, {"x": 3}], name="mixed")
    job.wait(progress=False)
    return job


def test_jobs_lists_names_and_status(mixed_job):
    out = run("jobs")
    assert out.returncode == 0, out.stderr
    assert "mixed" in out.stdout and "Completed" in out.stdout
    code, data = run_json("jobs")
    assert code == 0
    assert [(row["name"], row["status"], row["index"]) for row in data] == [("mixed", "Completed", 0)]


def test_jobs_on_an_empty_session_says_so():
    out = run("jobs")
    assert out.returncode == 0 and "no jobs" in out.stdout
    assert run_json("jobs") == (0, [])


def test_show_prints_summary_metrics_and_how_to_see_a_failure(mixed_job):
    out = run("show", "mixed")
    assert out.returncode == 0, out.stderr
    assert "Status             : Completed" in out.stdout
    assert "ValueError" in out.stdout
    assert "mapdeploy output mixed print_both-0-1" in out.stdout
    code, data = run_json("show", "mixed")
    assert code == 0
    assert data["tasks"] == {"total": 3, "completed": 2, "failed": 1, "unfinished": 0}
    failed = [row for row in data["metrics"] if row["status"] == "Failed"]
    assert failed[0]["exception_message"] == "negative: -2"
    assert "raise ValueError" in failed[0]["exception_traceback"]
    assert Path(data["log_folder"]).is_dir()


def test_show_by_index(mixed_job):
    assert "Job                : mixed" in run("show", "0").stdout


def test_results_with_a_failed_task_print_what_there_is_and_exit_4(mixed_job):
    out = run("results", "mixed")
    assert out.returncode == 4
    assert out.stdout.splitlines() == ["print_both-0-0\t1", "print_both-0-1\tFailed", "print_both-0-2\t3"]
    assert "1 of 3 task(s) did not complete" in out.stderr
    code, data = run_json("results", "mixed")
    assert code == 4
    assert data["complete"] is False
    assert [r["result"] for r in data["results"]] == [1, None, 3]


def test_results_of_a_complete_job_exit_0_and_show_the_combiner():
    gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 2}, {"x": 3, "y": 4}], name="sum",
                             combiner_function=jobfuncs.add_combiner).wait(progress=False)
    out = run("results", "sum")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["add-0-0\t3", "add-0-1\t7", "add_combiner\t10"]
    code, data = run_json("results", "sum")
    assert (code, data["combined"], data["complete"]) == (0, 10, True)


def test_results_no_wait_on_a_running_job_exits_5():
    job = gl.deploy.map_job.create(jobfuncs.sleep_then, [{"x": 1, "seconds": 60}], name="slow")
    out = run("results", "slow", "--no-wait")
    assert out.returncode == 5
    assert "still" in out.stderr
    job.cancel()


def test_output_prints_what_a_task_printed(mixed_job):
    out = run("output", "mixed", "print_both-0-1")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "stdout says -2\nstderr says -2\n"
    code, data = run_json("output", "mixed", "print_both-0-1")
    assert code == 0 and data["output"] == "stdout says -2\nstderr says -2\n"


def test_unknown_job_or_task_exits_3(mixed_job):
    for args in (("show", "nope"), ("results", "nope"), ("cancel", "nope"),
                 ("output", "mixed", "print_both-0-9"), ("delete", "nope-*")):
        out = run(*args)
        assert out.returncode == 3, (args, out.stdout, out.stderr)
        assert out.stderr.startswith("mapdeploy: "), args
        assert "Traceback" not in out.stderr


def test_cancel_stops_a_running_job():
    job = gl.deploy.map_job.create(jobfuncs.sleep_then, [{"x": i, "seconds": 60} for i in range(4)],
                                   name="long")
    assert wait_until(lambda: job.get_status() == "Running")
    out = run("cancel", "long")
    assert out.returncode == 0, out.stderr
    assert "canceled job long" in out.stdout
    assert job.get_status() == "Canceled"
    again = run("cancel", "long", "--json")
    assert again.returncode == 0
    assert json.loads(again.stdout) == {"name": "long", "status": "Canceled", "canceled": False}
    assert run("results", "long").returncode == 4


def test_resume_runs_the_rest_of_a_canceled_job():
    env = gl.deploy.environment.LocalAsync("one", num_workers=1)
    job = gl.deploy.map_job.create(jobfuncs.sleep_then, [{"x": i, "seconds": 0.2} for i in range(6)],
                                   name="halted", environment=env)
    assert wait_until(lambda: job.get_task_counts()["completed"] >= 1, timeout=60)
    job.cancel()
    assert job.get_status() == "Canceled"
    done_before = job.get_task_counts()["completed"]
    out = run("resume", "halted")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("resumed job halted")
    assert f"{6 - done_before} of 6 task(s) left" in out.stdout
    results = run("results", "halted")
    assert results.returncode == 0, results.stderr
    assert [line.split("\t")[1] for line in results.stdout.splitlines()] == [str(i) for i in range(6)]
    # finished tasks were not run again
    assert max(job.get_metrics(detailed=True)["attempts"]) == 1
    code, data = run_json("resume", "halted")
    assert code == 0
    assert data["resumed"] is False and data["status"] == "Completed"
    assert data["tasks"]["completed"] == 6
    again = run("resume", "halted")
    assert again.returncode == 0 and "is Completed; nothing to resume" in again.stdout


def test_resume_leaves_a_running_job_alone_and_an_unknown_one_exits_3():
    job = gl.deploy.map_job.create(jobfuncs.sleep_then, [{"x": 1, "seconds": 60}], name="busy")
    assert wait_until(lambda: job.get_status() == "Running")
    supervisor = job._store.status()["supervisor_pid"]
    code, data = run_json("resume", "busy")
    assert code == 0 and data["resumed"] is False and data["status"] == "Running"
    assert job._store.status()["supervisor_pid"] == supervisor
    missing = run("resume", "no-such-job")
    assert missing.returncode == 3 and "no job named 'no-such-job'" in missing.stderr
    job.cancel()


def test_delete_by_pattern_refuses_running_jobs_unless_cancel():
    for name in ("tmp-a", "tmp-b"):
        gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 1}], name=name).wait(progress=False)
    running = gl.deploy.map_job.create(jobfuncs.sleep_then, [{"x": 1, "seconds": 60}], name="tmp-c")
    out = run("delete", "tmp-*")
    assert out.returncode == 1
    assert "tmp-c" in out.stderr and "--cancel" in out.stderr
    assert sorted(gl.deploy.jobs) == ["tmp-c"]
    code, data = run_json("delete", "tmp-*", "--cancel")
    assert code == 0 and data == {"deleted": ["tmp-c"], "errors": []}
    assert list(gl.deploy.jobs) == []
    assert running.name == "tmp-c"


@pytest.mark.parametrize("command", [[], ["jobs"], ["show"], ["results"], ["output"], ["cancel"],
                                     ["resume"], ["delete"]])
def test_every_command_has_help(command):
    out = run(*command, "--help")
    assert out.returncode == 0
    assert out.stdout.startswith("usage: mapdeploy")
    assert "--json" in out.stdout or not command


def test_bad_usage_exits_2():
    assert run("frobnicate").returncode == 2
    assert run("show").returncode == 2


def test_python_dash_m_is_the_same_command(mixed_job):
    out = subprocess.run([sys.executable, "-m", "mapdeploy", "jobs", "--json"], capture_output=True,
                         text=True, timeout=60, env=os.environ)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["name"] == "mixed"


def test_pools_lists_the_warm_workers_and_stop_ends_them():
    job = gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 2}])
    job.get_results()
    pid = job._store.status()["supervisor_pid"]
    code, data = run_json("pools")
    assert code == 0 and [p["pid"] for p in data["pools"]] == [pid]
    out = run("pools", "--stop")
    assert out.returncode == 0 and "stopped 1 idle pool" in out.stdout
    assert not pid_alive(pid)
    out = run("pools")
    assert out.returncode == 0 and "no warm workers" in out.stdout
