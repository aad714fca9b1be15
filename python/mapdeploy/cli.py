"""The ``mapdeploy`` command: look at, cancel, resume and delete the jobs of the session from a shell.

``mapdeploy pools [--stop]`` lists (or stops) the warm workers kept for the next job.

Every command reads the same session folder as the Python API (``~/.mapdeploy``,
or ``$MAPDEPLOY_HOME``), so jobs started by any script or notebook are there.

Exit codes, the same for every command (scripts can rely on them):

- 0: done; for ``results``, every task completed
- 1: an error (a job folder cannot be read, a running job cannot be deleted, ...)
- 2: bad usage (unknown command or option)
- 3: no such job or task
- 4: ``results`` of a job that ended without every task completing (failed
  tasks, or the job failed or was canceled); what there is was printed
- 5: not finished yet (``results --no-wait`` or ``--timeout`` on a running
  job, ``output`` of a task that has no result yet)
"""
from __future__ import annotations

import argparse
import datetime as _dt
import fnmatch
import json
import sys
from typing import Any, Sequence

__all__ = ["main", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_NOT_FOUND", "EXIT_INCOMPLETE",
           "EXIT_NOT_FINISHED"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_INCOMPLETE = 4
EXIT_NOT_FINISHED = 5

_FINAL = ("Completed", "Failed", "Canceled")


class _Exit(Exception):
    """Ends the command with a message on stderr and an exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _jsonable(value: Any) -> Any:
    """value if json can write it, else its repr (results can be any picklable object)."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=_jsonable)
    sys.stdout.write("\n")


def _time(value: _dt.datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _load(name: str) -> Any:
    import mapdeploy as gl
    from mapdeploy import JobNotFoundError

    try:
        return gl.deploy.jobs[name]
    except JobNotFoundError:
        if name.lstrip("-").isdigit():  # an index as `mapdeploy jobs` shows it
            try:
                return gl.deploy.jobs[int(name)]
            except JobNotFoundError:
                pass
        raise _Exit(EXIT_NOT_FOUND, f"mapdeploy: there is no job named {name!r} in the session "
                    f"({_home()}); `mapdeploy jobs` lists them") from None


def _home() -> str:
    from mapdeploy import _engine
    return str(_engine.home())


# ------------------------------------------------------------------ commands


def _cmd_jobs(args: argparse.Namespace) -> int:
    import mapdeploy as gl

    from mapdeploy import JobNotFoundError

    table = gl.deploy.jobs.list()
    rows = []
    for record in table:
        try:
            status = gl.deploy.jobs[record["Name"]].get_status()
        except JobNotFoundError:
            continue  # deleted by another process since the listing
        except Exception as error:  # noqa: BLE001 - one damaged folder must not hide the others
            if record["Name"] not in gl.deploy.jobs:
                continue
            status = f"Unreadable ({type(error).__name__})"
        rows.append({"index": record["Index"], "name": record["Name"],
                     "environment": record["Environment"], "created": record["Creation date"],
                     "status": status})
    if args.status:
        rows = [row for row in rows if row["status"] == args.status]
    if args.json:
        _print_json(rows)
        return EXIT_OK
    if not rows:
        print(f"no jobs in the session ({_home()})")
        return EXIT_OK
    from mapdeploy import Table
    Table({"Index": [r["index"] for r in rows], "Name": [r["name"] for r in rows],
           "Status": [r["status"] for r in rows], "Environment": [r["environment"] for r in rows],
           "Creation date": [r["created"] for r in rows]}).print_rows(
               num_rows=len(rows), num_columns=5, max_column_width=60, max_row_width=120)
    return EXIT_OK


def _summary(job: Any) -> dict[str, Any]:
    counts = job.get_task_counts()
    return {"name": job.name, "status": job.get_status(), "error": job.get_error(),
            "environment": repr(job.environment), "start_time": _time(job.get_start_time()),
            "end_time": _time(job.get_end_time()), "tasks": counts,
            "log_folder": job.get_log_file_path()}


def _cmd_show(args: argparse.Namespace) -> int:
    job = _load(args.name)
    metrics = job.get_metrics(wait=False)
    if args.json:
        data = _summary(job)
        data["metrics"] = metrics.to_records()
        _print_json(data)
        return EXIT_OK
    print(job)
    print(f"Log folder         : {job.get_log_file_path()}")
    error = job.get_error()
    if error:
        print(f"Error              : {error}")
    print()
    metrics.print_rows(num_rows=args.rows, num_columns=7)
    failed = metrics[metrics["status"] == "Failed"]
    if len(failed):
        first = failed[0]["task_name"]
        print(f"\n{len(failed)} task(s) failed; see one with `mapdeploy output {job.name} {first}` "
              f"or the traceback with `mapdeploy show {job.name} --json`")
    return EXIT_OK


def _cmd_results(args: argparse.Namespace) -> int:
    job = _load(args.name)
    timeout = 0.0 if args.no_wait else args.timeout
    state = job.wait(timeout=timeout, progress=False)
    if state not in _FINAL:
        if args.json:
            _print_json({"name": job.name, "status": state, "results": None})
        raise _Exit(EXIT_NOT_FINISHED, f"mapdeploy: job {job.name} is still {state}; "
                    "results are printed once it ends (drop --no-wait/--timeout to wait)")
    metrics = job.get_metrics(wait=False)
    statuses = dict(zip(metrics["task_name"], metrics["status"]))
    kind_single = job._kind == "single"
    combined: Any = None
    has_combiner = job._combiner_name is not None
    map_results: list[Any] = []
    if kind_single:
        names = [job._function_name]
        map_results = [job._value(0) if statuses.get(names[0]) == "Completed" else None]
    else:
        names = list(job._task_names)
        map_results = job.get_map_results(wait=False) if state != "Canceled" else [
            job._value(i) if statuses.get(n) == "Completed" else None for i, n in enumerate(names)]
    if has_combiner and state == "Completed":
        combined = job.get_results()
    complete = state == "Completed" and all(statuses.get(n) == "Completed" for n in names)
    if args.json:
        data: dict[str, Any] = {"name": job.name, "status": state, "error": job.get_error(),
                                "complete": complete,
                                "results": [{"task_name": n, "status": statuses.get(n),
                                             "result": _jsonable(v)} for n, v in zip(names, map_results)]}
        if has_combiner:
            data["combined"] = _jsonable(combined)
        _print_json(data)
    else:
        for name, value in zip(names, map_results):
            status = statuses.get(name)
            print(f"{name}\t{value!r}" if status == "Completed" else f"{name}\t{status}")
        if has_combiner and state == "Completed":
            print(f"{job._combiner_name}\t{combined!r}")
    if not complete:
        failed = [n for n in names if statuses.get(n) != "Completed"]
        reason = job.get_error() or f"{len(failed)} of {len(names)} task(s) did not complete"
        raise _Exit(EXIT_INCOMPLETE, f"mapdeploy: job {job.name} is {state}: {reason}")
    return EXIT_OK


def _cmd_output(args: argparse.Namespace) -> int:
    job = _load(args.name)
    try:
        output = job.get_task_output(args.task)
    except KeyError as error:
        raise _Exit(EXIT_NOT_FOUND, f"mapdeploy: {error.args[0]}") from None
    if args.json:
        _print_json({"name": job.name, "task_name": args.task, "output": output})
    elif output is not None:
        sys.stdout.write(output)
    if output is None:
        raise _Exit(EXIT_NOT_FINISHED, f"mapdeploy: task {args.task} of job {job.name} has no "
                    f"result yet (the job is {job.get_status()})")
    return EXIT_OK


def _cmd_cancel(args: argparse.Namespace) -> int:
    job = _load(args.name)
    before = job.get_status()
    job.cancel()
    after = job.get_status()
    canceled = before not in _FINAL
    if args.json:
        _print_json({"name": job.name, "status": after, "canceled": canceled})
    elif canceled:
        print(f"canceled job {job.name} ({after}); the results of finished tasks are kept")
    else:
        print(f"job {job.name} had already ended ({before}); nothing to cancel")
    return EXIT_OK


def _cmd_resume(args: argparse.Namespace) -> int:
    job = _load(args.name)
    before = job.get_status()
    job.resume()
    resumed = before not in ("Completed", "Running", "Pending")
    after = job.get_status()
    counts = job.get_task_counts()
    if args.json:
        _print_json({"name": job.name, "status": after, "resumed": resumed, "tasks": counts})
    elif resumed:
        print(f"resumed job {job.name} ({after}): {counts['unfinished']} of {counts['total']} "
              f"task(s) left to run; `mapdeploy results {job.name}` waits for them")
    else:
        print(f"job {job.name} is {before}; nothing to resume")
    return EXIT_OK


def _cmd_delete(args: argparse.Namespace) -> int:
    import mapdeploy as gl

    from mapdeploy import JobNotFoundError

    names = [name for name in gl.deploy.jobs if fnmatch.fnmatchcase(name, args.pattern)]
    deleted: list[str] = []
    errors: list[str] = []
    for name in names:
        try:
            job = gl.deploy.jobs[name]
            if args.cancel and job.get_status() not in _FINAL:
                job.cancel()
            del gl.deploy.jobs[name]
            deleted.append(name)
        except JobNotFoundError:
            continue  # another process deleted it meanwhile: gone, as asked
        except Exception as error:  # noqa: BLE001 - report every job that stays, then fail
            errors.append(f"{name}: {error}")
    if args.json:
        _print_json({"deleted": deleted, "errors": errors})
    else:
        for name in deleted:
            print(f"deleted {name}")
    if errors:
        raise _Exit(EXIT_ERROR, "mapdeploy: not deleted:\n  " + "\n  ".join(errors)
                    + ("" if args.cancel else "\n(--cancel cancels running jobs before deleting them)"))
    if not names:
        raise _Exit(EXIT_NOT_FOUND, f"mapdeploy: no job matches {args.pattern!r}; "
                    "`mapdeploy jobs` lists them")
    return EXIT_OK


def _cmd_pools(args: argparse.Namespace) -> int:
    from mapdeploy import _pool

    listed = _pool.list_pools()
    stopped = _pool.stop_idle_workers() if args.stop else None
    if args.json:
        data: dict[str, Any] = {"pools": listed}
        if stopped is not None:
            data["stopped"] = stopped
        _print_json(data)
        return EXIT_OK
    if args.stop:
        print(f"stopped {stopped} idle pool(s) of warm workers"
              + (f"; {len(listed) - stopped} running a job left alone"
                 if len(listed) > stopped else ""))
    elif not listed:
        print("no warm workers: the next job starts its own")
    else:
        for pool in listed:
            print(f"pool {pool['name']}  supervisor pid {pool['pid']}")
    return EXIT_OK


# ------------------------------------------------------------------ parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mapdeploy",
        description="Look at, cancel, resume and delete the mapdeploy jobs of this session "
                    "(~/.mapdeploy, or $MAPDEPLOY_HOME).",
        epilog="Exit codes: 0 ok, 1 error, 2 bad usage, 3 no such job or task, "
               "4 results incomplete (failed tasks, failed or canceled job), 5 not finished yet.")
    from mapdeploy import __version__
    parser.add_argument("--version", action="version", version=f"mapdeploy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=description)
        sub.add_argument("--json", action="store_true", help="print JSON, for scripts")
        return sub

    sub = command("jobs", "list the jobs, newest first",
                  "List the session's jobs, newest first, with their status.")
    sub.add_argument("--status", choices=["Pending", "Running", "Completed", "Failed", "Canceled"],
                     help="only jobs in this status")
    sub.set_defaults(run=_cmd_jobs)

    sub = command("show", "a job's summary and metrics",
                  "Print a job's summary (status, times, task counts, log folder) and its "
                  "metrics table. Does not wait.")
    sub.add_argument("name", metavar="NAME", help="the job's name (or its index in `mapdeploy jobs`)")
    sub.add_argument("--rows", type=int, default=20, help="metrics rows to print (default 20)")
    sub.set_defaults(run=_cmd_show)

    sub = command("results", "a job's results (waits for it to end)",
                  "Print each task's result (one line per task: name, tab, repr of the value; "
                  "the status instead for a task that did not complete), then the combiner's. "
                  "Waits for the job to end. Exit code 4 when not every task completed.")
    sub.add_argument("name", metavar="NAME", help="the job's name (or its index in `mapdeploy jobs`)")
    wait = sub.add_mutually_exclusive_group()
    wait.add_argument("--no-wait", action="store_true",
                      help="do not wait: exit 5 if the job has not ended")
    wait.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                      help="wait at most this long, then exit 5 if the job has not ended")
    sub.set_defaults(run=_cmd_results)

    sub = command("output", "what one task printed",
                  "Print what a task wrote to stdout and stderr (at most 64 KiB are kept per "
                  "task; the job's worker logs have everything). Exit code 3 for an unknown task, "
                  "5 when the task has no result yet.")
    sub.add_argument("name", metavar="NAME", help="the job's name (or its index in `mapdeploy jobs`)")
    sub.add_argument("task", metavar="TASK", help="the task's name, e.g. add-0-1 (see `mapdeploy show`)")
    sub.set_defaults(run=_cmd_output)

    sub = command("cancel", "stop a running job",
                  "Cancel a job: its workers are killed and it ends Canceled; the results of "
                  "tasks that finished are kept. A job that has already ended is left alone (exit 0).")
    sub.add_argument("name", metavar="NAME", help="the job's name (or its index in `mapdeploy jobs`)")
    sub.set_defaults(run=_cmd_cancel)

    sub = command("resume", "run the rest of a stopped job",
                  "Resume a job that was canceled, whose supervisor was killed, or that failed "
                  "as a whole (e.g. a full disk): a new supervisor runs only the tasks without a "
                  "final result, then the combiner. Returns once the job runs again. A running "
                  "or completed job is left alone (exit 0).")
    sub.add_argument("name", metavar="NAME", help="the job's name (or its index in `mapdeploy jobs`)")
    sub.set_defaults(run=_cmd_resume)

    sub = command("delete", "delete jobs whose names match a pattern",
                  "Delete the folders of the jobs whose names match PATTERN (shell-style: "
                  "'add-*', or one exact name). Running jobs are refused unless --cancel is given. "
                  "Exit code 3 when nothing matches.")
    sub.add_argument("pattern", metavar="PATTERN", help="a job name or a pattern such as 'add-*'")
    sub.add_argument("--cancel", action="store_true", help="cancel running jobs, then delete them")
    sub.set_defaults(run=_cmd_delete)

    sub = command("pools", "list (or stop) the warm workers kept for the next job",
                  "After a job, its supervisor and workers wait MAPDEPLOY_POOL_LINGER seconds "
                  "(default 60) for the next job from the same Python environment. List those "
                  "pools, or stop the idle ones with --stop (returns once their processes exited).")
    sub.add_argument("--stop", action="store_true", help="stop every idle pool now")
    sub.set_defaults(run=_cmd_pools)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line (``argv`` without the program name); returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except _Exit as stop:
        sys.stdout.flush()
        print(str(stop), file=sys.stderr)
        return stop.code
    except KeyboardInterrupt:
        print("mapdeploy: interrupted; jobs keep running", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mapdeploy results x | head`
        return EXIT_OK
    except Exception as error:  # noqa: BLE001 - a clear one-line message instead of a traceback
        print(f"mapdeploy: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
