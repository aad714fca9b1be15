"""Drives the real mapdeploy-worker binary over a socketpair.

The supervisor's side of docs/protocol.md is re-implemented here in a few
lines of pure Python (msgpack + hmac), independent of the C core, so these
tests check the worker against the written protocol rather than against the
code it shares with the supervisor.
"""
import hashlib
import hmac
import os
import pickle
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cloudpickle
import msgpack
import pytest

from conftest import wait_until
from mapdeploy import _engine

ROOT = Path(__file__).resolve().parent.parent
# The installed worker, the one jobs run (MAPDEPLOY_WORKER overrides).
WORKER = Path(os.environ.get("MAPDEPLOY_WORKER") or _engine.executable(_engine.WORKER))
MAC_PREFIX = b"mapdeploy-envelope/1\0"
COMPLETED, FAILED = 1, 2
PY_VERSION = "%d.%d" % sys.version_info[:2]



@pytest.fixture(autouse=True)
def _worker_built():
    # Failing (not skipping) keeps a missing build step from passing CI quietly.
    assert WORKER.exists(), (f"worker binary not found at {WORKER}: run "
                             "`pip install .` or set MAPDEPLOY_WORKER")


# ------------------------------------------------------------------ protocol

def packb(obj):
    return msgpack.packb(obj, use_bin_type=True)


def unpackb(data):
    return msgpack.unpackb(data, raw=False, strict_map_key=True)


def make_envelope(key, kind, job, payload, first=0, count=0, attempt=0):
    body = packb({"kind": kind, "job": job, "first": first, "count": count,
                  "attempt": attempt, "payload": payload})
    mac = hmac.new(key, MAC_PREFIX + body, hashlib.sha256).digest()
    return packb({"v": 1, "b": body, "m": mac})


def open_envelope(key, data, kind, job):
    outer = unpackb(data)
    assert set(outer) == {"v", "b", "m"}
    assert outer["v"] == 1
    mac = hmac.new(key, MAC_PREFIX + outer["b"], hashlib.sha256).digest()
    assert hmac.compare_digest(mac, outer["m"]), "worker's envelope fails its MAC"
    body = unpackb(outer["b"])
    assert body["kind"] == kind
    assert body["job"] == job
    return body


def make_fn(source, name):
    """A function defined in a throw-away __main__-like namespace, so that
    cloudpickle pickles it by value (the worker cannot import this file)."""
    namespace = {"__name__": "__main__"}
    exec(textwrap.dedent(source), namespace)
    return namespace[name]


def job_definition(fn, *, task_count=1, combiner=None, python_version=PY_VERSION,
                   cwd=None, function_bytes=None, sys_path=None):
    return {
        "name": "test-job",
        "job_kind": "map",
        "function_name": getattr(fn, "__name__", "fn"),
        "function": function_bytes if function_bytes is not None
        else cloudpickle.dumps(fn, protocol=5),
        "combiner_name": None if combiner is None else combiner.__name__,
        "combiner": None if combiner is None else cloudpickle.dumps(combiner, protocol=5),
        "task_count": task_count,
        "shard_size": 100,
        "python_version": python_version,
        "cwd": cwd if cwd is not None else os.getcwd(),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "exec_prefix": sys.exec_prefix,
        "sys_path": sys_path if sys_path is not None
        else [p for p in sys.path if os.path.isabs(p)],
        "num_workers": 1,
        "created": time.time(),
        "environment": {"ignored": True},   # keys the C side does not read
    }


