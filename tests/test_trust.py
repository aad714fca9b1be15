"""Hostile job folders: every stored byte is authenticated before it is unpickled.

Each test damages a job folder the way an attacker who can write to it (but
does not hold its key) could: flip a byte, swap two task shards, replay a
result from another job, plant a pickle that would create a file. The client
(the public API) and the supervisor + worker must each refuse it with a clear
error, and the planted code must never run.
"""
from __future__ import annotations

import os
import secrets
import struct
import subprocess
from pathlib import Path

import cloudpickle
import pytest

import jobfolder
import jobfuncs
import mapdeploy as gl
from mapdeploy import _engine

SUPERVISOR = _engine.executable(_engine.SUPERVISOR)
WORKER = _engine.executable(_engine.WORKER)
MAC_FAILED = "MAC check failed (the data was modified, or it belongs to another job)"


class Planted:
    """Unpickling this creates (opens for writing) a file: code execution, harmlessly."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def planted_pickle(marker: Path) -> bytes:
    data = cloudpickle.dumps(Planted(marker), protocol=5)
    assert not marker.exists()
    return data


def add(x, y):
    return x + y


def with_pending_status(job: jobfolder.JobFolder) -> jobfolder.JobFolder:
    """Writes a Pending status into the job folder, as create_job does, and returns the job."""
    status = {"state": "Pending", "start_time": None, "end_time": None, "error": None,
              "supervisor_pid": None, "num_workers": 0}
    with open(os.path.join(job.path, "status"), "wb") as handle:
        handle.write(jobfolder.encode_envelope(job.key, "status", job.job_id, 0, 0,
                                               jobfolder.pack(status)))
    return job


def pending_job(session_home: Path, name: str, task_count: int = 4, shard_size: int = 1,
                key: bytes | None = None, job_id: str | None = None) -> jobfolder.JobFolder:
    """A Pending job in the session folder, written from docs/protocol.md, not yet started."""
    jobs = session_home / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    job = jobfolder.make_job(
        str(jobs / name), add, [{"x": i, "y": 1} for i in range(task_count)], name=name,
        shard_size=shard_size, num_workers=1, key=key, job_id=job_id,
        extra={"environment": {"type": "Local", "name": "trust", "num_workers": 1}})
    return with_pending_status(job)


def run_supervisor(job: jobfolder.JobFolder) -> subprocess.CompletedProcess:
    return subprocess.run([SUPERVISOR, "--job-dir", job.path, "--worker", WORKER],
                          capture_output=True, text=True, timeout=120)


def flip_byte(path: str, offset_from_end: int) -> None:
    """Flips one bit inside the envelope body (the MAC is the last 32 bytes)."""
    with open(path, "r+b") as handle:
        data = bytearray(handle.read())
        data[-offset_from_end] ^= 0x01
        handle.seek(0)
        handle.write(data)


def log_records(path: str) -> list[bytes]:
    with open(path, "rb") as handle:
        data = handle.read()
    records, offset = [], 0
    while offset + 8 <= len(data):
        length, _crc = struct.unpack(">II", data[offset:offset + 8])
        records.append(data[offset + 8:offset + 8 + length])
        offset += 8 + length
    return records


def log_record(envelope: bytes) -> bytes:
    """A well-formed results log record (length and CRC-32C are no secret)."""
    return struct.pack(">II", len(envelope), jobfolder.crc32c(envelope)) + envelope


def forged_result(key: bytes, job_id: str, task_index: int, value: bytes) -> bytes:
    row = [task_index, jobfolder.COMPLETED, 0, 1.0, 0.1, 1, None, None, None, value, 0, None]
    return jobfolder.encode_envelope(key, "results", job_id, task_index, 1, jobfolder.pack([row]))


def completed_job(name: str, task_count: int = 3):
    env = gl.deploy.environment.Local("trust-local", num_workers=1)
    job = gl.deploy.map_job.create(jobfuncs.add, [{"x": i, "y": 1} for i in range(task_count)],
                                   name=name, environment=env)
    assert job.get_status() == "Completed"
    return job


# ------------------------------------------------------------ the job definition

def test_job_definition_with_a_flipped_byte_is_refused(session_home):
    job = pending_job(session_home, "flipped-def")
    flip_byte(os.path.join(job.path, "job"), 40)
    with pytest.raises(gl.IntegrityError) as raised:
        gl.deploy.jobs["flipped-def"]
    assert str(raised.value) == (f"job folder {job.path}: file 'job' (the job definition): "
                                 f"envelope: {MAC_FAILED}")
    result = run_supervisor(job)
    assert result.returncode == 1
    assert "job definition" in result.stderr and "MAC check failed" in result.stderr
    assert not os.path.exists(os.path.join(job.path, "results", "log")) or job.read_log() == []


def test_job_definition_with_a_planted_function_never_runs(session_home, tmp_path):
    marker = tmp_path / "planted-by-jobdef"
    job = pending_job(session_home, "planted-def")
    # The attacker rewrites the definition with their own pickle as the
    # function and signs it with the only key they have: their own.
    stolen = jobfolder.decode_envelope(job.key, open(os.path.join(job.path, "job"), "rb").read())
    definition = jobfolder.msgpack.unpackb(stolen["payload"], raw=False)
    definition["function"] = planted_pickle(marker)
    with open(os.path.join(job.path, "job"), "wb") as handle:
        handle.write(jobfolder.encode_envelope(secrets.token_bytes(32), "job", job.job_id, 0,
                                               job.task_count, jobfolder.pack(definition)))
    with pytest.raises(gl.IntegrityError, match="MAC check failed"):
        gl.deploy.jobs["planted-def"]
    result = run_supervisor(job)
    assert result.returncode == 1 and "MAC check failed" in result.stderr
    assert not marker.exists()


# ------------------------------------------------------------ the task shards

def test_task_with_a_flipped_byte_is_refused(session_home):
    job = pending_job(session_home, "flipped-task")
    flip_byte(os.path.join(job.path, "tasks", "00000002"), 40)
    loaded = gl.deploy.jobs["flipped-task"]
    with pytest.raises(gl.IntegrityError, match="flipped-task: tasks/00000002: envelope: MAC check failed"):
        loaded.get_parameters()
    result = run_supervisor(job)
    assert result.returncode == 1
    assert "task shard tasks/00000002 failed its integrity check" in result.stderr
    assert job.status()["state"] == "Failed"
    assert job.read_log() == []   # not even the intact shards ran


def test_task_with_a_planted_pickle_never_runs(session_home, tmp_path):
    marker = tmp_path / "planted-by-task"
    job = pending_job(session_home, "planted-task")
    payload = jobfolder.pack([planted_pickle(marker)])
    with open(os.path.join(job.path, "tasks", "00000001"), "wb") as handle:
        handle.write(jobfolder.encode_envelope(secrets.token_bytes(32), "tasks", job.job_id, 1, 1,
                                               payload))
    with pytest.raises(gl.IntegrityError, match="MAC check failed"):
        gl.deploy.jobs["planted-task"].get_parameters()
    result = run_supervisor(job)
    assert result.returncode == 1 and "tasks/00000001 failed its integrity check" in result.stderr
    assert job.read_log() == []
    assert not marker.exists()


def test_two_swapped_task_shards_are_refused(session_home):
    # Both shards keep valid MACs: only the task range inside them gives the swap away.
    job = pending_job(session_home, "swapped-tasks")
    first = os.path.join(job.path, "tasks", "00000000")
    second = os.path.join(job.path, "tasks", "00000001")
    os.rename(first, first + ".x")
    os.rename(second, first)
    os.rename(first + ".x", second)
    with pytest.raises(gl.FormatError, match="swapped-tasks: tasks/00000000: holds tasks from 1, expected 0"):
        gl.deploy.jobs["swapped-tasks"].get_parameters()
    result = run_supervisor(job)
    assert result.returncode == 1
    assert "task shard tasks/00000000 holds tasks 1+1, expected 0+1" in result.stderr
    assert job.read_log() == []


# ------------------------------------------------------------ the results log

def test_result_with_a_flipped_byte_is_refused(session_home):
    job = completed_job("flipped-result")
    log = session_home / "jobs" / "flipped-result" / "results" / "log"
    records = log_records(str(log))
    damaged = bytearray(records[0])
    damaged[-40] ^= 0x01
    # First as a careless writer would leave it (CRC now wrong), then with the
    # CRC recomputed, as an attacker would: the MAC still catches it.
    log.write_bytes(struct.pack(">II", len(damaged), jobfolder.crc32c(records[0])) + damaged)
    with pytest.raises(gl.FormatError, match="results log is damaged at byte 0"):
        gl.deploy.jobs["flipped-result"].get_results()
    log.write_bytes(log_record(bytes(damaged)))
    with pytest.raises(gl.IntegrityError, match="results log record at byte 0.*MAC check failed"):
        gl.deploy.jobs["flipped-result"].get_results()


def test_result_replayed_from_another_job_is_refused(session_home):
    completed_job("replay-source")
    completed_job("replay-target")
    source = session_home / "jobs" / "replay-source" / "results" / "log"
    target = session_home / "jobs" / "replay-target" / "results" / "log"
    end = target.stat().st_size
    with open(target, "ab") as handle:
        handle.write(log_record(log_records(str(source))[0]))
    with pytest.raises(gl.IntegrityError, match=f"results log record at byte {end}.*MAC check failed"):
        gl.deploy.jobs["replay-target"].get_map_results()


def test_result_replayed_from_another_job_with_the_same_key_is_refused(session_home):
    # Were two jobs ever to share a key, the job id inside the MAC still tells them apart.
    key = secrets.token_bytes(32)
    pending_job(session_home, "same-key-a", key=key, job_id="job-a")
    target = pending_job(session_home, "same-key-b", key=key, job_id="job-b")
    log = Path(target.path) / "results" / "log"
    log.write_bytes(log_record(forged_result(key, "job-a", 0, cloudpickle.dumps(41))))
    with pytest.raises(gl.FormatError, match='belongs to job "job-a", not "job-b"'):
        gl.deploy.jobs["same-key-b"].get_map_results(wait=False)


def test_result_with_a_planted_pickle_never_runs(session_home, tmp_path):
    marker = tmp_path / "planted-by-result"
    job = completed_job("planted-result")
    folder = session_home / "jobs" / "planted-result"
    job_id = jobfolder.msgpack.unpackb((folder / "job").read_bytes(), raw=False)
    body = jobfolder.msgpack.unpackb(job_id["b"], raw=False)
    forged = forged_result(secrets.token_bytes(32), body["job"], 0, planted_pickle(marker))
    with open(folder / "results" / "log", "ab") as handle:
        handle.write(log_record(forged))
    for read in (lambda j: j.get_results(), lambda j: j.get_map_results(),
                 lambda j: j.get_metrics()):
        with pytest.raises(gl.IntegrityError, match="MAC check failed"):
            read(gl.deploy.jobs["planted-result"])
    assert not marker.exists()


def test_status_with_a_flipped_byte_is_refused(session_home):
    completed_job("flipped-status")
    flip_byte(str(session_home / "jobs" / "flipped-status" / "status"), 40)
    with pytest.raises(gl.IntegrityError, match="file 'status': envelope: MAC check failed"):
        gl.deploy.jobs["flipped-status"].get_status()


# ------------------------------------------------------------ file modes

def test_keys_and_folders_are_readable_by_their_owner_alone(session_home):
    # A session folder someone loosened is tightened again on the next use.
    session_home.mkdir(mode=0o755)
    os.chmod(session_home, 0o755)
    completed_job("modes")
    folder = session_home / "jobs" / "modes"
    assert os.stat(session_home).st_mode & 0o777 == 0o700
    assert os.stat(session_home / "jobs").st_mode & 0o777 == 0o700
    assert os.stat(folder).st_mode & 0o777 == 0o700
    assert os.stat(folder / "key").st_mode & 0o777 == 0o600


def test_a_key_others_can_read_is_refused(session_home):
    completed_job("loose-key")
    os.chmod(session_home / "jobs" / "loose-key" / "key", 0o644)
    with pytest.raises(gl.MapDeployError, match="key"):
        gl.deploy.jobs["loose-key"]


# ------------------------------------------------------------ blobs

MiB = 1 << 20


def echo_job(session_home: Path, name: str, values: list[bytes]) -> jobfolder.JobFolder:
    """A Pending job whose large arguments are blobs, written from docs/protocol.md."""
    jobs = session_home / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    job = jobfolder.make_job(
        str(jobs / name), jobfuncs.echo, [{"data": value} for value in values], name=name,
        shard_size=1, num_workers=1, blobs=True,
        extra={"environment": {"type": "Local", "name": "trust", "num_workers": 1}})
    return with_pending_status(job)


def argument_blob(job: jobfolder.JobFolder, task: int) -> str:
    with open(os.path.join(job.path, "tasks", "%08u" % task), "rb") as handle:
        body = jobfolder.decode_envelope(job.key, handle.read(), "tasks", job.job_id)
    [wrapped] = jobfolder.msgpack.unpackb(body["payload"], raw=False)
    _pickle, [ref] = jobfolder.unwrap(wrapped)
    return jobfolder.blob_path(job.path, ref[1])


def value_blobs(name: str) -> list[str]:
    """The value blobs of a job, in task order (as the results log names them)."""
    store = gl.deploy.jobs[name]._store
    paths = {}
    for row in store.read_results():
        _pickle, refs = jobfolder.unwrap(row[9])
        paths[row[0]] = [jobfolder.blob_path(store.path, ref[1]) for ref in refs]
    return [path for index in sorted(paths) for path in paths[index]]


def run_and_failures(job: jobfolder.JobFolder) -> dict[int, str]:
    """Runs the job's supervisor; task index -> message of each failed task."""
    result = run_supervisor(job)
    assert result.returncode == 0, result.stderr
    return {index: row["exc_message"] for index, row in job.results().items()
            if row["status"] == jobfolder.FAILED}


