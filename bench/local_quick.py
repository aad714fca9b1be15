"""End-to-end time of N add(x, y) tasks: mapdeploy (cold and warm) next to multiprocessing.Pool.

Usage: python bench/local_quick.py [N ...]     (default: 20000)
Each mapdeploy case runs in a fresh process: "cold" is its first job,
"warm" the second job in that process. Pool cases include starting the pool.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))

MAPDEPLOY = textwrap.dedent("""
    import sys, time, json
    sys.path.insert(0, {here!r})
    from add_task import add
    import mapdeploy as gl
    n = {n}
    times = []
    for _ in range(2):
        params = [{{'x': i, 'y': 1}} for i in range(n)]
        t0 = time.perf_counter()
        job = gl.deploy.map_job.create(add, params)
        results = job.get_results()
        times.append(time.perf_counter() - t0)
        assert results[-1] == n
    print(json.dumps(times))
""")

POOL = textwrap.dedent("""
    import sys, time, json, multiprocessing as mp
    sys.path.insert(0, {here!r})
    from add_task import call_with_kwargs
    n = {n}
    params = [{{'x': i, 'y': 1}} for i in range(n)]
    t0 = time.perf_counter()
    with mp.get_context({method!r}).Pool(os_cpu := __import__('os').cpu_count()) as pool:
        results = pool.map(call_with_kwargs, params)
    print(json.dumps([time.perf_counter() - t0]))
    assert results[-1] == n
""")


def run(code: str, home: str) -> list[float]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, MAPDEPLOY_HOME=home))
    return json.loads(out.stdout)


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [20000]
    with tempfile.TemporaryDirectory() as home:
        for n in sizes:
            best: dict[str, float] = {}
            for _ in range(3):
                cold, warm = run(MAPDEPLOY.format(here=HERE, n=n), home)
                for key, value in (("mapdeploy cold", cold), ("mapdeploy warm", warm)):
                    best[key] = min(best.get(key, value), value)
                for method in ("fork", "spawn"):
                    (t,) = run(POOL.format(here=HERE, n=n, method=method), home)
                    key = f"Pool({method}).map"
                    best[key] = min(best.get(key, t), t)
            print(f"N = {n} (best of 3)")
            for key, value in best.items():
                print(f"  {key:<20} {value * 1000:8.1f} ms  {value / n * 1e6:7.2f} us/task")


if __name__ == "__main__":
    main()
