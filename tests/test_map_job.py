"""map_job.create and the Job methods of the GraphLab contract, on the local engine."""
from __future__ import annotations

import datetime
import re
import threading

import pytest

import jobfuncs
import mapdeploy as gl


def test_results_come_back_in_parameter_order():
    params = [{"x": i, "y": 2 * i} for i in range(50)]
    job = gl.deploy.map_job.create(jobfuncs.add, params)
    assert job.get_results() == [3 * i for i in range(50)]
    assert job.get_status() == "Completed"
    assert job.get_error() is None


def test_create_returns_a_job_at_once_for_the_default_environment():
    job = gl.deploy.map_job.create(jobfuncs.sleep_then, [{"x": 1, "seconds": 1.5}])
    assert isinstance(job, gl.deploy.Job)
    assert job.get_status() in ("Pending", "Running")
    assert job.environment == gl.deploy.environment.LocalAsync("async")
    assert job.get_results() == [1]


def test_failed_task_is_in_metrics_and_partial_results():
    job = gl.deploy.map_job.create(jobfuncs.add, [{"x": 20, "y": 20}, {"x": None, "y": 10},
                                                  {"x": 5, "y": 5}])
    metrics = job.get_metrics()
    assert metrics.column_names() == ["task_name", "status", "start_time", "run_time", "exception",
                                      "exception_message", "exception_traceback"]
    assert list(metrics["task_name"]) == ["add-0-0", "add-0-1", "add-0-2"]
    assert list(metrics["status"]) == ["Completed", "Failed", "Completed"]
    failed = metrics[1]
    assert failed["exception"] == "TypeError"
    assert failed["exception_message"] == "unsupported operand type(s) for +: 'NoneType' and 'int'"
    assert failed["exception_traceback"].startswith("Traceback (most recent call last):")
    assert "return x + y" in failed["exception_traceback"]
    assert failed["run_time"] is None
    assert isinstance(metrics[0]["run_time"], float) and metrics[0]["run_time"] >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", metrics[0]["start_time"])
    assert metrics[0]["exception"] is None and metrics[0]["exception_traceback"] is None
    assert len(metrics[metrics["status"] == "Failed"]) == 1
    assert job.get_map_results() == [40, None, 10]
    assert job.get_status() == "Completed"
    with pytest.raises(RuntimeError, match="get_map_results"):
        job.get_results()


def test_combiner_gets_task_names_and_results():
    params = [{"x": 20, "y": 20}, {"x": 10, "y": 10}, {"x": 5, "y": 5}]
    job = gl.deploy.map_job.create(jobfuncs.add, params, combiner_function=jobfuncs.add_combiner)
    assert job.get_results() == 70
    assert job.get_map_results() == [40, 20, 10]
    names = list(job.get_metrics()["task_name"])
    assert names == ["add-0-0", "add-0-1", "add-0-2", "add_combiner"]

    job = gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 1}, {"x": None, "y": 1}],
                                   combiner_function=jobfuncs.keys_combiner)
    assert job.get_results() == [("add-0-0", 2), ("add-0-1", None)]


def test_failing_combiner_fails_the_job_and_keeps_map_results():
    job = gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 2}],
                                   combiner_function=jobfuncs.failing_combiner)
    with pytest.raises(RuntimeError, match="get_map_results"):
        job.get_results()
    assert job.get_status() == "Failed"
    assert "failing_combiner" in job.get_error() and "combiner saw 1 results" in job.get_error()
    assert job.get_map_results() == [3]
    combiner_row = job.get_metrics()[1]
    assert combiner_row["task_name"] == "failing_combiner"
    assert combiner_row["exception"] == "ValueError"


def test_single_job():
    job = gl.deploy.job.create(jobfuncs.add, x=1, y=1)
    assert job.get_results() == 2
    assert list(job.get_metrics()["task_name"]) == ["add"]
    with pytest.raises(TypeError, match="map jobs"):
        job.get_map_results()

    job = gl.deploy.job.create(jobfuncs.add, x=1, y=None)
    with pytest.raises(RuntimeError, match="TypeError"):
        job.get_results()
    assert job.get_status() == "Failed"
    assert "unsupported operand" in job.get_error()
    assert job.get_metrics()[0]["exception"] == "TypeError"