def test_argument_blob_with_a_flipped_byte_fails_its_task(session_home):
    values = [os.urandom(2 * MiB), os.urandom(2 * MiB)]
    job = echo_job(session_home, "flipped-argument-blob", values)
    damaged = argument_blob(job, 1)
    with open(damaged, "r+b") as handle:
        handle.seek(MiB)
        byte = handle.read(1)
        handle.seek(MiB)
        handle.write(bytes([byte[0] ^ 0x01]))
    loaded = gl.deploy.jobs["flipped-argument-blob"]
    with pytest.raises(gl.IntegrityError, match=f"{damaged} does not match its MAC"):
        loaded.get_parameters()
    failures = run_and_failures(job)
    assert list(failures) == [1]
    assert failures[1] == (f"mapdeploy: {damaged} does not match its MAC: the blob was tampered "
                           "with or damaged")
    assert gl.deploy.jobs["flipped-argument-blob"].get_map_results() == [values[0], None]


def test_two_swapped_argument_blobs_fail_both_tasks(session_home):
    job = echo_job(session_home, "swapped-argument-blobs", [os.urandom(2 * MiB), os.urandom(2 * MiB)])
    first, second = argument_blob(job, 0), argument_blob(job, 1)
    os.rename(first, first + ".x")
    os.rename(second, first)
    os.rename(first + ".x", second)
    failures = run_and_failures(job)
    assert sorted(failures) == [0, 1]
    assert all("does not match its MAC" in message for message in failures.values())


