"""mapdeploy next to its peers, every case for every system, in one run on this machine.

Usage:
    python bench/run.py            # the full run (about 15-30 minutes on 2 cores)
    python bench/run.py --quick    # smaller N and fewer repetitions: under two minutes
    python bench/run.py --smoke    # N=100, mapdeploy and Pool(fork) only (CI checks the harness)

Every measurement runs in a fresh Python process (bench/child.py), so "cold"
really is the first job of a process. Writes bench/results/latest.json,
bench/results/latest.md and bench/results/*.png; with --docs it also puts the
table into docs/performance.md between its markers. Times are min and
median of the repetitions; ratios are peer / mapdeploy of the medians (for
times: above 1 means mapdeploy is faster).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import systems  # noqa: E402

ALL_SYSTEMS = ["mapdeploy", "pool_fork", "pool_spawn", "ppe_submit", "ppe_map", "joblib",
               "dask", "ray"]
# Rough cost per task of each system (measured here, reference/peers.md), used
# only to leave out runs that would take longer than the budget per run.
PER_TASK_SECONDS = {"mapdeploy": 15e-6, "pool_fork": 2e-6, "pool_spawn": 3e-6,
                    "ppe_submit": 300e-6, "ppe_map": 5e-6, "joblib": 10e-6, "dask": 2e-3,
                    "ray": 1e-3}

PLANS: dict[str, dict[str, Any]] = {
    "full": {"throughput_n": [1000, 10000, 100000, 1000000], "cold_procs": 2, "warm": 3,
             "latency_n": 200, "bandwidth_size": 256 << 20, "bandwidth_reps": 3,
             "memory_n": 1000000, "failures_n": 100000, "failures_reps": 3,
             "efficiency_n": 2000, "efficiency_reps": 2, "budget": 30.0,
             "systems": ALL_SYSTEMS},
    "quick": {"throughput_n": [1000, 10000, 100000], "cold_procs": 1, "warm": 2,
              "latency_n": 100, "bandwidth_size": 64 << 20, "bandwidth_reps": 2,
              "memory_n": 100000, "failures_n": 10000, "failures_reps": 1,
              "efficiency_n": 200, "efficiency_reps": 1, "budget": 3.0,
              "systems": ALL_SYSTEMS},
    "smoke": {"throughput_n": [100], "cold_procs": 1, "warm": 1, "latency_n": 5,
              "bandwidth_size": 1 << 20, "bandwidth_reps": 1, "memory_n": 1000,
              "failures_n": 200, "failures_reps": 1, "efficiency_n": 10,
              "efficiency_reps": 1, "budget": 5.0, "systems": ["mapdeploy", "pool_fork"]},
}


def available(system: str) -> str | None:
    """None when the system can run here, else why not."""
    module = systems.MODULES.get(system)
    if module is not None and importlib.util.find_spec(module) is None:
        return f"not installed ({module} does not import)"
    return None


def run_child(spec: dict[str, Any], home: str, timeout: float) -> dict[str, Any]:
    env = dict(os.environ, MAPDEPLOY_HOME=home,
               PYTHONPATH=os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")])))
    try:
        out = subprocess.run([sys.executable, os.path.join(HERE, "child.py"), json.dumps(spec)],
                             capture_output=True, text=True, env=env, timeout=timeout, cwd=HERE)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {out.returncode}: {tail[:200]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def too_slow(system: str, n: int, budget: float) -> str | None:
    estimate = PER_TASK_SECONDS[system] * n
    if estimate > budget:
        return f"not run: ~{estimate:.0f} s per run at ~{PER_TASK_SECONDS[system] * 1e6:.0f} us/task"
    return None


def measure(plan: dict[str, Any], chosen: list[str], home: str, log: Any) -> dict[str, Any]:
    cases: dict[str, dict[str, Any]] = {c: {} for c in
                                        ("throughput", "latency", "bandwidth", "memory",
                                         "failures", "efficiency")}
    timeout = 900.0
    budget = plan["budget"]

    def note(case: str, system: str, key: str | None, value: dict[str, Any]) -> None:
        target = cases[case].setdefault(system, {}) if key is not None else cases[case]
        if key is None:
            target[system] = value
        else:
            target[key] = value
        log(f"  {case:<10} {system:<11} {key or '':>8} "
            f"{json.dumps(value)[:110]}")

    for system in chosen:
        missing = available(system)
        if missing:
            for case in cases:
                cases[case][system] = {"error": missing}
            log(f"  {system}: {missing}")
            continue
        for n in plan["throughput_n"]:
            skip = too_slow(system, n, budget)
            if skip:
                note("throughput", system, str(n), {"error": skip})
                continue
            cold: list[float] = []
            warm: list[float] = []
            error = None
            for _ in range(plan["cold_procs"]):
                out = run_child({"system": system, "case": "throughput", "n": n,
                                 "warm": plan["warm"]}, home, timeout)
                if "error" in out:
                    error = out["error"]
                    break
                cold += out["cold"]
                warm += out["warm"]
            note("throughput", system, str(n),
                 {"error": error} if error else {"cold": cold, "warm": warm})
        note("latency", system, None,
             run_child({"system": system, "case": "latency", "n": plan["latency_n"]}, home,
                       timeout))
        note("bandwidth", system, None,
             run_child({"system": system, "case": "bandwidth", "size": plan["bandwidth_size"],
                        "warm": plan["bandwidth_reps"]}, home, timeout))
        n = plan["memory_n"]
        skip = too_slow(system, n, budget)
        note("memory", system, None, {"error": skip} if skip else
             dict(run_child({"system": system, "case": "memory", "n": n}, home, timeout), n=n))
        n = plan["failures_n"]
        skip = too_slow(system, n, budget)
        note("failures", system, None, {"error": skip} if skip else
             dict(run_child({"system": system, "case": "failures", "n": n,
                             "warm": plan["failures_reps"]}, home, timeout), n=n))
        note("efficiency", system, None,
             run_child({"system": system, "case": "efficiency", "n": plan["efficiency_n"],
                        "warm": plan["efficiency_reps"]}, home, timeout))
    return cases


# ------------------------------------------------------------------ report

def med(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 1 else f"{ms:.2f}"


def fmt_ratio(ratio: float | None) -> str:
    return "" if ratio is None else f" ({ratio:.2f}×)"


def summary(cases: dict[str, Any], chosen: list[str]) -> dict[str, Any]:
    """Medians, percentiles and ratios to mapdeploy, per case and system."""
    out: dict[str, Any] = {}
    tp: dict[str, Any] = {}
    for system, by_n in cases["throughput"].items():
        for n, value in by_n.items():
            for phase in ("cold", "warm"):
                row = tp.setdefault(f"{n}/{phase}", {})
                if "error" in value:
                    row[system] = {"error": value["error"]}
                elif value[phase]:
                    row[system] = {"min": min(value[phase]), "median": med(value[phase])}
    for row in tp.values():
        base = row.get("mapdeploy", {}).get("median")
        for value in row.values():
            if base and "median" in value:
                value["ratio"] = value["median"] / base
    out["throughput"] = tp

    def per_system(case: str, compute: Any, lower_is_better: bool) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for system in chosen:
            raw = cases[case].get(system)
            if raw is None:
                continue
            result[system] = {"error": raw["error"]} if "error" in raw else compute(raw)
        base = result.get("mapdeploy", {}).get("value")
        for value in result.values():
            if base and "value" in value and value["value"]:
                value["ratio"] = (value["value"] / base if lower_is_better
                                  else base / value["value"])
        return result

    out["latency"] = per_system("latency", lambda r: {
        "value": percentile(r["times"], 0.5), "p99": percentile(r["times"], 0.99)}, True)
    out["bandwidth"] = per_system("bandwidth", lambda r: {
        "value": 2 * cases_size(cases) / min(r["times"]) / 1e9,
        "median_gbps": 2 * cases_size(cases) / med(r["times"]) / 1e9}, False)
    out["memory"] = per_system("memory", lambda r: {
        "value": r["peak_bytes_per_task"], "retained": r["retained_bytes_per_task"],
        "n": r["n"]}, True)
    out["failures"] = per_system("failures", lambda r: {
        "value": med(r["failing"]) / med(r["ok"]), "failing": med(r["failing"]),
        "ok": med(r["ok"]), "n": r["n"]}, True)
    out["efficiency"] = per_system("efficiency", lambda r: {
        "value": r["ideal"] / min(r["times"]), "median": r["ideal"] / med(r["times"])}, False)
    return out


_SIZE: dict[str, int] = {}


def cases_size(cases: dict[str, Any]) -> int:
    return _SIZE["bandwidth"]


def goals(s: dict[str, Any], plan_name: str) -> list[tuple[str, str, bool | None]]:
    """(goal, measured, met) for each goal of the issue, from the summary."""
    rows: list[tuple[str, str, bool | None]] = []
    tp = s["throughput"]
    for n in ("100000", "1000000"):
        row = tp.get(f"{n}/warm")
        if not row or "median" not in row.get("mapdeploy", {}):
            continue
        fork = row.get("pool_fork", {}).get("ratio")
        others = {k: v["ratio"] for k, v in row.items()
                  if k not in ("mapdeploy", "pool_fork") and "ratio" in v}
        worst = min(others.items(), key=lambda kv: kv[1]) if others else None
        rows.append((f"case 1, N={int(n):,} warm: no slower than Pool(fork).map",
                     f"Pool(fork)/mapdeploy = {fork:.2f}" if fork else "n/a",
                     None if fork is None else fork >= 1.0))
        if worst:
            rows.append((f"case 1, N={int(n):,} warm: faster than every other peer",
                         f"closest: {systems.LABELS[worst[0]]} {worst[1]:.2f}", worst[1] > 1.0))
        cold = tp.get(f"{n}/cold", {}).get("pool_spawn", {}).get("ratio")
        if cold:
            rows.append((f"case 1, N={int(n):,} cold: faster than Pool(spawn)",
                         f"Pool(spawn)/mapdeploy = {cold:.2f}", cold > 1.0))
    lat = s["latency"].get("mapdeploy", {})
    if "value" in lat:
        rows.append(("case 2: one-task job p50 under 1 ms",
                     f"p50 {fmt_ms(lat['value'])} ms, p99 {fmt_ms(lat['p99'])} ms",
                     lat["value"] < 0.001))
    bw = s["bandwidth"].get("mapdeploy", {})
    if "value" in bw:
        rows.append(("case 3: at least 1.5 GB/s", f"{bw['value']:.2f} GB/s", bw["value"] >= 1.5))
    mem = s["memory"].get("mapdeploy", {})
    if "value" in mem:
        rows.append((f"case 4: at most 200 bytes per task (N={mem['n']:,})",
                     f"{mem['value']:.0f} B/task peak, {mem['retained']:.0f} retained",
                     mem["value"] <= 200))
    eff = s["efficiency"].get("mapdeploy", {})
    if "value" in eff:
        rows.append(("case 6: at least 95 % efficiency", f"{eff['value'] * 100:.1f} %",
                     eff["value"] >= 0.95))
    if plan_name != "full":
        rows = [(g, m + f" ({plan_name} run)", met) for g, m, met in rows]
    return rows


def markdown(s: dict[str, Any], chosen: list[str], meta: dict[str, Any],
             plan_name: str) -> str:
    cols = [c for c in chosen]
    head = "| case | " + " | ".join(systems.LABELS[c] for c in cols) + " |\n"
    sep = "|---|" + "---|" * len(cols) + "\n"
    lines = [f"Run: {meta['date']}, {meta['machine']}, plan `{plan_name}`, "
             f"{meta['workers']} workers per system. Cells: median (ratio = peer / mapdeploy; "
             "for times above 1 means mapdeploy is faster, for GB/s and efficiency above 1 "
             "means mapdeploy is better).\n"]

    def cell(value: dict[str, Any] | None, text: Any) -> str:
        if value is None:
            return "–"
        if "error" in value:
            return value["error"].replace("|", "/")
        return text(value)

    lines.append("### Case 1: N no-op `add(x, y)` tasks, end to end (ms; min / median)\n")
    lines.append(head + sep)
    for key in s["throughput"]:
        n, phase = key.split("/")
        row = s["throughput"][key]
        lines.append(f"| {int(n):,} {phase} | " + " | ".join(
            cell(row.get(c), lambda v: f"{fmt_ms(v['min'])} / {fmt_ms(v['median'])}"
                 + fmt_ratio(v.get("ratio"))) for c in cols) + " |\n")
    lines.append("\n### Cases 2–6\n")
    lines.append(head + sep)
    lines.append("| 2. one-task job, warm: p50 / p99 ms | " + " | ".join(
        cell(s["latency"].get(c), lambda v: f"{fmt_ms(v['value'])} / {fmt_ms(v['p99'])}"
             + fmt_ratio(v.get("ratio"))) for c in cols) + " |\n")
    lines.append(f"| 3. {_SIZE['bandwidth'] >> 20} MiB in and out: GB/s (best) | " + " | ".join(
        cell(s["bandwidth"].get(c), lambda v: f"{v['value']:.2f}" + fmt_ratio(v.get("ratio")))
        for c in cols) + " |\n")
    lines.append("| 4. client peak RSS growth, bytes/task | " + " | ".join(
        cell(s["memory"].get(c), lambda v: f"{v['value']:.0f} (N={v['n']:,})"
             + fmt_ratio(v.get("ratio"))) for c in cols) + " |\n")
    lines.append("| 5. 1 % raise: time / all-success time | " + " | ".join(
        cell(s["failures"].get(c), lambda v: f"{v['value']:.2f} ({fmt_ms(v['ok'])} ms ok, "
             f"N={v['n']:,})") for c in cols) + " |\n")
    lines.append("| 6. 10 ms tasks: efficiency (best) | " + " | ".join(
        cell(s["efficiency"].get(c), lambda v: f"{v['value'] * 100:.1f} %"
             + fmt_ratio(v.get("ratio"))) for c in cols) + " |\n")
    lines.append("\n### Goals\n\n| goal | measured | met |\n|---|---|---|\n")
    for goal, measured, met in goals(s, plan_name):
        lines.append(f"| {goal} | {measured} | {'yes' if met else 'no' if met is not None else '?'} |\n")
    return "".join(lines)


def plots(s: dict[str, Any], chosen: list[str], out_dir: str, prefix: str) -> list[str]:
    """throughput.png (µs per task against N, cold and warm) and cases.png (cases 2, 3, 4, 6)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, phase in zip(axes, ("cold", "warm")):
        for system in chosen:
            points = [(int(k.split("/")[0]), row[system]["median"])
                      for k, row in s["throughput"].items()
                      if k.endswith(phase) and "median" in row.get(system, {})]
            if points:
                ax.plot([p[0] for p in points], [p[1] / p[0] * 1e6 for p in points],
                        marker="o", label=systems.LABELS[system],
                        linewidth=3 if system == "mapdeploy" else 1.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tasks (N)")
        ax.set_title(f"Case 1, {phase}: end to end, µs per task (median)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("µs per task (lower is better)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out_dir, f"{prefix}throughput.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    panels = [("latency", "Case 2: one-task job p50, ms (lower is better)", 1000.0),
              ("bandwidth", "Case 3: GB/s (higher is better)", 1.0),
              ("memory", "Case 4: client bytes per task (lower is better)", 1.0),
              ("efficiency", "Case 6: efficiency, % (higher is better)", 100.0)]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for ax, (case, title, scale) in zip(axes.flat, panels):
        names = [c for c in chosen if "value" in s[case].get(c, {})]
        values = [s[case][c]["value"] * scale for c in names]
        colors = ["tab:red" if c == "mapdeploy" else "tab:blue" for c in names]
        ax.barh([systems.LABELS[c] for c in names], values, color=colors)
        ax.set_title(title, fontsize=10)
        if case == "latency" and values:
            ax.set_xscale("log")
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    path = os.path.join(out_dir, f"{prefix}cases.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written


DOC_BEGIN = "<!-- bench:begin (written by bench/run.py --docs) -->"
DOC_END = "<!-- bench:end -->"


def update_docs(table: str) -> None:
    path = os.path.join(ROOT, "docs", "performance.md")
    with open(path, encoding="utf-8") as doc:
        text = doc.read()
    start = text.index(DOC_BEGIN) + len(DOC_BEGIN)
    end = text.index(DOC_END)
    with open(path, "w", encoding="utf-8") as doc:
        doc.write(text[:start] + "\n" + table + "\n" + text[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="under two minutes")
    mode.add_argument("--smoke", action="store_true", help="tiny: checks the harness works")
    parser.add_argument("--systems", help="comma-separated subset of " + ",".join(ALL_SYSTEMS))
    parser.add_argument("--out", default=os.path.join(HERE, "results"), help="output folder")
    parser.add_argument("--docs", action="store_true",
                        help="also write the table into docs/performance.md")
    args = parser.parse_args()
    plan_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    plan = PLANS[plan_name]
    chosen = args.systems.split(",") if args.systems else list(plan["systems"])
    unknown = set(chosen) - set(ALL_SYSTEMS)
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    _SIZE["bandwidth"] = plan["bandwidth_size"]
    os.makedirs(args.out, exist_ok=True)
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {message}", flush=True)

    with tempfile.TemporaryDirectory(prefix="mapdeploy-bench-") as home:
        cases = measure(plan, chosen, home, log)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "plan": plan_name,
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
                       f"Python {platform.python_version()}",
            "workers": systems.WORKERS, "seconds": round(time.monotonic() - started, 1),
            "plan_parameters": plan}
    s = summary(cases, chosen)
    table = markdown(s, chosen, meta, plan_name)
    name = "latest" if plan_name == "full" else plan_name
    with open(os.path.join(args.out, f"{name}.json"), "w", encoding="utf-8") as out:
        json.dump({"meta": meta, "raw": cases, "summary": s}, out, indent=1)
    with open(os.path.join(args.out, f"{name}.md"), "w", encoding="utf-8") as out:
        out.write(table)
    if plan_name != "smoke":
        plots(s, chosen, args.out, "" if plan_name == "full" else f"{plan_name}-")
    if args.docs:
        update_docs(table)
    print(table)
    log(f"done; wrote {args.out}/{name}.json and {name}.md")


if __name__ == "__main__":
    main()
