"""get_metrics() builds its Table over the job's results held in C: its columns
make each value when it is read.  These tests hold that lazy table to the eager
one (the same values in plain lists) for every way a Table is used, and pin
down its life: it is a snapshot of the results read so far, and it outlives
the Job and the job folder."""
from __future__ import annotations

import copy
import gc
import pickle

import pytest

import jobfuncs
import mapdeploy as gl
from conftest import wait_until
from mapdeploy import Table


def eager_copy(table: Table) -> Table:
    """The same table with every column a plain list."""
    return Table({name: list(table[name]) for name in table.column_names()})


@pytest.fixture
def finished_job():
    """A finished 12-task map job whose task 3 failed."""
    params = [{"x": i, "y": 1} for i in range(12)]
    params[3] = {"x": None, "y": 1}
    job = gl.deploy.map_job.create(jobfuncs.add, params)
    job.get_map_results()
    return job


@pytest.mark.parametrize("detailed", [False, True])
def test_lazy_metrics_behave_like_the_eager_table(finished_job, detailed):
    lazy = finished_job.get_metrics(detailed=detailed)
    eager = eager_copy(lazy)
    assert lazy == eager and eager == lazy
    assert not lazy != eager
    assert str(lazy) == str(eager)
    assert repr(lazy) == repr(eager)
    assert lazy._repr_html_() == eager._repr_html_()
    assert lazy.to_html() == eager.to_html()
    assert lazy.to_list() == eager.to_list()
    assert lazy.to_records() == eager.to_records()
    assert list(lazy) == list(eager)
    assert lazy.shape == eager.shape == (12, 12 if detailed else 7)
    for position in (0, 3, 11, -1, -12):
        assert lazy[position] == eager[position]
    for key in (slice(2, 5), slice(None, None, -3), slice(20, 30)):
        assert lazy[key] == eager[key]
    assert lazy.head(3) == eager.head(3) and lazy.tail(4) == eager.tail(4)
    assert lazy.sort("run_time") == eager.sort("run_time")
    assert lazy.sort(["status", "task_name"], ascending=False) == \
        eager.sort(["status", "task_name"], ascending=False)
    failed = lazy[lazy["status"] == "Failed"]
    assert failed == eager[eager["status"] == "Failed"]
    assert list(failed["task_name"]) == ["add-0-3"]
    assert lazy[["task_name", "status"]] == eager[["task_name", "status"]]
    assert pickle.loads(pickle.dumps(lazy)) == eager
    assert copy.deepcopy(lazy) == eager
    assert lazy.to_pandas().equals(eager.to_pandas())


def test_lazy_columns_behave_like_list_columns(finished_job):
    lazy = finished_job.get_metrics()
    eager = eager_copy(lazy)
    for name in lazy.column_names():
        column, plain = lazy[name], eager[name]
        assert len(column) == len(plain) == 12
        assert repr(column) == repr(plain) and str(column) == str(plain)
        assert column.to_list() == plain.to_list() == list(column)
        assert column[-1] == plain[-1] and column[2:9:3].to_list() == plain[2:9:3].to_list()
        assert (column == plain).all()
        assert column.unique().to_list() == plain.unique().to_list()
        with pytest.raises(IndexError, match="out of range"):
            column[12]
        with pytest.raises(TypeError):
            column["x"]
    assert lazy["run_time"].sum() == eager["run_time"].sum()
    assert lazy["task_name"][11] == "add-0-11"
    assert "add-0-5" in lazy["task_name"]


def test_a_table_taken_while_the_job_runs_does_not_change(tmp_path):
    gate = tmp_path / "gate"
    env = gl.deploy.environment.LocalAsync("one", num_workers=1)
    job = gl.deploy.map_job.create(jobfuncs.after_file, [{"x": 0, "path": None},
                                                         {"x": 1, "path": str(gate)}],
                                   environment=env)
    try:
        assert wait_until(lambda: job.get_metrics(wait=False)["status"][0] == "Completed",
                          timeout=60)
        early = job.get_metrics(wait=False)
        early_text, early_html = str(early), early._repr_html_()
        assert list(early["status"]) == ["Completed", "Pending"]
    finally:
        gate.touch()
    assert job.get_results() == [0, 1]
    late = job.get_metrics()
    assert list(late["status"]) == ["Completed", "Completed"]
    # the later results went into the job's own copy, not into the table handed out
    assert list(early["status"]) == ["Completed", "Pending"]
    assert early["run_time"][1] is None
    assert str(early) == early_text and early._repr_html_() == early_html
    assert early != late


def test_the_table_outlives_its_job_and_job_folder():
    job = gl.deploy.map_job.create(jobfuncs.add, [{"x": i, "y": i} for i in range(5)],
                                   combiner_function=jobfuncs.add_combiner)
    assert job.get_results() == 20
    metrics = job.get_metrics(detailed=True)
    text, rows = str(metrics), metrics.to_list()
    name = job.name
    del job
    gl.deploy.jobs.delete(name)
    gc.collect()
    assert name not in gl.deploy.jobs
    assert str(metrics) == text and metrics.to_list() == rows
    assert list(metrics["task_name"]) == [f"add-0-{i}" for i in range(5)] + ["add_combiner"]
    assert list(metrics["status"]) == ["Completed"] * 6
