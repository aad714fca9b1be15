"""Waiting with a progress bar, and the Jupyter displays of jobs and the session registries."""
from __future__ import annotations

import fcntl
import os
import pty
import struct
import termios
import subprocess
import sys
import textwrap
import time

import pytest

import jobfuncs
import mapdeploy as gl

SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import jobfuncs
    import mapdeploy as gl
    job = gl.deploy.map_job.create(jobfuncs.slow_chatty, [{{'x': x}} for x in (1, -1, 2, 3)])
    print(job.{call})
""")


def run_script(tmp_path, call: str, stderr_is_terminal: bool) -> tuple[str, str]:
    """Runs a job in a fresh process; returns (stdout, what reached stderr)."""
    script = tmp_path / "wait.py"
    script.write_text(SCRIPT.format(tests=os.path.dirname(__file__), call=call))
    if not stderr_is_terminal:
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                             timeout=60, env=os.environ)
        assert out.returncode == 0, out.stderr
        return out.stdout, out.stderr
    main, secondary = pty.openpty()
    # a terminal 24 rows by 120 columns, as a real one has a size
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    try:
        process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                                   stderr=secondary, env=os.environ, text=True)
        os.close(secondary)
        secondary = -1
        chunks = []
        while True:
            try:
                data = os.read(main, 4096)
            except OSError:  # EIO: the other side closed
                break
            if not data:
                break
            chunks.append(data)
        stdout = process.stdout.read()
        assert process.wait(timeout=60) == 0
        return stdout, b"".join(chunks).decode(errors="replace")
    finally:
        os.close(main)
        if secondary >= 0:
            os.close(secondary)


def test_wait_shows_a_bar_with_done_failed_total_in_a_terminal(tmp_path):
    stdout, terminal = run_script(tmp_path, "wait()", stderr_is_terminal=True)
    assert stdout.strip() == "Completed"
    assert "4/4" in terminal and "100%" in terminal
    assert "failed=1" in terminal
    assert "task/s" in terminal  # the rate; tqdm shows the ETA next to it


def test_get_results_shows_the_bar_too(tmp_path):
    stdout, terminal = run_script(tmp_path, "get_map_results()", stderr_is_terminal=True)
    assert stdout.strip() == "[1, None, 2, 3]"
    assert "4/4" in terminal


def test_no_bar_when_stderr_is_not_a_terminal(tmp_path):
    stdout, stderr = run_script(tmp_path, "wait()", stderr_is_terminal=False)
    assert stdout.strip() == "Completed"
    assert stderr == ""


def test_progress_false_shows_nothing_even_in_a_terminal(tmp_path):
    stdout, terminal = run_script(tmp_path, "wait(progress=False)", stderr_is_terminal=True)
    assert stdout.strip() == "Completed"
    assert "%" not in terminal


def test_progress_true_forces_the_bar(capsys):
    job = gl.deploy.map_job.create(jobfuncs.sleep_then, [{"x": i, "seconds": 0.2} for i in range(3)])
    assert job.wait(progress=True) == "Completed"
    assert "3/3" in capsys.readouterr().err


def test_wait_with_a_timeout_returns_the_running_status():
    job = gl.deploy.map_job.create(jobfuncs.sleep_then, [{"x": 1, "seconds": 60}])
    started = time.monotonic()
    assert job.wait(timeout=0.3, progress=False) in ("Pending", "Running")
    assert time.monotonic() - started < 5
    job.cancel()
    assert job.wait(progress=False) == "Canceled"


class CountingStore:
    """A job's store that records what each wait() of the client returned."""

    def __init__(self, store):
        self._store = store
        self.changes = 0
        self.results_waits = 0

    def __getattr__(self, name):
        return getattr(self._store, name)

    def wait(self, timeout, results=True):
        changed = self._store.wait(timeout, results)
        self.changes += changed
        self.results_waits += results and timeout > 0
        return changed


def test_waiting_without_a_bar_wakes_for_status_changes_not_for_each_result():
    job = gl.deploy.map_job.create(jobfuncs.sleep_then,
                                   [{"x": i, "seconds": 0.01} for i in range(100)])
    job._store = counting = CountingStore(job._store)
    assert job.get_results() == list(range(100))
    # results arrive in dozens of batches over half a second (each one woke the
    # client: ~50 times); it wakes to start its watch and for the events of two
    # status writes (a temporary file created, written, renamed), 3-4 times
    assert counting.changes <= 10, f"woke {counting.changes} times"
    assert counting.results_waits == 0


def test_a_bar_is_updated_as_results_arrive(capsys):
    job = gl.deploy.map_job.create(jobfuncs.sleep_then,
                                   [{"x": i, "seconds": 0.01} for i in range(100)])
    job._store = counting = CountingStore(job._store)
    assert job.wait(progress=True) == "Completed"
    assert counting.results_waits > 0
    assert "100/100" in capsys.readouterr().err


def test_wait_rejects_a_negative_timeout():
    job = gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 1}])
    with pytest.raises(ValueError, match="timeout"):
        job.wait(timeout=-1)


def test_task_counts():
    job = gl.deploy.map_job.create(jobfuncs.print_both, [{"x": 1}, {"x": -1}, {"x": 2}])
    job.wait(progress=False)
    assert job.get_task_counts() == {"total": 3, "completed": 2, "failed": 1, "unfinished": 0}


def test_job_html_has_status_counts_times_metrics_and_highlights_failures():
    job = gl.deploy.map_job.create(jobfuncs.print_both, [{"x": 1}, {"x": -1}, {"x": 2}], name="shown")
    job.wait(progress=False)
    page = job._repr_html_()
    assert "shown" in page and "Completed" in page
    assert "3 total, 2 completed" in page and "1 failed" in page
    assert "Start time" in page and "Duration" in page
    assert "<th>task_name</th>" in page and "print_both-0-0" in page
    assert 'class="mapdeploy-failed"' in page
    assert "negative: -1" in page


def test_job_html_escapes_what_tasks_raise():
    job = gl.deploy.map_job.create(jobfuncs.raise_message, [{"message": "<script>x</script>"}])
    job.wait(progress=False)
    page = job._repr_html_()
    assert "<script>" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page


def test_registry_html_lists_the_session():
    gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 1}], name="listed").wait(progress=False)
    assert "listed" in gl.deploy.jobs._repr_html_()
    assert "<table" in gl.deploy.environments._repr_html_()
    assert "async" in gl.deploy.environments._repr_html_()


def test_logging_is_quiet_by_default_and_speaks_through_the_mapdeploy_logger(tmp_path):
    script = tmp_path / "logs.py"
    script.write_text(textwrap.dedent(f"""
        import logging, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import jobfuncs
        import mapdeploy as gl
        job = gl.deploy.map_job.create(jobfuncs.add, [{{'x': 1, 'y': 1}}])
        job.wait()
        job.cancel()                      # already ended: logged, not raised
        print("quiet part done", file=sys.stderr)
        logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
        job = gl.deploy.map_job.create(jobfuncs.add, [{{'x': 1, 'y': 1}}], name="loud")
        job.wait()
        job.cancel()
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60, env=os.environ)
    assert out.returncode == 0, out.stderr
    quiet, loud = out.stderr.split("quiet part done\n")
    assert quiet == ""
    assert "mapdeploy INFO job loud started: 1 task(s) of add" in loud
    assert "mapdeploy INFO job loud has already ended (Completed); nothing to cancel" in loud
