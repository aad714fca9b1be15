"""Job: a handle on one job folder, its status, results and metrics."""
from __future__ import annotations

import datetime as _dt
import html as _html
import logging
import os
import time
from collections.abc import Sequence
from typing import Any, Callable

from . import _engine, _environment, _progress
from ._mapdeploy import JobStore, ResultTable
from ._table import Table

__all__ = ["Job"]

logger = logging.getLogger("mapdeploy")

PENDING, RUNNING, COMPLETED, FAILED, CANCELED, UNKNOWN = (
    "Pending", "Running", "Completed", "Failed", "Canceled", "Unknown")
FINAL_STATES = frozenset({COMPLETED, FAILED, CANCELED})
METRIC_COLUMNS = ("task_name", "status", "start_time", "run_time", "exception",
                  "exception_message", "exception_traceback")
# Added by get_metrics(detailed=True), after the contract's seven.
DETAILED_COLUMNS = ("attempt", "attempts", "worker_pid", "peak_memory", "output_log")

# Fields of a result row as ResultTable.row returns them.
(_INDEX, _STATUS, _ATTEMPT, _START, _RUN_TIME, _PID, _EXC_TYPE, _EXC_MESSAGE, _EXC_TB, _VALUE,
 _MAX_RSS, _OUTPUT) = range(12)
# How often a waiting client checks that the supervisor still lives: a dead
# process changes no file, so no change notification would wake the wait.
_LIVENESS_INTERVAL = 1.0
# A job folder is written (Pending) a moment before its supervisor is started;
# until then no supervisor holds its lock, and its status reads Failed.  For
# this long after its creation such a job is not deleted or resumed by
# another process, which would take it from under the process starting it.
_START_GRACE_SECONDS = 30.0


