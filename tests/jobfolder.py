"""Builds and reads mapdeploy job folders by hand, from docs/protocol.md alone.

Independent of the C core and of the Python API on purpose: tests that use it
check the executables against the written format, not against shared code.
Needs msgpack, cloudpickle and cryptography (Poly1305, for blobs).
"""
import hashlib
import hmac
import os
import pickle
import secrets
import struct
import sys
import time

import cloudpickle
import msgpack
from cryptography.hazmat.primitives.poly1305 import Poly1305

FORMAT_VERSION = 1
MAC_PREFIX = b"mapdeploy-envelope/1\0"
COMPLETED = 1
FAILED = 2
BLOB_THRESHOLD = 1 << 20
BLOB_KEY_PREFIX = b"mapdeploy-blob/1\0"
OOB_MAGIC = b"\0MDB"


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def encode_envelope(key, kind, job_id, first, count, payload, attempt=0):
    body = pack({"kind": kind, "job": job_id, "first": first, "count": count,
                 "attempt": attempt, "payload": payload})
    mac = hmac.new(key, MAC_PREFIX + body, hashlib.sha256).digest()
    return pack({"v": FORMAT_VERSION, "b": body, "m": mac})


def decode_envelope(key, data, kind=None, job_id=None):
    outer = msgpack.unpackb(data, raw=False)
    if outer["v"] != FORMAT_VERSION:
        raise ValueError("format version %r" % outer["v"])
    mac = hmac.new(key, MAC_PREFIX + outer["b"], hashlib.sha256).digest()
    if not hmac.compare_digest(mac, outer["m"]):
        raise ValueError("bad MAC")
    body = msgpack.unpackb(outer["b"], raw=False)
    if kind is not None and body["kind"] != kind:
        raise ValueError("kind %r, expected %r" % (body["kind"], kind))
    if job_id is not None and body["job"] != job_id:
        raise ValueError("job %r, expected %r" % (body["job"], job_id))
    return body