class Worker:
    def __init__(self, tmp_path, *, default_fd=False):
        self.key = os.urandom(32)
        self.job = "job-" + os.urandom(4).hex()
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.stdout_path = tmp_path / "worker.out"
        self.stderr_path = tmp_path / "worker.err"
        out = open(self.stdout_path, "wb")
        err = open(self.stderr_path, "wb")
        try:
            if default_fd:
                def to_fd3(fd=child.fileno()):
                    os.dup2(fd, 3)
                self.proc = subprocess.Popen([str(WORKER)], stdin=subprocess.DEVNULL,
                                             stdout=out, stderr=err,
                                             preexec_fn=to_fd3, close_fds=False)
            else:
                self.proc = subprocess.Popen(
                    [str(WORKER), "--fd", str(child.fileno())], stdin=subprocess.DEVNULL,
                    stdout=out, stderr=err, pass_fds=(child.fileno(),))
        finally:
            out.close()
            err.close()
            child.close()
        self.sock.settimeout(30)

    # frames
    def send_frame(self, data):
        self.sock.sendall(struct.pack(">I", len(data)) + data)

    def _recv_exact(self, n):
        chunks = []
        while n:
            chunk = self.sock.recv(n)
            if not chunk:
                return None
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def recv_frame(self):
        header = self._recv_exact(4)
        if header is None:
            return None
        (n,) = struct.unpack(">I", header)
        data = self._recv_exact(n)
        assert data is not None, "EOF inside a frame"
        return data

    # messages
    def start(self, jobdef):
        self.jobdef = jobdef
        self.send_frame(packb({"v": 1, "key": self.key, "job": self.job}))
        self.send_frame(make_envelope(self.key, "job", self.job, packb(jobdef),
                                      0, jobdef["task_count"]))
        return self.recv_ready()

    def recv_ready(self):
        frame = self.recv_frame()
        assert frame is not None, "worker closed before READY: " + self.stderr()
        body = open_envelope(self.key, frame, "ready", self.job)
        return unpackb(body["payload"])

    def tasks_envelope(self, kwargs_list, first=0, attempt=0):
        payload = packb([cloudpickle.dumps(kw, protocol=5) for kw in kwargs_list])
        return make_envelope(self.key, "tasks", self.job, payload, first,
                             len(kwargs_list), attempt)

    def send_tasks(self, kwargs_list, first=0, attempt=0):
        self.send_frame(self.tasks_envelope(kwargs_list, first, attempt))

    def recv_results(self):
        """One RESULTS envelope: (body, [result dicts])."""
        frame = self.recv_frame()
        assert frame is not None, "worker closed instead of answering: " + self.stderr()
        body = open_envelope(self.key, frame, "results", self.job)
        results = [decode_result(r) for r in unpackb(body["payload"])]
        assert len(results) == body["count"]
        assert [r["task_index"] for r in results] == \
            list(range(body["first"], body["first"] + body["count"]))
        return body, results

    def run(self, kwargs_list, first=0, attempt=0):
        """Sends one batch and collects every result for it, in order."""
        self.send_tasks(kwargs_list, first, attempt)
        results = []
        while len(results) < len(kwargs_list):
            _, got = self.recv_results()
            results.extend(got)
        return results

    def combine(self, entries, attempt=0):
        count = self.jobdef["task_count"]
        self.send_frame(make_envelope(self.key, "combine", self.job, packb(entries),
                                      count, 1, attempt))
        body, results = self.recv_results()
        assert body["first"] == count and body["count"] == 1
        return results[0]

    def close(self, timeout=10):
        self.sock.close()
        return self.proc.wait(timeout)

    def wait(self, timeout=10):
        return self.proc.wait(timeout)

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def stdout(self):
        return self.stdout_path.read_text(errors="replace")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()


RESULT_FIELDS = ["task_index", "status", "attempt", "start_time", "run_time",
                 "worker_pid", "exc_type", "exc_message", "exc_traceback", "value"]


def decode_result(array):
    assert len(array) >= len(RESULT_FIELDS)
    return dict(zip(RESULT_FIELDS, array))


@pytest.fixture
def spawn(tmp_path):
    workers = []

    def make(**kw):
        w = Worker(tmp_path, **kw)
        workers.append(w)
        return w
    yield make
    for w in workers:
        w.kill()


# ------------------------------------------------------------------ tests

ADD = make_fn("""
def add(x, y=10):
    return x + y
""", "add")


def test_success_and_result_fields(spawn):
    w = spawn()
    ready = w.start(job_definition(ADD, task_count=3))
    assert ready["error"] is None
    assert ready["python_version"] == PY_VERSION
    assert ready["pid"] == w.proc.pid
    before = time.time()
    results = w.run([{"x": 1}, {"x": 2, "y": 3}, {"x": 40, "y": 2}], attempt=2)
    assert [r["status"] for r in results] == [COMPLETED] * 3
    assert [pickle.loads(r["value"]) for r in results] == [11, 5, 42]
    for r in results:
        assert r["attempt"] == 2
        assert r["worker_pid"] == w.proc.pid
        assert r["exc_type"] is None and r["exc_message"] is None
        assert r["exc_traceback"] is None
        assert before - 5 < r["start_time"] <= time.time()
        assert 0 <= r["run_time"] < 5
    assert w.close() == 0
    assert "Could not find platform" not in w.stderr()


