"""Several processes create, list and delete jobs and environments at the same time.

Each process runs real mapdeploy calls in a loop and reports every
exception that is not one of the documented outcomes of a race (a job that
another process deleted is a JobNotFoundError; a job still running is not
deleted), and every warning the 'mapdeploy' logger gave.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import mapdeploy as gl
from conftest import wait_until

TESTS = os.path.dirname(os.path.abspath(__file__))

ROLE = textwrap.dedent("""
    import contextlib, io, json, logging, os, sys, time, traceback
    sys.path.insert(0, {tests!r})
    import jobfuncs
    import mapdeploy as gl
    from mapdeploy import JobNotFoundError, cli

    role, tag, stop = sys.argv[1], sys.argv[2], sys.argv[3]
    warnings, errors = [], []
    counts = {{"created": 0, "deleted": 0, "gone": 0, "listed": 0, "loaded": 0, "running": 0}}

    class Keep(logging.Handler):
        def emit(self, record):
            warnings.append(record.getMessage())

    logger = logging.getLogger("mapdeploy")
    logger.addHandler(Keep(level=logging.WARNING))
    logger.setLevel(logging.WARNING)

    def unexpected(error):
        errors.append("".join(traceback.format_exception(error)))

    def still_running(error):
        return isinstance(error, RuntimeError) and "cancel it first" in str(error)

    def create():
        for i in range(12):
            env = gl.deploy.environment.LocalAsync(f"env-{{tag}}-{{i}}")
            gl.deploy.map_job.create(jobfuncs.add, [{{"x": i, "y": 1}}], name=f"churn-{{tag}}",
                                     environment=env)
            counts["created"] += 1

    def delete_by_pattern():
        while True:
            try:
                gl.deploy.jobs.delete(pattern="churn-*")
                counts["deleted"] += 1
            except Exception as error:
                if still_running(error):
                    counts["running"] += 1
                else:
                    unexpected(error)
            try:
                gl.deploy.environments.delete(pattern="env-*")
            except Exception as error:
                unexpected(error)
            if os.path.exists(stop):
                return

    def command(*args):
        # the mapdeploy command, in this process: (exit code, its --json output)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            code = cli.main([*args, "--json"])
        return code, json.loads(out.getvalue() or "null")

    def delete_by_name():
        while True:
            code, data = command("delete", "churn-*")
            if code not in (0, 1, 3) or (data and any("cancel it first" not in e
                                                      for e in data["errors"])):
                errors.append(f"mapdeploy delete exited {{code}}: {{data}}")
            for name in list(gl.deploy.jobs):
                try:
                    del gl.deploy.jobs[name]
                    counts["deleted"] += 1
                except JobNotFoundError:
                    counts["gone"] += 1
                except Exception as error:
                    if still_running(error):
                        counts["running"] += 1
                    else:
                        unexpected(error)
            for name in list(gl.deploy.environments):
                if name.startswith("env-"):
                    try:
                        del gl.deploy.environments[name]
                    except JobNotFoundError:
                        counts["gone"] += 1
                    except Exception as error:
                        unexpected(error)
            if os.path.exists(stop):
                return

    def list_all():
        while True:
            try:
                table = gl.deploy.jobs.list()
                counts["listed"] += 1
                len(gl.deploy.jobs)
                gl.deploy.environments.list()
                code, rows = command("jobs")
                if code != 0 or any(row["status"].startswith("Unreadable") for row in rows):
                    errors.append(f"mapdeploy jobs exited {{code}}: {{rows}}")
                for name in table["Name"]:
                    try:
                        gl.deploy.jobs[name]
                        counts["loaded"] += 1
                    except JobNotFoundError:
                        counts["gone"] += 1
            except Exception as error:
                unexpected(error)
            if os.path.exists(stop):
                return

    try:
        {{"create": create, "delete-pattern": delete_by_pattern, "delete-name": delete_by_name,
          "list": list_all}}[role]()
    except Exception as error:
        unexpected(error)
    print(json.dumps({{"role": role, "counts": counts, "errors": errors, "warnings": warnings}}))
    """).format(tests=TESTS)


def start(role: str, tag: str, stop: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", ROLE, role, tag, stop], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_concurrent_create_list_and_delete_raise_nothing_spurious(tmp_path, session_home):
    stop = str(tmp_path / "stop")
    creators = [start("create", tag, stop) for tag in ("a", "b")]
    others = [start(role, "-", stop) for role in ("delete-pattern", "delete-name", "list", "list")]
    reports = []
    for process in creators:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        reports.append(json.loads(out))
    # every job ends within moments; the deleters then see it finished and take it away
    assert wait_until(lambda: not any(n.startswith("churn-") for n in gl.deploy.jobs), timeout=60)
    (tmp_path / "stop").touch()
    for process in others:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        reports.append(json.loads(out))
    for report in reports:
        assert report["errors"] == [], report["role"] + ":\n" + "\n".join(report["errors"])
        assert report["warnings"] == [], report
    by_role: dict[str, dict[str, int]] = {}
    for report in reports:
        for key, value in report["counts"].items():
            by_role.setdefault(report["role"], {}).setdefault(key, 0)
            by_role[report["role"]][key] += value
    assert by_role["create"]["created"] == 24
    assert by_role["delete-pattern"]["deleted"] + by_role["delete-name"]["deleted"] >= 1
    assert by_role["list"]["listed"] >= 2
    # nothing half deleted is left behind, and the registries agree with the folders
    # (a warm pool's spare folder for its next job is no job: listings skip it)
    assert [n for n in os.listdir(session_home / "jobs") if not n.startswith(".spare-")] == []
    assert [n for n in gl.deploy.environments if n.startswith("env-")] == []
    print(f"\n{by_role}")