def _local_time(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


class Job:
    """A job created by ``map_job.create`` or ``job.create``, or loaded from the session.

    Every method reads the job folder, so a Job loaded in another Python
    process sees the same status and results as the one that created it.
    """

    def __init__(self, store: JobStore) -> None:
        self._store = store
        definition = store.definition()
        self._definition = definition
        self.name: str = definition["name"]
        self._kind: str = definition["job_kind"]
        self._function_name: str = definition["function_name"]
        self._combiner_name: str | None = definition.get("combiner_name")
        self._task_count: int = definition["task_count"]
        self.environment = _environment.from_record(definition["environment"])
        # Rows 0..n-1: the map tasks; row n: the combiner. Held column by
        # column in C: no Python object per task until one is asked for.
        self._results = ResultTable(self._task_count)

    # ------------------------------------------------------------ internals

    @property
    def _task_names(self) -> list[str]:
        if self._kind == "single":
            return [self._function_name]
        prefix = f"{self._function_name}-0-"
        return [f"{prefix}{i}" for i in range(self._task_count)]

    def _refresh(self) -> None:
        """Takes in results appended since the last look; the first Completed result of a task wins."""
        self._store.read_results_into(self._results)

    def _record(self, index: int) -> tuple | None:
        """The result row shown for a task (``task_count``: the combiner), or None."""
        return self._results.row(index)

    def _value(self, index: int) -> Any:
        data = self._results.value(index)
        return None if data is None else self._store.loads(data)

    def _ended_count(self) -> int:
        """Map tasks with a final result (Completed or Failed)."""
        completed, failed = self._results.counts()
        return completed + failed

    def _status_record(self) -> tuple[str, str | None, dict[str, Any]]:
        """(state, error, raw status), with a dead supervisor reported as Failed."""
        status = self._store.status()
        state = status["state"]
        if state == COMPLETED:
            return self._completed_record(status)
        if state in FINAL_STATES or self._store.supervisor_alive():
            return state, status["error"], status
        status = self._store.status()  # it may have ended between the two reads
        state = status["state"]
        if state in FINAL_STATES:
            return state, status["error"], status
        self._refresh()
        done = self._ended_count()
        error = (f"the supervisor process of job {self.name} (pid {status['supervisor_pid']}) "
                 f"stopped before the job ended; {done} of {self._task_count} tasks have results, "
                 f"which are kept. Run the other {self._task_count - done} with job.resume() "
                 f"(or mapdeploy.deploy.jobs[{self.name!r}].resume()). "
                 f"Its log is {self.get_log_file_path()}/supervisor.log")
        return FAILED, error, status

    def _completed_record(self, status: dict[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
        """A Completed status, unless results it vouches for are missing.

        The supervisor syncs a job's files to disk shortly after it writes the final status
        (docs/architecture.md, "Durability"); a machine that lost power in between can leave
        a Completed status with the last results gone. That job is reported Failed, and
        resume() runs the tasks again.
        """
        if self._ended_count() < self._task_count:
            self._refresh()
        done = self._ended_count()
        if done >= self._task_count:
            return COMPLETED, status["error"], status
        error = (f"job {self.name} was recorded as Completed, but only {done} of "
                 f"{self._task_count} tasks have results: the machine stopped before the last "
                 f"results reached the disk. Run the other {self._task_count - done} with "
                 f"job.resume() (or mapdeploy.deploy.jobs[{self.name!r}].resume())")
        return FAILED, error, status

    def _being_started(self) -> bool:
        """True while the job was never started and may still be being started by its creator."""
        status = self._store.status()
        created = self._definition.get("created") or 0.0
        # from the status alone: with the lock too, a supervisor taking it
        # between two looks could make a job being started look dead
        return (status["state"] == PENDING and not status["supervisor_pid"]
                and abs(time.time() - created) < _START_GRACE_SECONDS)

    def _wait_supervisor_exit(self, timeout: float) -> None:
        """Waits (at most timeout seconds) for a supervisor that has written a final status to exit."""
        deadline = time.monotonic() + timeout
        while self._store.supervisor_alive() and time.monotonic() < deadline:
            time.sleep(0.005)

    def _wait_final(self, timeout: float | None = None,
                    on_change: Callable[[], None] | None = None) -> str:
        """Waits until the job ends or timeout passes; calls on_change whenever the folder changed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._store.wait(0)  # start watching before the first look, so no change is missed
        # without on_change only the status matters: appended results would wake
        # this process for nothing, hundreds of times in a large job
        results_too = on_change is not None
        while True:
            if on_change is not None:
                on_change()
            state = self._status_record()[0]
            if state in FINAL_STATES:
                return state
            remaining = _LIVENESS_INTERVAL
            if deadline is not None:
                remaining = min(remaining, deadline - time.monotonic())
                if remaining <= 0:
                    return state
            self._store.wait(remaining, results_too)

    def _wait_for_results(self) -> str:
        try:
            return self._wait_progress(None, None)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(
                f"stopped waiting for job {self.name!r}; the job is still running. "
                f"Cancel it with job.cancel() (or mapdeploy.deploy.jobs[{self.name!r}].cancel())"
            ) from None

    # ------------------------------------------------------------ the contract

    def get_status(self) -> str:
        """'Pending', 'Running', 'Completed', 'Failed' or 'Canceled'."""
        return self._status_record()[0]

    def get_results(self) -> Any:
        """Waits for the job to end and returns its results.

        A map job returns the list of results in parameter order, or the
        combiner's value when it has a combiner; a single job returns its
        function's value. Raises ``RuntimeError`` when the job was canceled,
        when its combiner or its single task failed, or when any map task
        failed (``get_map_results()`` then has the partial results). Ctrl-C
        stops the waiting, not the job.
        """
        state = self._wait_for_results()
        self._refresh()
        if state == CANCELED:
            raise RuntimeError(f"Job {self.name!r} was cancelled by the user. Results of the tasks "
                               "that completed are available with get_map_results().")
        if state == FAILED:
            error = self.get_error()
            if self._kind == "map" and "get_map_results()" not in (error or ""):
                raise RuntimeError(f"Job {self.name!r} failed: {error}. The results of the map "
                                   "tasks are available with get_map_results().")
            if self._kind == "map":
                raise RuntimeError(f"Job {self.name!r} failed: {error}")
            raise RuntimeError(f"Job {self.name!r} failed: {error}. See get_metrics() for the traceback.")
        if self._kind == "single":
            return self._value(0)
        if self._combiner_name is not None:
            return self._value(self._task_count)
        completed, _ = self._results.counts()
        if completed < self._task_count:
            first = self._results.unfinished(4)
            names = self._task_names
            shown = ", ".join(names[i] for i in first[:3]) + (", ..." if len(first) > 3 else "")
            raise RuntimeError(
                f"{self._task_count - completed} of {self._task_count} tasks of job {self.name!r} "
                f"failed ({shown}). "
                "get_map_results() returns the results with None for the failed tasks; "
                "get_metrics() shows each exception and traceback.")
        return self._all_values()

    def _all_values(self) -> list[Any]:
        """Every map task's value, None for a task not Completed (one C loop over the values)."""
        # the store's C loads rather than a Python wrapper: no Python call
        # per task; read_results_into authenticated every value, and loads
        # checks the blobs a value names.
        return self._results.values(self._store.loads)

    def get_map_results(self, wait: bool = True) -> list[Any] | None:
        """The map results in parameter order, None for a failed task.

        Waits for the job to end, as the original document's examples rely on
        (Ctrl-C stops the waiting, not the job). With ``wait=False`` it returns
        at once: partial while the job runs (None for unfinished tasks), None
        while it is Pending. Raises ``TypeError`` for a single job and
        ``RuntimeError`` for a canceled one.
        """
        if self._kind != "map":
            raise TypeError("get_map_results() is for map jobs (map_job.create); "
                            "use get_results() for a job made with job.create")
        state = self._wait_for_results() if wait else self.get_status()
        if state == CANCELED:
            raise RuntimeError(f"Job {self.name!r} was cancelled by the user; "
                               "get_metrics() shows which tasks had completed.")
        if state == PENDING:
            return None
        self._refresh()
        return self._all_values()

    def get_metrics(self, wait: bool = True, detailed: bool = False) -> Table:
        """One row per task (map tasks, then the combiner) with the contract's seven columns.

        Columns: task_name, status, start_time (local time), run_time (seconds,
        None for a failed task), exception, exception_message,
        exception_traceback. Waits for the job to end; with ``wait=False`` it
        returns the live view at once, unfinished tasks shown as Pending.

        With ``detailed=True`` five columns follow: attempt (of the result
        shown, 0 for the first run), attempts (how many were recorded),
        worker_pid, peak_memory (the worker's peak resident memory in bytes
        after the task; None when unknown) and output_log (the worker log
        that holds what the task printed).

        The table is a snapshot of the results read when it was made: it does
        not change as the job goes on (call ``get_metrics`` again for newer
        results) and stays usable after the job is deleted. Its cells are made
        when they are read, so holding the table of a large job costs a few
        bytes a task, not a Python object per cell.
        """
        state = self._wait_for_results() if wait else self.get_status()
        self._refresh()
        unfinished = CANCELED if state == CANCELED else (UNKNOWN if state == FAILED else PENDING)
        combiner = self._combiner_name is not None
        # Lazy columns over the results read so far: a cell becomes a Python
        # object only when it is read, so the table costs no memory per task
        # (it keeps the results' C columns alive, not the Job).
        cells = self._results.metrics(unfinished, detailed, combiner)
        names: Sequence[str]
        if self._kind == "single":
            single = [self._function_name]
            if self._combiner_name is not None:
                single.append(self._combiner_name)
            names = single
        else:
            names = self._results.task_names(f"{self._function_name}-0-", self._combiner_name)
        columns: dict[str, Sequence[Any]] = {"task_name": names}
        columns.update((name, cells[name]) for name in METRIC_COLUMNS[1:])
        if detailed:
            slots = self._worker_slots()
            logs = self.get_log_file_path()
            columns.update((name, cells[name]) for name in DETAILED_COLUMNS[:-1])
            # one path string per worker, shared by its tasks' rows
            paths = {pid: f"{logs}/worker-{slot}.log" for pid, slot in slots.items()}
            columns["output_log"] = [paths.get(pid) for pid in cells["worker_pid"]]
        return Table._from_parts(list(columns), columns, len(names))

    def _worker_slots(self) -> dict[int, int]:
        """{worker pid: slot} from logs/workers (a later line wins: pids can be reused)."""
        slots: dict[int, int] = {}
        try:
            with open(f"{self.get_log_file_path()}/workers") as handle:
                for line in handle:
                    parts = line.split()
                    if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
                        slots[int(parts[0])] = int(parts[1])
        except FileNotFoundError:
            pass
        return slots

    def resume(self) -> None:
        """Runs the tasks that have no result yet and completes the job (an addition to GraphLab's API).

        For a job whose supervisor process was killed (its status says so),
        that was canceled, or that failed as a whole (e.g. the disk was
        full): a new supervisor takes the job folder over and runs only the
        tasks without a final result (tasks that failed with no retry left
        stay failed), then the combiner. Returns once the job runs again, like
        ``LocalAsync``; ``get_results()`` waits for it. A Completed or still
        running job is left alone.
        """
        state = self.get_status()
        if state in (RUNNING, PENDING) or self._being_started():
            logger.info("job %s is still running or being started; nothing to resume", self.name)
            return
        # a supervisor that wrote Canceled or Failed holds its lock until it
        # exits, a few milliseconds later; a new one started before that
        # would find the lock taken
        self._wait_supervisor_exit(5.0)
        if state == COMPLETED:
            logger.info("job %s has completed; nothing to resume", self.name)
            return
        try:
            os.unlink(f"{self._store.path}/cancel")
        except FileNotFoundError:
            pass
        self._store.launch(_engine.executable(_engine.SUPERVISOR),
                           _engine.executable(_engine.WORKER))

    def get_error(self) -> str | None:
        """Why the job as a whole failed, or None."""
        return self._status_record()[1]

    def cancel(self) -> None:
        """Stops the job: its workers are killed, finished results stay. A finished job is left alone."""
        state = self.get_status()
        if state in FINAL_STATES:
            logger.info("job %s has already ended (%s); nothing to cancel", self.name, state)
            return
        logger.info("cancelling job %s (%s)", self.name, state)
        self._store.request_cancel()
        deadline = time.monotonic() + 5.0
        self._store.wait(0)
        while time.monotonic() < deadline:
            if self._store.status()["state"] in FINAL_STATES or not self._store.supervisor_alive():
                break
            self._store.wait(0.05)
        if self._store.status()["state"] not in FINAL_STATES:
            self._store.write_status(CANCELED)

    def get_start_time(self) -> _dt.datetime | None:
        """When the job started running, or None."""
        start = self._store.status()["start_time"]
        return None if start is None else _dt.datetime.fromtimestamp(start)

    def get_end_time(self) -> _dt.datetime | None:
        """When the job ended, or None while it runs."""
        end = self._store.status()["end_time"]
        return None if end is None else _dt.datetime.fromtimestamp(end)

    def get_log_file_path(self) -> str:
        """The folder holding the job's logs: supervisor.log and worker-<n>.log (what tasks printed)."""
        return f"{self._store.path}/logs"

    def get_code(self) -> str | None:
        """The source of the job's function (and combiner), or None when it was not available."""
        code = self._definition.get("code")
        combiner_code = self._definition.get("combiner_code")
        if code and combiner_code:
            return f"{code}\n{combiner_code}"
        return code

    def get_parameters(self) -> dict[str, dict[str, Any]]:
        """{task name: the keyword arguments of that task}."""
        loads = self._store.loads
        return {name: loads(data) for name, data in zip(self._task_names, self._store.kwargs())}

    def get_num_tasks(self) -> int:
        """The number of map tasks (1 for a single job)."""
        return self._task_count

    # ------------------------------------------------------------ waiting and task output

    def _wait_progress(self, timeout: float | None, progress: bool | None) -> str:
        """_wait_final, with a progress bar where one is wanted and the job still runs."""
        kind = _progress.choose(progress)
        if kind is None or self.get_status() in FINAL_STATES:
            return self._wait_final(timeout)
        bar = _progress.Progress(kind, self.name, self._task_count)
        last_count = [0.0]

        def show(final: bool = False) -> None:
            # Counting walks every task: ten times a second is plenty for a bar.
            if not final and time.monotonic() - last_count[0] < 0.1:
                return
            last_count[0] = time.monotonic()
            counts = self.get_task_counts()
            ended = counts["completed"] + counts["failed"]
            combining = not final and self._combiner_name is not None and ended == self._task_count
            bar.update(ended, counts["failed"], "combining" if combining else None)

        state = UNKNOWN
        try:
            state = self._wait_final(timeout, on_change=show)
            show(final=True)
            return state
        finally:
            bar.close(state)

    def wait(self, timeout: float | None = None, progress: bool | None = None) -> str:
        """Waits until the job ends, or until ``timeout`` seconds have passed; returns its status.

        Parameters
        ----------
        timeout:
            Seconds to wait at most; ``None`` waits for as long as the job runs.
        progress:
            ``None`` (default) shows a progress bar (done/failed/total, rate,
            ETA) when there is someone to see it: tqdm's widget in Jupyter,
            a text bar when stderr is a terminal, nothing when output goes to
            a file or a pipe. ``True`` always shows one, ``False`` never.

        Returns
        -------
        str
            The job's status when the wait ended: a final one (``'Completed'``,
            ``'Failed'``, ``'Canceled'``), or ``'Pending'``/``'Running'`` when
            the timeout passed first. Ctrl-C stops the waiting, not the job.
        """
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be None or at least 0 seconds, not {timeout!r}")
        try:
            return self._wait_progress(timeout, progress)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(
                f"stopped waiting for job {self.name!r}; the job is still running. "
                f"Cancel it with job.cancel() or `mapdeploy cancel {self.name}`") from None

    def get_task_counts(self) -> dict[str, int]:
        """How many map tasks there are and how they stand, from the results so far.

        Returns ``{'total': n, 'completed': c, 'failed': f, 'unfinished': n - c - f}``
        (the combiner is not counted). Does not wait.
        """
        self._refresh()
        completed, failed = self._results.counts()
        return {"total": self._task_count, "completed": completed, "failed": failed,
                "unfinished": self._task_count - completed - failed}

    def _task_index(self, task_name: str) -> int:
        names = self._task_names
        if self._combiner_name is not None and task_name == self._combiner_name:
            return self._task_count
        if self._kind == "map" and task_name.startswith(f"{self._function_name}-0-"):
            suffix = task_name[len(self._function_name) + 3:]
            if suffix.isdigit() and int(suffix) < self._task_count and names[int(suffix)] == task_name:
                return int(suffix)
        elif task_name in names:
            return names.index(task_name)
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise KeyError(f"job {self.name!r} has no task {task_name!r}; its tasks are named "
                       f"{shown}" + (f" and the combiner {self._combiner_name!r}"
                                     if self._combiner_name else "")
                       + " (see get_metrics()['task_name'])")

    def get_task_output(self, task_name: str) -> str | None:
        """What a task printed to stdout and stderr, interleaved in the order printed.

        At most 64 KiB are kept per task; longer output ends with a note, and
        the whole of it is in the job's worker logs (``get_log_file_path()``).
        Output written by C code or child processes straight to the file
        descriptors is only in those logs. Returns ``''`` when the task
        printed nothing and ``None`` while it has no result yet. Does not wait.

        Parameters
        ----------
        task_name:
            A task's name as in ``get_metrics()``: ``'add-0-1'``, the
            combiner's name, or the function's name for a single job.

        Raises
        ------
        KeyError
            The job has no task of that name.
        """
        index = self._task_index(task_name)
        self._refresh()
        record = self._record(index)
        if record is None:
            return None
        return record[_OUTPUT] or ""

    # ------------------------------------------------------------ display

    def _repr_html_(self) -> str:
        """Jupyter display: status, task counts, timings and the first metrics rows."""
        state, error, status = self._status_record()
        counts = self.get_task_counts()
        start, end = status["start_time"], status["end_time"]
        duration = None
        if start is not None:
            duration = (end if end is not None else time.time()) - start
        colour = {COMPLETED: "#2e7d32", FAILED: "#c62828", CANCELED: "#6d4c41"}.get(state, "#1565c0")
        esc = _html.escape
        rows = [
            ("Job", f"<b>{esc(self.name)}</b>"),
            ("Status", f'<span style="color:{colour};font-weight:bold">{esc(state)}</span>'),
            ("Tasks", f"{counts['total']} total, {counts['completed']} completed, "
                      + (f'<span style="color:#c62828;font-weight:bold">{counts["failed"]} failed</span>'
                         if counts["failed"] else "0 failed")
                      + f", {counts['unfinished']} unfinished"),
            ("Function(s)", esc(self._function_name
                                + (f", {self._combiner_name}" if self._combiner_name else ""))),
            ("Environment", esc(repr(self.environment))),
            ("Start time", esc(str(_local_time(start)))),
            ("End time", esc(str(_local_time(end)))),
            ("Duration", "" if duration is None else f"{duration:.3f} s"),
        ]
        if error:
            rows.append(("Error", f'<span style="color:#c62828">{esc(error)}</span>'))
        info = "\n".join(f"<tr><th style=\"text-align:left\">{k}</th><td style=\"text-align:left\">{v}</td></tr>"
                         for k, v in rows)
        metrics = self.get_metrics(wait=False)
        failed = metrics[metrics["status"] == "Failed"]
        parts = [f'<div class="mapdeploy-job">\n<table class="mapdeploy-job-info">\n{info}\n</table>',
                 f"<p><b>Metrics</b> (first {min(5, len(metrics))} of {len(metrics)} rows)</p>",
                 metrics.to_html(max_rows=5)]
        if len(failed):
            parts.append(f"<p><b>Failed tasks</b> (first {min(5, len(failed))} of {len(failed)}; "
                         "job.get_task_output(name) shows what a task printed)</p>")
            parts.append(failed.select_columns(["task_name", "exception", "exception_message"])
                         .to_html(max_rows=5, row_class=lambda row: "mapdeploy-failed"))
        parts.append("</div>")
        return "\n".join(parts)

    def __str__(self) -> str:
        state, _, status = self._status_record()
        functions = self._function_name + (f", {self._combiner_name}" if self._combiner_name else "")
        self._refresh()
        done, failed = self._results.counts()
        lines = [
            "Info", "------",
            f"Job                : {self.name}",
            f"Function(s)        : {functions}",
            f"Status             : {state}",
            "",
            "Help", "------",
            "Get status         : self.get_status()",
            "Get results        : self.get_results()",
            "Get metrics        : self.get_metrics()",
            "Cancel job         : self.cancel()",
            "",
            "Environment", "----------",
            repr(self.environment),
            "",
            "Metrics", "-------",
            f"Start time         : {_local_time(status['start_time'])}",
            f"End time           : {_local_time(status['end_time'])}",
            f"Tasks              : {self._task_count} ({done} completed, {failed} failed)",
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<mapdeploy Job {self.name!r}: {self.get_status()}>"