def test_default_fd_is_3(spawn):
    w = spawn(default_fd=True)
    assert w.start(job_definition(ADD))["error"] is None
    assert pickle.loads(w.run([{"x": 1}])[0]["value"]) == 11
    assert w.close() == 0


def test_first_index_and_interpreter_setup(spawn, tmp_path):
    probe = make_fn("""
def probe():
    import json, os, sys, decimal
    return {"path": list(sys.path), "cwd": os.getcwd(), "argv": list(sys.argv),
            "flags_isolated": sys.flags.isolated, "site": "site" in sys.modules,
            "json": json.dumps([1])}
""", "probe")
    sys_path = [p for p in sys.path if os.path.isabs(p)]
    w = spawn()
    assert w.start(job_definition(probe, task_count=10, cwd=str(tmp_path),
                                  sys_path=sys_path))["error"] is None
    (r,) = w.run([{}], first=7)
    assert r["task_index"] == 7 and r["status"] == COMPLETED, r
    info = pickle.loads(r["value"])
    assert info["path"] == sys_path
    assert os.path.realpath(info["cwd"]) == os.path.realpath(tmp_path)
    assert info["argv"] == ["mapdeploy-worker"]
    assert info["site"] is False
    assert info["json"] == "[1]"
    assert w.close() == 0
    assert "Could not find platform" not in w.stderr()


def test_missing_cwd_only_warns(spawn, tmp_path):
    w = spawn()
    assert w.start(job_definition(ADD, cwd=str(tmp_path / "gone")))["error"] is None
    assert pickle.loads(w.run([{"x": 0}])[0]["value"]) == 10
    assert w.close() == 0
    assert "warning" in w.stderr() and "gone" in w.stderr()


def test_exception_with_traceback(spawn):
    boom = make_fn("""
def inner(x):
    raise ValueError("bad value %d" % x)

def boom(x):
    if x == 1:
        inner(x)
    return x
""", "boom")
    w = spawn()
    w.start(job_definition(boom, task_count=3))
    results = w.run([{"x": 0}, {"x": 1}, {"x": 2}])
    assert [r["status"] for r in results] == [COMPLETED, FAILED, COMPLETED]
    bad = results[1]
    assert bad["exc_type"] == "ValueError"
    assert bad["exc_message"] == "bad value 1"
    assert bad["value"] is None
    tb = bad["exc_traceback"]
    assert tb.startswith("Traceback (most recent call last):")
    assert "in inner" in tb and "in boom" in tb
    assert tb.rstrip().endswith("ValueError: bad value 1")
    assert w.close() == 0


def test_base_exceptions_fail_only_their_task(spawn):
    fn = make_fn("""
def fn(kind):
    import sys
    if kind == "exit":
        sys.exit(3)
    if kind == "interrupt":
        raise KeyboardInterrupt("stop")
    if kind == "unprintable":
        class Odd(Exception):
            def __str__(self):
                raise RuntimeError("no")
        raise Odd()
    if kind == "badkw":
        return None
    return kind
""", "fn")
    w = spawn()
    w.start(job_definition(fn, task_count=4))
    results = w.run([{"kind": "exit"}, {"kind": "interrupt"},
                     {"kind": "unprintable"}, {"kind": "ok"}])
    assert [r["status"] for r in results] == [FAILED, FAILED, FAILED, COMPLETED]
    assert results[0]["exc_type"] == "SystemExit" and results[0]["exc_message"] == "3"
    assert results[1]["exc_type"] == "KeyboardInterrupt"
    assert results[1]["exc_message"] == "stop"
    assert results[2]["exc_type"] == "Odd"
    assert results[2]["exc_message"] == "<unprintable Odd>"
    assert pickle.loads(results[3]["value"]) == "ok"
    # Unknown keyword: an ordinary TypeError from the call.
    (r,) = w.run([{"nope": 1}], first=0)
    assert r["status"] == FAILED and r["exc_type"] == "TypeError"
    assert w.close() == 0


