"""Storage faults for real: a full filesystem and a read-only session folder (a small tmpfs).

Needs root (mount); the test machine runs as root.
"""
from __future__ import annotations

import os
import subprocess

import pytest

import jobfuncs
import mapdeploy as gl
from conftest import job_process_ids, pid_alive, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@pytest.fixture
def small_home(session_home):
    """The session folder on a 4 MiB tmpfs; unmounted (after checking no job process lives) at the end."""
    session_home.mkdir(parents=True, exist_ok=True)
    mount("-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(session_home))
    try:
        yield session_home
        gl.deploy.stop_idle_workers()
        pids = job_process_ids(session_home)
        assert wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=10)
    finally:
        subprocess.run(["umount", "-l", str(session_home)], check=False)


def test_full_disk_fails_the_job_clearly_keeps_results_and_resume_completes(small_home):
    env = gl.deploy.environment.LocalAsync("one", num_workers=1)
    params = [{"n": 256 * 1024, "seconds": 0}] * 40  # 10 MiB of results for a 4 MiB disk
    job = gl.deploy.map_job.create(jobfuncs.big_after, params, environment=env)
    with pytest.raises(RuntimeError, match="No space left on device"):
        job.get_results()
    assert job.get_status() == "Failed"
    error = job.get_error()
    assert "cannot append to the results log" in error and "No space left" in error
    kept = [r for r in job.get_map_results() if r is not None]
    assert 0 < len(kept) < 40 and all(r == b"x" * 256 * 1024 for r in kept)
    # make room, then finish the job: the results already stored are not run again
    mount("-o", "remount,size=64m", str(small_home))
    job.resume()
    assert job.get_map_results() == [b"x" * 256 * 1024] * 40
    assert job.get_status() == "Completed"
    assert max(job.get_metrics(detailed=True)["attempts"]) == 1


def test_full_disk_under_value_blobs_fails_the_job_and_resume_completes(small_home):
    # 2 MiB values are blobs: the one that finds the disk full is sent in band
    # instead, so the job fails as a whole where the result is appended (as
    # in the test above) rather than the task failing for good.
    env = gl.deploy.environment.LocalAsync("one", num_workers=1)
    params = [{"n": 2 * 1024 * 1024, "seconds": 0}] * 4   # 8 MiB of values for a 4 MiB disk
    job = gl.deploy.map_job.create(jobfuncs.big_after, params, environment=env)
    with pytest.raises(RuntimeError, match="No space left on device"):
        job.get_results()
    assert job.get_status() == "Failed"
    assert "No space left" in job.get_error()
    assert all(r is None or r == b"x" * 2 * 1024 * 1024 for r in job.get_map_results())
    mount("-o", "remount,size=64m", str(small_home))
    job.resume()
    assert job.get_map_results() == [b"x" * 2 * 1024 * 1024] * 4
    assert job.get_status() == "Completed"
    assert list(job.get_metrics(detailed=True)["status"]) == ["Completed"] * 4


def test_read_only_session_folder_gives_a_clear_error_and_loses_nothing(small_home):
    job = gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 2}])
    assert job.get_results() == [3]
    # The job's processes may still be closing their files after the final
    # status, and a warm pool keeps its workers' logs open; a remount
    # read-only is refused while any is open for writing.
    gl.deploy.stop_idle_workers()
    pids = job_process_ids(small_home)
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=10)
    mount("-o", "remount,ro", str(small_home))
    with pytest.raises(gl.StorageError) as caught:
        gl.deploy.map_job.create(jobfuncs.add, [{"x": 3, "y": 4}])
    assert "Read-only file system" in str(caught.value)
    assert gl.deploy.jobs[job.name].get_results() == [3]
    assert list(gl.deploy.jobs) == [job.name]