def test_lambdas_closures_and_functions_without_arguments():
    offset = 100
    job = gl.deploy.map_job.create(lambda x: x + offset, [{"x": 1}, {"x": 2}])
    assert job.get_results() == [101, 102]
    assert job.name.startswith("lambda-")
    assert list(job.get_metrics()["task_name"]) == ["lambda-0-0", "lambda-0-1"]
    assert gl.deploy.map_job.create(jobfuncs.no_args, [{}]).get_results() == ["done"]


def test_generator_parameter_set():
    job = gl.deploy.map_job.create(jobfuncs.add, ({"x": i, "y": i} for i in range(5)))
    assert job.get_results() == [0, 2, 4, 6, 8]


def test_missing_and_extra_keyword_arguments_fail_only_that_task():
    job = gl.deploy.map_job.create(jobfuncs.add, [{"x": 1}, {"x": 1, "y": 2, "z": 3}, {"x": 1, "y": 1}])
    metrics = job.get_metrics()
    assert list(metrics["status"]) == ["Failed", "Failed", "Completed"]
    assert "missing 1 required positional argument: 'y'" in metrics[0]["exception_message"]
    assert "unexpected keyword argument 'z'" in metrics[1]["exception_message"]
    assert job.get_map_results() == [None, None, 2]


def test_unpicklable_return_value_fails_that_task_clearly():
    job = gl.deploy.map_job.create(jobfuncs.return_lock, [{}])
    row = job.get_metrics()[0]
    assert row["status"] == "Failed"
    assert "could not pickle the return value" in row["exception_message"]
    assert "lock" in row["exception_message"]


def test_default_name_and_deduplication():
    first = gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 1}], name="same")
    second = gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 1}], name="same")
    assert first.name == "same"
    assert re.fullmatch(r"same-[0-9a-f]{5}", second.name)
    job = gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 1}])
    stamp = re.fullmatch(r"add-([A-Z][a-z]{2}-\d\d-\d{4}-\d\d-\d\d-\d\d)(-[0-9a-f]{5})?", job.name)
    assert stamp, job.name
    datetime.datetime.strptime(stamp.group(1), "%b-%d-%Y-%H-%M-%S")
    for j in (first, second, job):
        j.get_results()


def test_start_end_times_code_parameters_and_logs():
    params = [{"x": 1, "y": 2}, {"x": 3, "y": 4}]
    job = gl.deploy.map_job.create(jobfuncs.add, params)
    job.get_results()
    start, end = job.get_start_time(), job.get_end_time()
    assert isinstance(start, datetime.datetime) and isinstance(end, datetime.datetime)
    assert start <= end
    assert "def add(x, y):" in job.get_code()
    assert job.get_parameters() == {"add-0-0": params[0], "add-0-1": params[1]}
    log_dir = job.get_log_file_path()
    import os
    assert os.path.isdir(log_dir) and "supervisor.log" in os.listdir(log_dir)


def test_print_job_shows_info_help_environment_metrics():
    job = gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 2}], name="shown")
    job.get_results()
    text = str(job)
    for heading in ("Info", "Help", "Environment", "Metrics"):
        assert heading in text
    assert "Job                : shown" in text
    assert "Status             : Completed" in text
    assert 'LocalAsync: ["name": async]' in text


def test_local_environment_returns_when_done():
    env = gl.deploy.environment.Local("here")
    job = gl.deploy.map_job.create(jobfuncs.sleep_then, [{"x": 7, "seconds": 0.3}], environment=env)
    assert job.get_status() == "Completed"
    assert job.get_map_results(wait=False) == [7]


def test_environment_by_name_and_bad_environments():
    gl.deploy.environment.LocalAsync("two-workers", num_workers=2)
    job = gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 1}], environment="two-workers")
    assert job.environment.name == "two-workers"
    assert job.get_results() == [2]
    with pytest.raises(ValueError, match="'nowhere' was not found"):
        gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 1}], environment="nowhere")
    with pytest.raises(TypeError, match="environment must be"):
        gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 1}], environment=42)