def test_non_dict_kwargs(spawn):
    w = spawn()
    w.start(job_definition(ADD, task_count=3))
    results = w.run([[1, 2], {"x": 1}, None])
    assert [r["status"] for r in results] == [FAILED, COMPLETED, FAILED]
    for r in (results[0], results[2]):
        assert r["exc_type"] == "TypeError"
        assert r["exc_message"] == "parameter set entry is not a dict"
    assert w.close() == 0


def test_unpicklable_return_values(spawn):
    fn = make_fn("""
def fn(kind):
    import threading
    if kind == "generator":
        return (i for i in range(3))
    if kind == "lock":
        return threading.Lock()
    if kind == "lambda":
        return lambda v: v + 1          # only cloudpickle can
    return kind
""", "fn")
    w = spawn()
    w.start(job_definition(fn, task_count=3))
    gen, lock, lam = w.run([{"kind": "generator"}, {"kind": "lock"}, {"kind": "lambda"}])
    assert gen["status"] == FAILED and gen["value"] is None
    assert gen["exc_type"] == "TypeError"
    assert gen["exc_message"].startswith("could not pickle the return value (a generator): ")
    assert "generator" in gen["exc_message"][len("could not pickle the return value"):]
    assert lock["status"] == FAILED
    assert lock["exc_message"].startswith("could not pickle the return value (a lock): ")
    assert lam["status"] == COMPLETED
    assert pickle.loads(lam["value"])(1) == 2
    assert w.close() == 0


def test_os_exit_in_task_closes_socket(spawn):
    fn = make_fn("""
def fn(x):
    import os
    if x == 1:
        os._exit(7)
    return x
""", "fn")
    w = spawn()
    w.start(job_definition(fn, task_count=2))
    (r,) = w.run([{"x": 0}])
    assert r["status"] == COMPLETED
    w.send_tasks([{"x": 1}], first=1)
    assert w.recv_frame() is None
    assert w.wait() == 7


def test_function_that_fails_to_unpickle(spawn, tmp_path, monkeypatch):
    moddir = tmp_path / "mods"
    moddir.mkdir()
    (moddir / "md_only_here.py").write_text("def f(x):\n    return x\n")
    monkeypatch.syspath_prepend(str(moddir))
    import md_only_here
    try:
        data = cloudpickle.dumps(md_only_here.f, protocol=5)   # by reference
    finally:
        del sys.modules["md_only_here"]
    sys_path = [p for p in sys.path if os.path.isabs(p) and p != str(moddir)]
    w = spawn()
    ready = w.start(job_definition(None, task_count=2, function_bytes=data,
                                   sys_path=sys_path))
    assert ready["error"] is None
    results = w.run([{"x": 1}, {"x": 2}])
    for r in results:
        assert r["status"] == FAILED
        assert r["exc_type"] == "ModuleNotFoundError"
        assert r["exc_message"].startswith("could not load the function: ")
        assert "md_only_here" in r["exc_message"]
        assert "Traceback" in r["exc_traceback"]
    assert w.close() == 0


def test_combine_with_failed_task(spawn):
    fn = make_fn("""
def fn(x):
    if x == 1:
        raise RuntimeError("no")
    return x * 10
""", "fn")
    comb = make_fn("""
def comb(**results):
    return sorted(results.items(), key=lambda kv: kv[0])
""", "comb")
    w = spawn()
    w.start(job_definition(fn, task_count=3, combiner=comb))
    results = w.run([{"x": 0}, {"x": 1}, {"x": 2}])
    entries = [["t%d" % r["task_index"], r["value"]] for r in results]
    assert entries[1][1] is None
    r = w.combine(entries, attempt=1)
    assert r["task_index"] == 3 and r["status"] == COMPLETED, r
    assert r["attempt"] == 1
    assert pickle.loads(r["value"]) == [("t0", 0), ("t1", None), ("t2", 20)]
    # Names are whatever the supervisor sends.
    r = w.combine([["t0", None], ["bad", pickle.dumps(1)]])
    assert r["status"] == COMPLETED     # comb accepts any names
    assert w.close() == 0


def test_combiner_failure_and_missing_combiner(spawn):
    comb = make_fn("""
def comb(**results):
    raise LookupError("nothing to combine")
""", "comb")
    w = spawn()
    w.start(job_definition(ADD, task_count=1, combiner=comb))
    r = w.combine([["a", None]])
    assert r["status"] == FAILED and r["exc_type"] == "LookupError"
    assert r["exc_message"] == "nothing to combine"
    assert w.close() == 0

    w2 = spawn()
    w2.start(job_definition(ADD, task_count=1))
    r = w2.combine([["a", None]])
    assert r["status"] == FAILED and "could not load the combiner" in r["exc_message"]
    assert w2.close() == 0