def test_a_truncated_argument_blob_fails_its_task(session_home):
    job = echo_job(session_home, "truncated-argument-blob", [os.urandom(2 * MiB)])
    damaged = argument_blob(job, 0)
    os.truncate(damaged, MiB)
    failures = run_and_failures(job)
    assert failures == {0: f"mapdeploy: {damaged} has {MiB} bytes, its reference says {2 * MiB}: "
                           "the blob was tampered with or damaged"}


def test_a_missing_argument_blob_fails_its_task(session_home):
    job = echo_job(session_home, "missing-argument-blob", [os.urandom(2 * MiB)])
    os.unlink(argument_blob(job, 0))
    failures = run_and_failures(job)
    assert "cannot open" in failures[0] and "No such file" in failures[0]


def large_values_job(name: str, count: int = 2):
    env = gl.deploy.environment.Local("trust-local", num_workers=1)
    job = gl.deploy.map_job.create(jobfuncs.big_bytes, [{"n": 2 * MiB, "seed": i} for i in range(count)],
                                   name=name, environment=env)
    assert job.get_status() == "Completed"
    return job


def test_value_blob_with_a_flipped_byte_is_refused(session_home):
    large_values_job("flipped-value-blob")
    damaged = value_blobs("flipped-value-blob")[1]
    with open(damaged, "r+b") as handle:
        handle.seek(2 * MiB - 1)
        byte = handle.read(1)
        handle.seek(2 * MiB - 1)
        handle.write(bytes([byte[0] ^ 0x80]))
    for read in (lambda j: j.get_results(), lambda j: j.get_map_results()):
        with pytest.raises(gl.IntegrityError, match=f"{damaged} does not match its MAC"):
            read(gl.deploy.jobs["flipped-value-blob"])


def test_two_swapped_value_blobs_are_refused(session_home):
    large_values_job("swapped-value-blobs")
    first, second = value_blobs("swapped-value-blobs")
    os.rename(first, first + ".x")
    os.rename(second, first)
    os.rename(first + ".x", second)
    with pytest.raises(gl.IntegrityError, match="does not match its MAC"):
        gl.deploy.jobs["swapped-value-blobs"].get_results()


def test_a_truncated_value_blob_is_refused(session_home):
    large_values_job("truncated-value-blob", count=1)
    [damaged] = value_blobs("truncated-value-blob")
    with open(damaged, "ab") as handle:
        handle.write(b"more")
    with pytest.raises(gl.IntegrityError, match=f"{damaged} has {2 * MiB + 4} bytes, its "
                                                f"reference says {2 * MiB}"):
        gl.deploy.jobs["truncated-value-blob"].get_results()
