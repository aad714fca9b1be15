"""What tasks print: kept per task (capped), returned by get_task_output, and in the worker logs."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import jobfuncs
import mapdeploy as gl


def test_each_task_keeps_its_own_stdout_and_stderr_in_order():
    job = gl.deploy.map_job.create(jobfuncs.print_both, [{"x": i} for i in (1, -2, 3)])
    job.wait(progress=False)
    assert job.get_task_output("print_both-0-0") == "stdout says 1\nstderr says 1\n"
    assert job.get_task_output("print_both-0-1") == "stdout says -2\nstderr says -2\n"
    assert job.get_task_output("print_both-0-2") == "stdout says 3\nstderr says 3\n"


def test_a_task_that_prints_nothing_has_empty_output():
    job = gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 2}])
    assert job.get_results() == [3]
    assert job.get_task_output("add-0-0") == ""


def test_unknown_task_name_is_a_key_error_naming_the_tasks():
    job = gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 2}])
    job.wait(progress=False)
    with pytest.raises(KeyError, match=r"no task 'add-0-7'.*add-0-0"):
        job.get_task_output("add-0-7")


def test_unfinished_task_has_no_output_yet():
    job = gl.deploy.map_job.create(jobfuncs.sleep_then, [{"x": 1, "seconds": 30}])
    assert job.get_task_output("sleep_then-0-0") is None
    job.cancel()


def test_output_is_capped_at_64_kib_with_a_note():
    job = gl.deploy.map_job.create(jobfuncs.print_bytes, [{"n": 100_000}, {"n": 65536}])
    assert job.get_results() == [100_000, 65536]
    cut = job.get_task_output("print_bytes-0-0")
    kept, note = cut.split("\n", 1)
    assert kept == "a" * 65536
    assert "output cut at 65536 bytes; 34464 more bytes" in note
    assert job.get_task_output("print_bytes-0-1") == "a" * 65536  # exactly the cap: no note


def test_cut_never_splits_a_character():
    job = gl.deploy.map_job.create(jobfuncs.print_bytes, [{"n": 90_000, "char": "\u20ac"}])
    job.wait(progress=False)
    kept = job.get_task_output("print_bytes-0-0").split("\n", 1)[0]
    assert set(kept) == {"\u20ac"}
    assert len(kept.encode()) <= 65536


def test_worker_logs_keep_everything_printed():
    job = gl.deploy.map_job.create(jobfuncs.print_bytes, [{"n": 100_000}])
    job.wait(progress=False)
    logs = Path(job.get_log_file_path())
    workers = sorted(logs.glob("worker-*.log"))
    assert workers, f"no worker logs in {logs}"
    assert sum(p.read_text().count("a") for p in workers) >= 100_000


def test_combiner_output_is_kept_under_its_name():
    job = gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 1}, {"x": 2, "y": 2}],
                                   combiner_function=jobfuncs.chatty_combiner)
    assert job.get_results() == 2
    assert job.get_task_output("chatty_combiner") == "combining 2\n"


def test_single_job_output():
    job = gl.deploy.job.create(jobfuncs.print_both, x=5)
    assert job.get_results() == 5
    assert job.get_task_output("print_both") == "stdout says 5\nstderr says 5\n"


def test_a_task_that_replaces_sys_stdout_does_not_hide_the_next_tasks_output():
    env = gl.deploy.environment.LocalAsync("one", num_workers=1)
    job = gl.deploy.map_job.create(jobfuncs.replace_stdout_or_print,
                                   [{"replace": True}, {"replace": False}], environment=env)
    assert job.get_results() == ["replaced", "printed"]
    assert len({job._record(i)[5] for i in range(2)}) == 1, "both tasks must run in one worker"
    assert job.get_task_output("replace_stdout_or_print-0-1") == "printed\n"


def test_traceback_shows_the_users_source_lines_of_a_script(tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent("""
        import mapdeploy as gl

        def divide(x):
            ratio = 10 / x  # the user's own line
            return ratio

        job = gl.deploy.map_job.create(divide, [{'x': 0}])
        job.wait(progress=False)
        print(job.get_metrics()[0]['exception_traceback'])
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path, env=os.environ)
    assert out.returncode == 0, out.stderr
    assert "ratio = 10 / x  # the user's own line" in out.stdout
    assert "ZeroDivisionError" in out.stdout


def test_traceback_shows_source_lines_of_code_that_only_linecache_has():
    """Notebook cells live only in the kernel's linecache; their lines travel with the job."""
    import linecache

    source = "def cell_function(x):\n    return x.missing_attribute  # from a cell\n"
    filename = "/nonexistent/ipykernel_0/cell-1.py"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict = {"__name__": "__main__"}
    try:
        exec(compile(source, filename, "exec"), namespace)
        job = gl.deploy.map_job.create(namespace["cell_function"], [{"x": 1}])
        job.wait(progress=False)
    finally:
        del linecache.cache[filename]
    traceback = job.get_metrics()[0]["exception_traceback"]
    assert "return x.missing_attribute  # from a cell" in traceback