def test_tampered_envelope_is_not_run(spawn, tmp_path):
    marker = tmp_path / "ran"
    touch = make_fn("""
def touch(path):
    open(path, "w").close()
    return path
""", "touch")
    w = spawn()
    w.start(job_definition(touch, task_count=1))
    frame = bytearray(w.tasks_envelope([{"path": str(marker)}]))
    body = unpackb(bytes(frame))["b"]
    at = bytes(frame).index(body) + len(body) // 2
    frame[at] ^= 0x01
    w.send_frame(bytes(frame))
    assert w.recv_frame() is None
    assert w.wait() == 2
    assert not marker.exists()
    assert "authentication" in w.stderr()


def test_envelope_from_another_job_is_refused(spawn, tmp_path):
    w = spawn()
    w.start(job_definition(ADD))
    payload = packb([cloudpickle.dumps({"x": 1})])
    w.send_frame(make_envelope(w.key, "tasks", "some-other-job", payload, 0, 1))
    assert w.recv_frame() is None
    assert w.wait() == 2


def test_python_version_mismatch(spawn):
    w = spawn()
    ready = w.start(job_definition(ADD, python_version="3.99"))
    assert ready["error"] == (
        f"this worker was built for Python {PY_VERSION} but the job was submitted "
        "from Python 3.99; reinstall mapdeploy with the Python that submits jobs")
    assert ready["pid"] == w.proc.pid
    assert w.recv_frame() is None
    assert w.wait() == 1


def test_long_batch_streams_results(spawn):
    slow = make_fn("""
def slow(x):
    import time
    time.sleep(0.06)
    return x
""", "slow")
    w = spawn()
    w.start(job_definition(slow, task_count=8))
    w.send_tasks([{"x": i} for i in range(8)])
    envelopes = []
    got = 0
    while got < 8:
        body, results = w.recv_results()
        envelopes.append(body["count"])
        got += len(results)
    assert len(envelopes) >= 2, envelopes
    assert sum(envelopes) == 8
    assert w.close() == 0


def test_output_flushed_and_threads_do_not_block_exit(spawn):
    fn = make_fn("""
def fn(x):
    import sys, threading, time
    print("hello from task", x)
    print("to stderr", x, file=sys.stderr)
    threading.Thread(target=time.sleep, args=(3600,)).start()   # non-daemon
    return x
""", "fn")
    w = spawn()
    w.start(job_definition(fn, task_count=1))
    (r,) = w.run([{"x": 5}])
    assert r["status"] == COMPLETED
    # Flushed after the task, before the worker is asked to stop.
    assert "hello from task 5" in w.stdout()
    assert "to stderr 5" in w.stderr()
    start = time.monotonic()
    assert w.close() == 0
    assert time.monotonic() - start < 5


def test_threads_run_while_worker_waits(spawn, tmp_path):
    marker = tmp_path / "ticks"
    fn = make_fn("""
def fn(path):
    import threading, time
    def tick():
        for i in range(20):
            with open(path, "a") as f:
                f.write("x")
            time.sleep(0.01)
    threading.Thread(target=tick, daemon=True).start()
    return 1
""", "fn")
    w = spawn()
    w.start(job_definition(fn, task_count=1))
    w.run([{"path": str(marker)}])
    def ticks():
        return len(marker.read_text()) if marker.exists() else 0
    assert wait_until(lambda: ticks() == 20, timeout=5)   # the GIL was released while the worker waited
    assert w.close() == 0


def test_many_tasks_memory_stays_bounded(spawn):
    fn = make_fn("""
def fn(x):
    return b"y" * 10000
""", "fn")
    w = spawn()
    w.start(job_definition(fn, task_count=1))

    def rss_kib():
        with open("/proc/%d/status" % w.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])

    w.run([{"x": i} for i in range(500)])
    base = rss_kib()
    for _ in range(6):
        w.run([{"x": i} for i in range(500)])
    assert rss_kib() - base < 20000
    assert w.close() == 0


