"""The session registries, and jobs that outlive the process that started them."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import jobfuncs
import mapdeploy as gl


def test_jobs_list_load_and_delete():
    first = gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 1}], name="first")
    first.get_results()
    second = gl.deploy.map_job.create(jobfuncs.add, [{"x": 2, "y": 2}], name="second")
    second.get_results()
    table = gl.deploy.jobs.list()
    assert table.column_names() == ["Index", "Name", "Environment", "Creation date"]
    assert list(table["Name"]) == ["second", "first"]  # newest first
    assert list(table["Index"]) == [0, 1]
    assert gl.deploy.jobs[0].name == "second"
    assert gl.deploy.jobs["first"].get_results() == [2]
    assert "first" in gl.deploy.jobs and len(gl.deploy.jobs) == 2
    del gl.deploy.jobs["first"]
    assert list(gl.deploy.jobs) == ["second"]
    with pytest.raises(KeyError, match="no job named 'first'"):
        gl.deploy.jobs["first"]
    with pytest.raises(KeyError, match="no job with index 5"):
        gl.deploy.jobs[5]


def test_delete_by_pattern_and_silently():
    for name in ("keep", "tmp-a", "tmp-b"):
        gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 1}], name=name).get_results()
    gl.deploy.jobs.delete(pattern="tmp-*")
    assert list(gl.deploy.jobs) == ["keep"]
    gl.deploy.jobs.delete("missing", silent=True)
    with pytest.raises(KeyError):
        gl.deploy.jobs.delete("missing")


def test_a_running_job_is_not_deleted():
    job = gl.deploy.map_job.create(jobfuncs.sleep_then, [{"x": 1, "seconds": 30}], name="busy")
    with pytest.raises(RuntimeError, match="cancel it first"):
        del gl.deploy.jobs["busy"]
    job.cancel()
    del gl.deploy.jobs["busy"]


def test_environments_registry():
    gl.deploy.environment.Local("sync-env")
    table = gl.deploy.environments.list()
    assert table.column_names() == ["Index", "Name", "Type", "Creation date"]
    names = list(table["Name"])
    assert "async" in names and "sync-env" in names
    env = gl.deploy.environments["sync-env"]
    assert isinstance(env, gl.deploy.environment.Local)
    assert isinstance(gl.deploy.environments["async"], gl.deploy.environment.LocalAsync)
    del gl.deploy.environments["sync-env"]
    assert "sync-env" not in gl.deploy.environments


def test_an_environment_deleted_or_rewritten_elsewhere_is_saved_again(session_home):
    gl.deploy.environment.Local("shared", num_workers=2)
    del gl.deploy.environments["shared"]
    gl.deploy.environment.Local("shared", num_workers=2)
    assert gl.deploy.environments["shared"].num_workers == 2
    # another process saves the name with other settings; this one's next
    # use of its own object must put its settings back, not trust what it saw
    other = "import mapdeploy as gl; gl.deploy.environment.Local('shared', num_workers=3)"
    out = subprocess.run([sys.executable, "-c", other], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, MAPDEPLOY_HOME=str(session_home)))
    assert out.returncode == 0, out.stderr
    assert gl.deploy.environments["shared"].num_workers == 3
    gl.deploy.environment.Local("shared", num_workers=2)
    assert gl.deploy.environments["shared"].num_workers == 2


def test_a_job_outlives_the_script_that_started_it_and_loads_by_name(session_home):
    tests_dir = os.path.dirname(os.path.abspath(jobfuncs.__file__))
    start = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {tests_dir!r})
        import jobfuncs, mapdeploy as gl
        job = gl.deploy.map_job.create(jobfuncs.sleep_then,
                                       [{{'x': i, 'seconds': 0.5}} for i in range(6)],
                                       name='survivor')
        print(job.get_status())
    """)
    out = subprocess.run([sys.executable, "-c", start], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, MAPDEPLOY_HOME=str(session_home)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ("Pending", "Running")
    read = textwrap.dedent("""
        import mapdeploy as gl
        job = gl.deploy.jobs['survivor']
        print(job.get_results(), job.get_status())
    """)
    out = subprocess.run([sys.executable, "-c", read], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, MAPDEPLOY_HOME=str(session_home)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[0, 1, 2, 3, 4, 5] Completed"


def test_session_folder_is_private(session_home):
    gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 1}], name="private").get_results()
    assert os.stat(session_home).st_mode & 0o077 == 0
    job_dir = session_home / "jobs" / "private"
    assert os.stat(job_dir).st_mode & 0o077 == 0
    assert os.stat(job_dir / "key").st_mode & 0o077 == 0


def test_unwritable_session_folder_gives_a_clear_error(tmp_path, monkeypatch):
    if os.geteuid() == 0:
        target = "/proc/mapdeploy-cannot-be-here"  # not even root can create folders in /proc
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = str(locked / "home")
    monkeypatch.setenv("MAPDEPLOY_HOME", target)
    with pytest.raises(gl.StorageError, match="cannot use the session folder.*MAPDEPLOY_HOME"):
        gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 1}])
