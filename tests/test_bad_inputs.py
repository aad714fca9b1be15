"""The bad-input matrix: every public entry point, called with wrong types, wrong
values, huge values and odd Unicode, raises the documented exception with a
message that says what was wrong, and creates nothing."""
from __future__ import annotations

import threading

import pytest

import jobfuncs
import mapdeploy as gl
from mapdeploy import Table

E = gl.deploy.environment
ONE = [{"x": 1, "y": 1}]


def map_job(**overrides):
    arguments = dict(function=jobfuncs.add, parameter_set=ONE)
    arguments.update(overrides)
    return lambda: gl.deploy.map_job.create(**arguments)


class Holder:
    def method(self):
        return 1


CASES = [
    # map_job.create: function
    ("function None", map_job(function=None), TypeError, "function must be a function, not NoneType"),
    ("function int", map_job(function=42), TypeError, "function must be a function, not int"),
    ("bound method", map_job(function=Holder().method), TypeError, "not the bound method Holder.method"),
    ("combiner int", map_job(combiner_function=5), TypeError, "combiner_function must be a function, not int"),
    # parameter_set
    ("parameter_set None", map_job(parameter_set=None), TypeError, "parameter_set has to be an iterable of dictionaries"),
    ("parameter_set str", map_job(parameter_set="xy"), TypeError, "got str"),
    ("parameter_set dict", map_job(parameter_set={"x": 1}), TypeError, "got dict"),
    ("parameter_set empty", map_job(parameter_set=[]), RuntimeError, "An empty parameter_set was given. Nothing to do."),
    ("parameter_set of ints", map_job(parameter_set=[1]), TypeError, "element 0 is a int"),
    ("non-str kwarg name", map_job(parameter_set=[{1: 2}]), TypeError, "parameter_set\\[0\\] has the key 1"),
    ("unpicklable value", map_job(parameter_set=[{"x": threading.Lock(), "y": 1}]), gl.SerializationError,
     "parameter_set\\[0\\]\\['x'\\]"),
    # name
    ("name int", map_job(name=5), TypeError, "name must be a str, not int"),
    ("name empty", map_job(name=""), ValueError, "Job name '' is not valid"),
    ("name path", map_job(name="../up"), ValueError, "Job name '../up' is not valid"),
    ("name NUL", map_job(name="a\x00b"), ValueError, "is not valid"),
    ("name accented", map_job(name="café"), ValueError, "Job name 'café' is not valid"),
    ("name fullwidth digits", map_job(name="job１"), ValueError, "is not valid"),
    ("name lone surrogate", map_job(name="a\udc80"), ValueError, "is not valid"),
    ("name RTL override", map_job(name="a\u202eb"), ValueError, "is not valid"),
    ("name huge", map_job(name="a" * 100_000), ValueError, "is 100000 characters long; a job name has at most 128"),
    # environment
    ("environment int", map_job(environment=5), TypeError, "environment must be None, the name of an environment"),
    ("environment unknown", map_job(environment="nope"), ValueError, "Environment 'nope' was not found"),
    ("environment Unicode unknown", map_job(environment="環境\udc80"), ValueError, "was not found"),
    ("Local name int", lambda: E.Local(5), TypeError, "an environment name must be a non-empty str"),
    ("Local name empty", lambda: E.Local(""), TypeError, "an environment name must be a non-empty str"),
    ("Local name huge", lambda: E.LocalAsync("e" * 10_000), ValueError, "is 10000 characters long; at most 40"),
    ("num_workers 0", lambda: E.Local("w", num_workers=0), ValueError, "num_workers must be an int from 1 to 1024"),
    ("num_workers bool", lambda: E.Local("w", num_workers=True), ValueError, "not True"),
    ("num_workers str", lambda: E.Local("w", num_workers="2"), ValueError, "not '2'"),
    ("num_workers float", lambda: E.Local("w", num_workers=2.0), ValueError, "not 2.0"),
    ("num_workers huge", lambda: E.Local("w", num_workers=10 ** 30), ValueError, "not 10000000000"),
    ("memory limit negative", lambda: E.Local("m", worker_memory_limit=-1), ValueError, "worker_memory_limit must be None"),
    ("memory limit tiny", lambda: E.Local("m", worker_memory_limit=1024), ValueError, "at least 268435456"),
    ("memory limit str", lambda: E.Local("m", worker_memory_limit="1G"), ValueError, "not '1G'"),
    ("memory limit huge", lambda: E.Local("m", worker_memory_limit=2 ** 64), ValueError, "not 18446744073709551616"),
    # job.create
    ("job.create function str", lambda: gl.deploy.job.create("add"), TypeError, "function must be a function, not str"),
    ("job.create name list", lambda: gl.deploy.job.create(jobfuncs.add, name=["x"]), TypeError, "name must be a str, not list"),
    ("job.create unpicklable kwarg", lambda: gl.deploy.job.create(jobfuncs.add, x=threading.Lock(), y=1),
     gl.SerializationError, "the keyword arguments of add"),
    # the registries
    ("jobs[None]", lambda: gl.deploy.jobs[None], TypeError, "a job is looked up by index \\(int\\) or name \\(str\\), not NoneType"),
    ("jobs[float]", lambda: gl.deploy.jobs[1.5], TypeError, "not float"),
    ("jobs[bool]", lambda: gl.deploy.jobs[True], TypeError, "not bool"),
    ("jobs[huge int]", lambda: gl.deploy.jobs[10 ** 20], gl.JobNotFoundError, "there is no job with index 100000000000000000000"),
    ("jobs[unknown]", lambda: gl.deploy.jobs["nope"], gl.JobNotFoundError, "there is no job named 'nope'"),
    ("jobs[path]", lambda: gl.deploy.jobs["../../etc"], gl.JobNotFoundError, "there is no job named '../../etc'"),
    ("jobs[NUL]", lambda: gl.deploy.jobs["a\x00"], gl.JobNotFoundError, "there is no job named 'a\\\\x00'"),
    ("jobs[surrogate]", lambda: gl.deploy.jobs["a\udc80"], gl.JobNotFoundError, "there is no job named"),
    ("jobs.delete nothing", lambda: gl.deploy.jobs.delete(), ValueError, "give an item"),
    ("jobs.delete pattern int", lambda: gl.deploy.jobs.delete(pattern=5), TypeError, "pattern must be an fnmatch pattern \\(str\\), not int"),
    ("environments[list]", lambda: gl.deploy.environments[[1]], TypeError, "not list"),
    ("environments[unknown]", lambda: gl.deploy.environments["ñ"], ValueError, "Environment 'ñ' was not found in deploy.environments"),
    # Table
    ("Table of int", lambda: Table(5), TypeError, "a Table is made from a mapping of column name to a sequence"),
    ("Table column name int", lambda: Table({1: [1]}), TypeError, "column names must be strings"),
    ("Table column of str", lambda: Table({"a": "abc"}), TypeError, "column 'a' must be a sequence of values, not a str"),
    ("Table index float", lambda: Table({"a": [1]})[1.5], TypeError, "Table indices must be integers"),
    ("Table index huge", lambda: Table({"a": [1]})[10 ** 20], IndexError, "row index 100000000000000000000 is out of range"),
    ("Table unknown column", lambda: Table({"a": [1]})["ß"], KeyError, "ß"),
    ("Table sort unknown", lambda: Table({"a": [1]}).sort("b"), KeyError, "no column named 'b'; available columns: 'a'"),
]


@pytest.mark.parametrize("call, exception, message", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_bad_input_raises_the_documented_error(session_home, call, exception, message):
    with pytest.raises(exception, match=message):
        call()
    jobs = session_home / "jobs"
    assert not jobs.is_dir() or not any(jobs.iterdir()), "a bad input left a job behind"


def test_odd_unicode_keyword_names_and_values_travel_intact():
    job = gl.deploy.map_job.create(lambda **k: sorted(k.items()),
                                   [{"名前": "值\U0001F600", "ñ": "\u202e"}],
                                   environment=E.Local("unicode"))
    assert job.get_map_results() == [[("ñ", "\u202e"), ("名前", "值\U0001F600")]]


def test_a_keyword_name_that_is_no_identifier_fails_only_its_task():
    job = gl.deploy.map_job.create(jobfuncs.add, [{"x": 1, "y": 2}, {"x\udc80": 1}],
                                   environment=E.Local("odd-kwargs"))
    assert job.get_map_results() == [3, None]
    assert "unexpected keyword argument" in job.get_metrics()[1]["exception_message"]
