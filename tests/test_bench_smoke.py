"""The benchmark harness runs: bench/run.py --smoke (N=100, mapdeploy and Pool(fork) only).

No time is asserted here (the machine is shared and noisy); only that every
case produces a measurement and the report is written.
"""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_bench_smoke_measures_every_case(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--smoke",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((tmp_path / "smoke.json").read_text())
    raw = report["raw"]
    for system in ("mapdeploy", "pool_fork"):
        assert raw["throughput"][system]["100"]["warm"], raw["throughput"][system]
        for case in ("latency", "bandwidth", "memory", "failures", "efficiency"):
            assert "error" not in raw[case][system], (case, system, raw[case][system])
    assert "| goal |" in (tmp_path / "smoke.md").read_text()
