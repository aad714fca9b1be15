"""Runs one benchmark case for one system in this (fresh) process; prints JSON on stdout.

Usage: python bench/child.py '<json spec>'   (bench/run.py starts it; not meant by hand)

spec: {"system": name, "case": "throughput"|"latency"|"bandwidth"|"memory"|"failures"|"efficiency",
       "n": tasks, "warm": warm repetitions, "size": bytes (bandwidth)}
"""
from __future__ import annotations

import gc
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import systems  # noqa: E402  (after the path is set)


def params_add(n: int) -> list[dict[str, Any]]:
    return [{"x": i, "y": 1} for i in range(n)]


def timed_map(system: systems.System, kind: str, params: list[dict[str, Any]],
              start: bool) -> tuple[float, list[Any]]:
    t0 = time.perf_counter()
    if start:
        system.start()
    results = system.map(kind, params)
    elapsed = time.perf_counter() - t0
    system.after_run()
    return elapsed, results


def case_throughput(system: systems.System, spec: dict[str, Any]) -> dict[str, Any]:
    """Case 1: N no-op tasks end to end; the first run is cold (includes start)."""
    n = spec["n"]
    params = params_add(n)
    cold, results = timed_map(system, "add", params, start=True)
    if results[-1] != n:
        raise AssertionError(f"wrong result {results[-1]!r}")
    warm = []
    for _ in range(spec["warm"]):
        elapsed, results = timed_map(system, "add", params, start=False)
        warm.append(elapsed)
    return {"cold": [cold], "warm": warm}


def case_latency(system: systems.System, spec: dict[str, Any]) -> dict[str, Any]:
    """Case 2: one-task jobs one after the other, warm; seconds per job."""
    system.start()
    for _ in range(3):
        system.one("add", {"x": 1, "y": 2})
    system.after_run()
    times = []
    for i in range(spec["n"]):
        t0 = time.perf_counter()
        value = system.one("add", {"x": i, "y": 2})
        times.append(time.perf_counter() - t0)
        if value != i + 2:
            raise AssertionError(f"wrong result {value!r}")
        if i % 50 == 49:
            system.after_run()
    system.after_run()
    return {"times": times}


def case_bandwidth(system: systems.System, spec: dict[str, Any]) -> dict[str, Any]:
    """Case 3: one task, a `size`-byte bytes argument echoed back; seconds per run."""
    blob = os.urandom(1 << 20) * (spec["size"] >> 20)
    system.start()
    times = []
    for _ in range(spec["warm"]):
        t0 = time.perf_counter()
        value = system.one("echo", {"data": blob})
        times.append(time.perf_counter() - t0)
        system.after_run()
        if len(value) != len(blob) or value[-64:] != blob[-64:]:
            raise AssertionError("the payload did not come back whole")
        del value
        gc.collect()
    return {"times": times}


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def case_memory(system: systems.System, spec: dict[str, Any]) -> dict[str, Any]:
    """Case 4: the client's peak RSS growth per task over one N-task job (metrics included)."""
    n = spec["n"]
    params = params_add(n)
    system.start()
    system.map("add", params[:100])  # imports and first-use allocations, not per task
    system.after_run()
    gc.collect()
    with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
        refs.write("5")  # resets VmHWM to the current RSS
    before = _status_kib("VmRSS")
    if isinstance(system, systems.MapDeploy):
        results, metrics = system.metrics("add", params)
        if len(metrics) != n:
            raise AssertionError("metrics table is incomplete")
    else:
        results = system.map("add", params)
    peak = _status_kib("VmHWM")
    after = _status_kib("VmRSS")
    if results[-1] != n:
        raise AssertionError("wrong result")
    system.after_run()
    return {"peak_bytes_per_task": (peak - before) * 1024 / n,
            "retained_bytes_per_task": (after - before) * 1024 / n}


def case_failures(system: systems.System, spec: dict[str, Any]) -> dict[str, Any]:
    """Case 5: the same N tasks all succeeding and with 1 % raising, alternated, warm."""
    n = spec["n"]
    params = params_add(n)
    system.start()
    system.map("add", params[:100])
    system.after_run()
    ok, failing = [], []
    for _ in range(spec["warm"]):
        elapsed, results = timed_map(system, "add", params, start=False)
        ok.append(elapsed)
        elapsed, results = timed_map(system, "raise", params, start=False)
        failing.append(elapsed)
        failed = sum(1 for r in results if r is None or isinstance(r, Exception))
        if failed != (n + 99) // 100:
            raise AssertionError(f"{failed} failures instead of {(n + 99) // 100}")
    return {"ok": ok, "failing": failing}


def case_efficiency(system: systems.System, spec: dict[str, Any]) -> dict[str, Any]:
    """Case 6: N tasks of 10 ms, warm; efficiency = N * 10 ms / workers / elapsed."""
    n = spec["n"]
    params = [{"x": i} for i in range(n)]
    system.start()
    system.map("add", params_add(10))
    system.after_run()
    times = []
    for _ in range(spec["warm"]):
        elapsed, results = timed_map(system, "sleep", params, start=False)
        if results[-1] != n - 1:
            raise AssertionError("wrong result")
        times.append(elapsed)
    ideal = n * 0.010 / systems.WORKERS
    return {"times": times, "ideal": ideal}


CASES = {"throughput": case_throughput, "latency": case_latency, "bandwidth": case_bandwidth,
         "memory": case_memory, "failures": case_failures, "efficiency": case_efficiency}


def main() -> None:
    spec = json.loads(sys.argv[1])
    system = systems.FACTORIES[spec["system"]]()
    try:
        out = CASES[spec["case"]](system, spec)
    finally:
        try:
            system.close()
        except Exception:  # noqa: BLE001 - a failed close must not hide the measurement
            pass
    sys.stdout.write("\n" + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
