"""Large buffers travel as blob files in the job folder, not inside envelopes.

bytes of at least BLOB_THRESHOLD bytes in a kwargs dict or a return value,
and buffers pickled through PickleBuffer (numpy arrays), are written once as
<job>/blobs/<nonce> and named by the pickle's wrapper (docs/protocol.md,
"Blobs"); smaller values stay in band as before.
"""
from __future__ import annotations

import os
import signal
import subprocess

import numpy
import pytest

import jobfolder
import jobfuncs
import mapdeploy as gl
from mapdeploy import _engine
from mapdeploy._mapdeploy import BLOB_THRESHOLD
from conftest import supervisor_pid, wait_until

MiB = 1 << 20
SUPERVISOR = _engine.executable(_engine.SUPERVISOR)
WORKER = _engine.executable(_engine.WORKER)


def local() -> gl.deploy.environment.Local:
    return gl.deploy.environment.Local("blobs", num_workers=1)


def blob_sizes(job) -> list[int]:
    folder = os.path.join(job._store.path, "blobs")
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder))


def test_the_threshold_is_one_mebibyte():
    assert BLOB_THRESHOLD == MiB


def test_large_bytes_go_out_of_band_and_come_back_whole():
    data = os.urandom(3 * MiB + 5)
    job = gl.deploy.map_job.create(jobfuncs.echo, [{"data": data}], environment=local())
    assert job.get_results() == [data]
    # written once by the client (argument) and once by the worker (value)
    assert blob_sizes(job) == [len(data), len(data)]
    shard = os.path.join(job._store.path, "tasks", "00000000")
    assert os.path.getsize(shard) < 4096
    assert job.get_parameters() == {"echo-0-0": {"data": data}}


def test_values_below_the_threshold_stay_in_band():
    data = os.urandom(BLOB_THRESHOLD - 1)
    job = gl.deploy.map_job.create(jobfuncs.echo, [{"data": data}], environment=local())
    assert job.get_results() == [data]
    assert blob_sizes(job) == []


def test_many_tasks_some_with_blobs():
    small = [{"n": 10, "seed": i} for i in range(5)]
    large = [{"n": 2 * MiB, "seed": i} for i in range(5, 8)]
    job = gl.deploy.map_job.create(jobfuncs.big_bytes, small + large, environment=local())
    results = job.get_results()
    assert [len(value) for value in results] == [10] * 5 + [2 * MiB] * 3
    assert [value[0] for value in results] == list(range(8))
    assert blob_sizes(job) == [2 * MiB] * 3   # only the large values


def test_numpy_arrays_arrive_writable_and_return_out_of_band():
    array = numpy.arange(MiB // 2, dtype=numpy.float64)   # 4 MiB
    job = gl.deploy.map_job.create(jobfuncs.describe_array, [{"array": array}],
                                   environment=local())
    writable, total, doubled = job.get_results()[0]
    assert writable is True and total == float(array.sum())
    assert numpy.array_equal(doubled, array * 2) and doubled.flags.writeable
    assert blob_sizes(job) == [array.nbytes, array.nbytes]


def test_a_combiner_gets_large_values():
    job = gl.deploy.map_job.create(jobfuncs.big_bytes, [{"n": 2 * MiB, "seed": i} for i in range(3)],
                                   environment=local(), combiner_function=jobfuncs.total_length)
    assert job.get_results() == 6 * MiB


def test_deleting_a_job_removes_its_blobs(session_home):
    job = gl.deploy.map_job.create(jobfuncs.echo, [{"data": os.urandom(2 * MiB)}],
                                   environment=local())
    job.get_results()
    folder = job._store.path
    assert blob_sizes(job) == [2 * MiB, 2 * MiB]
    gl.deploy.jobs.delete(job)
    assert not os.path.exists(folder)


def test_a_resumed_job_reads_the_blobs_it_was_given():
    values = [os.urandom(2 * MiB) for _ in range(4)]
    env = gl.deploy.environment.LocalAsync("blobs-async", num_workers=1)
    job = gl.deploy.map_job.create(jobfuncs.sleep_echo, [{"data": v, "seconds": 0.3} for v in values],
                                   environment=env)
    assert wait_until(lambda: job.get_map_results(wait=False)[0] is not None, timeout=60)
    os.kill(supervisor_pid(job), signal.SIGKILL)
    assert wait_until(lambda: job.get_status() == "Failed", timeout=30)
    job.resume()
    assert job.get_results() == values


def test_a_job_folder_written_from_the_protocol_with_blobs_runs(session_home):
    # Blobs made by tests/jobfolder.py from docs/protocol.md alone (Poly1305
    # from the cryptography package): the worker reads and checks them.
    data = os.urandom(2 * MiB)
    jobs = session_home / "jobs"
    jobs.mkdir(parents=True)
    folder = jobfolder.make_job(str(jobs / "by-hand"), jobfuncs.echo, [{"data": data}],
                                name="by-hand", num_workers=1, blobs=True,
                                extra={"environment": {"type": "Local", "name": "h",
                                                       "num_workers": 1}})
    status = {"state": "Pending", "start_time": None, "end_time": None, "error": None,
              "supervisor_pid": None, "num_workers": 0}
    with open(os.path.join(folder.path, "status"), "wb") as handle:
        handle.write(jobfolder.encode_envelope(folder.key, "status", folder.job_id, 0, 0,
                                               jobfolder.pack(status)))
    run = subprocess.run([SUPERVISOR, "--job-dir", folder.path, "--worker", WORKER],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert gl.deploy.jobs["by-hand"].get_results() == [data]
    # and the value blob the worker wrote checks out against the same rules
    pickled, [ref] = jobfolder.unwrap(folder.results()[0]["value"])
    length, nonce, tag, readonly = ref
    with open(jobfolder.blob_path(folder.path, nonce), "rb") as handle:
        stored = handle.read()
    assert (length, readonly, stored) == (len(data), True, data)
    assert jobfolder.blob_tag(folder.key, nonce, stored) == tag


@pytest.mark.parametrize("size", [MiB, 8 * MiB + 3])
def test_sizes_around_the_mac_thread(size):
    data = os.urandom(size)
    job = gl.deploy.map_job.create(jobfuncs.echo, [{"data": data}], environment=local())
    assert job.get_results() == [data]
