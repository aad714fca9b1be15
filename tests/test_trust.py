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


def pending_job(session_home: Path, name: str, task_count: int = 4, shard_size: int = 1,
                key: bytes | None = None, job_id: str | None = None) -> jobfolder.JobFolder:
    """A Pending job in the session folder, written from docs/protocol.md, not yet started."""
    jobs = session_home / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    job = jobfolder.make_job(
        str(jobs / name), add, [{"x": i, "y": 1} for i in range(task_count)], name=name,
        shard_size=shard_size, num_workers=1, key=key, job_id=job_id,
        extra={"environment": {"type": "Local", "name": "trust", "num_workers": 1}})
    status = {"state": "Pending", "start_time": None, "end_time": None, "error": None,
              "supervisor_pid": None, "num_workers": 0}
    with open(os.path.join(job.path, "status"), "wb") as handle:
        handle.write(jobfolder.encode_envelope(job.key, "status", job.job_id, 0, 0,
                                               jobfolder.pack(status)))
    return job


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