def test_bad_inputs_have_clear_errors_and_create_nothing(session_home):
    with pytest.raises(RuntimeError, match=r"^An empty parameter_set was given\. Nothing to do\.$"):
        gl.deploy.map_job.create(jobfuncs.add, [])
    with pytest.raises(TypeError, match="iterable of dictionaries.*use {}"):
        gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 1}, 5])
    with pytest.raises(TypeError, match="iterable of dictionaries"):
        gl.deploy.map_job.create(jobfuncs.add, {"x": 1, "y": 1})
    with pytest.raises(TypeError, match="keyword argument names must be str"):
        gl.deploy.map_job.create(jobfuncs.add, [{1: 2}])
    with pytest.raises(ValueError, match=r"\^\[a-zA-Z0-9-_\]\+\$"):
        gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 1}], name="bad name!")

    class Adder:
        def add(self, x, y):
            return x + y

    with pytest.raises(TypeError, match="bound method"):
        gl.deploy.map_job.create(Adder().add, [{"x": 1, "y": 1}])
    with pytest.raises(TypeError, match="must be a function"):
        gl.deploy.map_job.create(42, [{"x": 1, "y": 1}])
    assert not (session_home / "jobs").exists() or not any((session_home / "jobs").iterdir())


def test_unpicklable_function_and_arguments_name_the_object(session_home):
    lock = threading.Lock()

    def uses_lock(x):
        with lock:
            return x

    with pytest.raises(gl.SerializationError, match=r"variable 'lock' captured by .*_thread\.lock"):
        gl.deploy.map_job.create(uses_lock, [{"x": 1}])
    with pytest.raises(TypeError, match=r"parameter_set\[1\]\['conn'\]\[0\] is a _thread\.lock"):
        gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 1}, {"conn": [threading.Lock()]}])
    assert not (session_home / "jobs").exists() or not any((session_home / "jobs").iterdir())


def test_objects_defined_in_main_travel_by_value():
    code = (
        "import mapdeploy as gl\n"
        "class Point:\n"
        "    def __init__(self, x): self.x = x\n"
        "def norm(p): return abs(p.x)\n"
        "print(gl.deploy.map_job.create(norm, [{'p': Point(-3)}, {'p': Point(4)}]).get_results())\n"
    )
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[3, 4]"


def test_workers_run_in_the_submitters_folder_with_its_sys_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (cwd, path), = gl.deploy.map_job.create(jobfuncs.cwd_and_path, [{}]).get_results()
    assert cwd == str(tmp_path)
    import sys
    assert path[:3] == [p if p else str(tmp_path) for p in sys.path][:3]


def test_cancel_stops_a_running_job_and_keeps_finished_results():
    params = [{"x": 0, "seconds": 0}] + [{"x": i, "seconds": 30} for i in range(1, 4)]
    job = gl.deploy.map_job.create(jobfuncs.sleep_then, params)
    from conftest import wait_until
    assert wait_until(lambda: job.get_map_results(wait=False) is not None
                      and job.get_map_results(wait=False)[0] == 0, timeout=30)
    job.cancel()
    assert job.get_status() == "Canceled"
    with pytest.raises(RuntimeError, match="cancelled by the user"):
        job.get_results()
    with pytest.raises(RuntimeError, match="cancelled"):
        job.get_map_results()
    statuses = list(job.get_metrics()["status"])
    assert statuses[0] == "Completed" and set(statuses[1:]) == {"Canceled"}
    end = job.get_end_time()
    job.cancel()  # a finished job is left alone
    assert job.get_status() == "Canceled" and job.get_end_time() == end


def test_cancel_of_a_completed_job_changes_nothing():
    job = gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 1}])
    assert job.get_results() == [2]
    job.cancel()
    assert job.get_status() == "Completed"
    assert job.get_results() == [2]


def test_functions_from_a_script_run_with_runpy_travel_by_value(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        "import mapdeploy as gl\n"
        "def double(x):\n"
        "    return 2 * x\n"
        "def total(**results):\n"
        "    return sum(results.values())\n"
        "job = gl.deploy.map_job.create(double, [{'x': 1}, {'x': 2}], combiner_function=total)\n"
        "RESULT = job.get_results()\n")
    import runpy
    assert runpy.run_path(str(script))["RESULT"] == 6


def test_results_bigger_than_a_read_of_the_log_come_back_whole():
    # The client reads the results log 4 MiB at a time: a record larger than
    # that, and records that straddle two reads, must come back whole, and
    # many small records after them too.
    sizes = [3 << 20, 9 << 20, 1, 5 << 20, 2] + [10] * 2000
    job = gl.deploy.map_job.create(jobfuncs.big, [{"n": n} for n in sizes])
    assert [len(value) for value in job.get_results()] == sizes
    assert list(job.get_metrics()["status"]) == ["Completed"] * len(sizes)