def _write(path, data, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


class JobFolder:
    def __init__(self, path, key, job_id, task_count):
        self.path = path
        self.key = key
        self.job_id = job_id
        self.task_count = task_count

    def read_log(self):
        """Every result in results/log, in order, as dicts (torn tail ignored)."""
        path = os.path.join(self.path, "results", "log")
        if not os.path.exists(path):
            return []
        with open(path, "rb") as f:
            data = f.read()
        out = []
        off = 0
        while off + 8 <= len(data):
            n, crc = struct.unpack(">II", data[off:off + 8])
            if off + 8 + n > len(data):
                break
            record = data[off + 8:off + 8 + n]
            if crc32c(record) != crc:
                raise ValueError("CRC mismatch at byte %d" % off)
            body = decode_envelope(self.key, record, "results", self.job_id)
            for r in msgpack.unpackb(body["payload"], raw=False):
                out.append({"task_index": r[0], "status": r[1], "attempt": r[2],
                            "start_time": r[3], "run_time": r[4], "worker_pid": r[5],
                            "exc_type": r[6], "exc_message": r[7],
                            "exc_traceback": r[8], "value": r[9]})
            off += 8 + n
        return out

    def results(self):
        """task_index -> chosen result: the first Completed one, else the last."""
        chosen = {}
        for r in self.read_log():
            old = chosen.get(r["task_index"])
            if old is None or old["status"] != COMPLETED:
                chosen[r["task_index"]] = r
        return chosen

    def status(self):
        with open(os.path.join(self.path, "status"), "rb") as f:
            body = decode_envelope(self.key, f.read(), "status", self.job_id)
        return msgpack.unpackb(body["payload"], raw=False)

    def cancel(self):
        _write(os.path.join(self.path, "cancel"), b"")


def blob_tag(key, nonce, data):
    """Poly1305 under the one-time key HMAC-SHA256(job key, prefix || nonce)."""
    one_time = hmac.new(key, BLOB_KEY_PREFIX + nonce, hashlib.sha256).digest()
    return Poly1305.generate_tag(one_time, bytes(data))


def blob_path(job_path, nonce):
    return os.path.join(job_path, "blobs", nonce.hex())


def write_blob(job_path, key, data, readonly=True):
    """Writes blobs/<hex nonce>; returns its reference [length, nonce, tag, readonly]."""
    nonce = secrets.token_bytes(16)
    os.makedirs(os.path.join(job_path, "blobs"), mode=0o700, exist_ok=True)
    _write(blob_path(job_path, nonce), bytes(data))
    return [len(data), nonce, blob_tag(key, nonce, data), readonly]


def wrap(pickled, refs):
    """The out-of-band wrapper: magic, then msgpack [pickle, [reference...]]."""
    return OOB_MAGIC + pack([pickled, refs])


def unwrap(data):
    """(pickle, references) of a wrapper; (data, []) for a plain pickle."""
    if not data.startswith(OOB_MAGIC):
        return data, []
    pickled, refs = msgpack.unpackb(data[len(OOB_MAGIC):], raw=False)
    return pickled, refs


def dumps_with_blobs(job_path, key, kwargs):
    """A kwargs pickle whose top-level bytes of BLOB_THRESHOLD or more are blobs."""
    buffers = []
    shown = {name: pickle.PickleBuffer(value)
             if isinstance(value, bytes) and len(value) >= BLOB_THRESHOLD else value
             for name, value in kwargs.items()}
    data = pickle.dumps(shown, protocol=5, buffer_callback=buffers.append)
    if not buffers:
        return data
    return wrap(data, [write_blob(job_path, key, buf.raw(), buf.raw().readonly)
                       for buf in buffers])


def make_job(path, function, kwargs_list, *, num_workers=2, shard_size=1000,
             combiner=None, job_kind="map", name="test-job", job_id=None,
             python_version=None, key=None, extra=None, blobs=False):
    """Writes a complete Pending job folder at path (created); returns a JobFolder.

    key: the job key (default: 32 fresh random bytes); extra: more keys for
    the job definition (the Python API keeps its own metadata there); blobs:
    large bytes arguments are written as blobs and the definition names the
    folder (job_dir)."""
    os.makedirs(path, mode=0o700)
    for sub in ("tasks", "results", "logs"):
        os.mkdir(os.path.join(path, sub), 0o700)
    key = key or secrets.token_bytes(32)
    job_id = job_id or "job-" + secrets.token_hex(8)
    count = len(kwargs_list)
    _write(os.path.join(path, "key"), key)
    jobdef = {
        "name": name,
        "job_kind": job_kind,
        "function_name": getattr(function, "__name__", "function"),
        "function": cloudpickle.dumps(function, protocol=5),
        "combiner_name": getattr(combiner, "__name__", None) if combiner else None,
        "combiner": cloudpickle.dumps(combiner, protocol=5) if combiner else None,
        "task_count": count,
        "shard_size": shard_size,
        "python_version": python_version or "%d.%d" % sys.version_info[:2],
        "cwd": os.getcwd(),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "exec_prefix": sys.exec_prefix,
        "sys_path": [os.path.abspath(p) for p in sys.path if p],
        "num_workers": num_workers,
        "created": time.time(),
    }
    if blobs:
        jobdef["job_dir"] = os.path.abspath(path)
    jobdef.update(extra or {})
    _write(os.path.join(path, "job"),
           encode_envelope(key, "job", job_id, 0, count, pack(jobdef)))
    for shard, first in enumerate(range(0, count, shard_size)):
        chunk = kwargs_list[first:first + shard_size]
        payload = pack([dumps_with_blobs(path, key, kw) if blobs
                        else cloudpickle.dumps(kw, protocol=5) for kw in chunk])
        _write(os.path.join(path, "tasks", "%08u" % shard),
               encode_envelope(key, "tasks", job_id, first, len(chunk), payload))
    return JobFolder(path, key, job_id, count)