def test_submitted_from_a_venv(spawn, tmp_path):
    import venv
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False, symlinks=True)
    probe = make_fn("""
def probe():
    import sys, sysconfig
    return (sys.prefix, sys.exec_prefix, sys.base_prefix, sys.executable,
            sysconfig.get_paths()["purelib"])
""", "probe")
    jd = job_definition(probe)
    jd["executable"] = str(env_dir / "bin" / "python")
    jd["prefix"] = jd["exec_prefix"] = str(env_dir)
    w = spawn()
    assert w.start(jd)["error"] is None
    (r,) = w.run([{}])
    assert r["status"] == COMPLETED, r
    prefix, exec_prefix, base_prefix, executable, purelib = pickle.loads(r["value"])
    assert prefix == exec_prefix == str(env_dir)
    assert base_prefix == sys.base_prefix          # as in the venv's own python
    assert executable == str(env_dir / "bin" / "python")
    assert purelib.startswith(str(env_dir))
    assert w.close() == 0
    assert w.stderr() == ""


def test_python_that_cannot_start_reports_in_ready(spawn):
    w = spawn()
    ready = w.start(job_definition(ADD, sys_path=["/nonexistent"]))
    assert ready["error"].startswith("could not start Python")
    assert w.wait() == 1


def test_missing_cloudpickle_reports_in_ready(spawn):
    w = spawn()
    no_site = [p for p in sys.path if os.path.isabs(p) and "site-packages" not in p]
    ready = w.start(job_definition(ADD, sys_path=no_site))
    assert "cloudpickle" in ready["error"]
    assert w.wait() == 1


# ------------------------------------------------------------------ warm workers

def switch_envelope(w, new_key, new_job, log_path, key=None):
    """A SWITCH for the next job, authenticated with the key of the job served (or `key`)."""
    hello = packb({"v": 1, "key": new_key, "job": new_job, "log": str(log_path)})
    return make_envelope(key or w.key, "switch", w.job, hello)


def test_switch_runs_the_next_job_with_its_own_key_function_and_log(spawn, tmp_path):
    shout = make_fn("""
def shout(x):
    print("next job says", x)
    return -x
""", "shout")
    w = spawn()
    w.start(job_definition(ADD, task_count=1))
    assert pickle.loads(w.run([{"x": 1}])[0]["value"]) == 11
    new_key, new_job = os.urandom(32), "job-" + os.urandom(4).hex()
    log = tmp_path / "next-worker-0.log"
    w.send_frame(switch_envelope(w, new_key, new_job, log))
    w.key, w.job = new_key, new_job
    definition = job_definition(shout, task_count=2, cwd=str(tmp_path))
    w.jobdef = definition
    w.send_frame(make_envelope(w.key, "job", w.job, packb(definition), 0, 2))
    ready = w.recv_ready()  # under the new key and job id
    assert ready["error"] is None and ready["pid"] == w.proc.pid
    results = w.run([{"x": 5}, {"x": 6}])
    assert [pickle.loads(r["value"]) for r in results] == [-5, -6]
    # what it printed went to the new log, not to the first job's stdout
    assert w.close() == 0
    assert "next job says 5" in log.read_text()
    assert "next job says" not in w.stdout()


def test_switch_under_a_wrong_key_is_refused(spawn, tmp_path):
    w = spawn()
    w.start(job_definition(ADD, task_count=1))
    log = tmp_path / "never.log"
    w.send_frame(switch_envelope(w, os.urandom(32), "job-other", log, key=os.urandom(32)))
    assert w.recv_frame() is None
    assert w.wait() == 2
    assert "authentication" in w.stderr()
    assert not log.exists()


def test_the_old_key_is_refused_after_a_switch(spawn, tmp_path):
    w = spawn()
    w.start(job_definition(ADD, task_count=1))
    old_key, old_job = w.key, w.job
    new_key, new_job = os.urandom(32), "job-" + os.urandom(4).hex()
    w.send_frame(switch_envelope(w, new_key, new_job, tmp_path / "next.log"))
    w.key, w.job = new_key, new_job
    w.send_frame(make_envelope(w.key, "job", w.job, packb(job_definition(ADD)), 0, 1))
    w.recv_ready()
    payload = packb([cloudpickle.dumps({"x": 1})])
    w.send_frame(make_envelope(old_key, "tasks", old_job, payload, 0, 1))
    assert w.recv_frame() is None
    assert w.wait() == 2
