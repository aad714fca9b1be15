"""Tests for mapdeploy's pure-Python metrics table (mapdeploy._table)."""

from __future__ import annotations

import csv
import io
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from mapdeploy._table import Column, Table, failed_row_class
from seed_document import DOC_METRICS

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/tmp/mapdeploy/task.py", line 12, in run\n'
    "    result = fn(*args)\n"
    '  File "<stdin>", line 2, in add\n'
    "TypeError: unsupported operand type(s) for +: 'NoneType' and 'int'\n"
)
MESSAGE = "unsupported operand type(s) for +: 'NoneType' and 'int'"

# The printed metrics table from GraphLab Create's deploy documentation.
DOC_EXAMPLE = DOC_METRICS

NOTE = (
    "Note: Only the head of the Table is printed.\n"
    "You can use print_rows(num_rows=m, num_columns=n) to print more rows and columns."
)


def make_metrics() -> Table:
    return Table(
        {
            "task_name": ["add-0-0", "add-0-1", "add-0-2"],
            "status": ["Completed", "Failed", "Completed"],
            "start_time": [datetime(2015, 5, 7, 12, 46, 53)] * 3,
            "run_time": [6.60419464111e-05, None, 1.50203704834e-05],
            "exception": [None, "TypeError", None],
            "exception_message": [None, MESSAGE, None],
            "exception_traceback": [None, TRACEBACK, None],
        }
    )


@pytest.fixture
def m() -> Table:
    return make_metrics()


@pytest.fixture
def nums() -> Table:
    return Table({"k": ["a", "b", "c", "d"], "v": [40, None, 10, 25]})


# -- printing -----------------------------------------------------------------


def test_str_reproduces_graphlab_doc_example(m: Table) -> None:
    assert str(m) == DOC_EXAMPLE
    assert repr(m) == DOC_EXAMPLE


def test_str_with_string_start_times_is_identical() -> None:
    t = make_metrics()
    cols = {name: t[name].to_list() for name in t.column_names()}
    cols["start_time"] = ["2015-05-07 12:46:53"] * 3
    assert str(Table(cols)) == DOC_EXAMPLE


def test_print_goes_to_stdout(m: Table, capsys: pytest.CaptureFixture[str]) -> None:
    print(m)
    assert capsys.readouterr().out == DOC_EXAMPLE + "\n"


def test_more_than_ten_rows_prints_head_and_note() -> None:
    t = Table({"i": list(range(12)), "sq": [i * i for i in range(12)]})
    text = str(t)
    assert text.endswith("[12 rows x 2 columns]\n" + NOTE)
    lines = text.split("\n")
    # rule, header, rule, 10 rows, rule, footer, 2 note lines
    assert len(lines) == 3 + 10 + 1 + 3
    # widths come from the printed rows only, as in GraphLab
    assert lines[0] == "+---+----+"
    assert lines[1] == "| i | sq |"
    assert lines[3] == "| 0 | 0  |"
    assert lines[12] == "| 9 | 81 |"
    assert "| 10 |" not in text and "121" not in text


def test_exactly_ten_rows_has_no_note() -> None:
    t = Table({"i": list(range(10))})
    assert str(t).endswith("[10 rows x 1 columns]")
    assert "Note" not in str(t)


def test_wide_table_wraps_into_three_blocks() -> None:
    cols = {f"metric_col_{i:02d}": [f"value_{i}_{r}" for r in range(2)] for i in range(10)}
    t = Table(cols)
    text = str(t)
    lines = text.split("\n")
    assert lines[-1] == "[2 rows x 10 columns]"
    body = lines[:-1]
    assert len(body) == 3 * 6  # 3 blocks of: rule, header, rule, 2 rows, rule
    assert all(len(line) <= 80 for line in body)
    # each column is 15 wide -> 4 columns (65 chars) fit per block, 5 would be 81: 4 + 4 + 2
    headers = [body[i * 6 + 1] for i in range(3)]
    assert headers[0].count("metric_col_") == 4
    assert headers[1].count("metric_col_") == 4
    assert headers[2] == "| metric_col_08 | metric_col_09 |"
    assert body[0] == "+" + "+".join(["-" * 15] * 4) + "+"
    assert body[3] == "|" + "|".join(f"value_{i}_0".center(15) for i in range(4)) + "|"
    assert body[7] == "| metric_col_04 | metric_col_05 | metric_col_06 | metric_col_07 |"


def test_block_packing_allows_exactly_80_chars() -> None:
    # two 30-char columns (width 32 each) + a 10-char header (width 12): 1 + 33 + 33 + 13 == 80
    fits = Table({"a" * 30: ["x"], "b" * 30: ["y"], "c" * 10: ["z"]})
    lines = str(fits).split("\n")
    assert len(lines[0]) == 80
    assert lines[1].count("|") == 4  # one block with three columns
    assert len(lines) == 6
    # one more header character makes the line 81 wide: the third column wraps
    wraps = Table({"a" * 30: ["x"], "b" * 30: ["y"], "c" * 11: ["z"]})
    lines = str(wraps).split("\n")
    assert len(lines[0]) == 67
    assert lines[5] == "+-------------+"
    assert lines[6] == "| ccccccccccc |"
    assert len(lines) == 11


def test_cells_and_headers_longer_than_30_are_cut() -> None:
    long_name = "n" * 31
    t = Table({long_name: ["x" * 30, "y" * 31, "line one\nline two"]})
    lines = str(t).split("\n")
    # width = 30 + 2 (the longest shown cell is exactly 30 chars and kept whole)
    assert lines[0] == "+" + "-" * 32 + "+"
    assert lines[1] == "|" + ("n" * 26 + "...").center(32) + "|"
    assert lines[3] == "| " + "x" * 30 + " |"
    assert lines[4] == "|" + ("y" * 26 + "...").center(32) + "|"
    assert lines[5] == "|" + "line one line two".center(32) + "|"


def test_empty_table_prints_header_only() -> None:
    t = Table({"task_name": [], "status": []})
    assert str(t) == (
        "+-----------+--------+\n"
        "| task_name | status |\n"
        "+-----------+--------+\n"
        "+-----------+--------+\n"
        "[0 rows x 2 columns]"
    )
    assert str(Table()) == "[0 rows x 0 columns]"


def test_more_than_20_columns_shows_ellipsis_column() -> None:
    t = Table({f"c{i}": [i] for i in range(22)})
    text = str(t)
    assert "c19" in text and "c20" not in text and "c21" not in text
    assert "| ... |" in text
    assert text.endswith("[1 rows x 22 columns]")


def test_list_values_print_without_quotes() -> None:
    t = Table({"args": [[1, "a"], []]})
    assert "| [1, a] |" in str(t)


def test_print_rows(m: Table, capsys: pytest.CaptureFixture[str]) -> None:
    m.print_rows(num_rows=1, num_columns=2)
    out = capsys.readouterr().out
    assert out == (
        "+-----------+-----------+-----+\n"
        "| task_name |   status  | ... |\n"
        "+-----------+-----------+-----+\n"
        "|  add-0-0  | Completed | ... |\n"
        "+-----------+-----------+-----+\n"
        "[3 rows x 7 columns]\n"
        "Note: 5 columns are not shown; use print_rows(num_columns=7) to print all columns.\n"
    )


def test_print_rows_defaults_match_str(m: Table) -> None:
    buf = io.StringIO()
    m.print_rows(output_file=buf)
    assert buf.getvalue() == DOC_EXAMPLE + "\n"


def test_print_rows_more_rows_than_str() -> None:
    t = Table({"i": list(range(15))})
    buf = io.StringIO()
    t.print_rows(num_rows=15, output_file=buf)
    text = buf.getvalue()
    assert "| 14 |" in text
    assert text.endswith("[15 rows x 1 columns]\n")


# -- construction and shape ---------------------------------------------------


def test_shape_and_names(m: Table) -> None:
    assert len(m) == 3
    assert m.num_rows() == 3
    assert m.num_columns() == 7
    assert m.shape == (3, 7)
    assert m.column_names()[:2] == ["task_name", "status"]
    assert "status" in m and "nope" not in m


def test_unequal_lengths_raise_naming_columns() -> None:
    with pytest.raises(ValueError, match="'a' has 2.*'b' has 1"):
        Table({"a": [1, 2], "b": [1]})


def test_bad_column_values() -> None:
    with pytest.raises(TypeError):
        Table({"a": "abc"})
    with pytest.raises(TypeError):
        Table({1: [1]})  # type: ignore[dict-item]


def test_constructor_copies_input() -> None:
    data = [1, 2]
    t = Table({"a": data})
    data.append(3)
    assert len(t) == 2


def test_from_rows() -> None:
    t = Table.from_rows([{"a": 1, "b": 2, "z": 0}, {"a": 3}], ["b", "a"])
    assert t.column_names() == ["b", "a"]
    assert t.to_list() == [[2, 1], [None, 3]]
    assert Table.from_rows([], ["a"]).shape == (0, 1)
    with pytest.raises(ValueError):
        Table.from_rows([], ["a", "a"])


def test_empty_table() -> None:
    t = Table()
    assert t.shape == (0, 0)
    assert list(t) == []
    assert t == Table({})


# -- indexing -----------------------------------------------------------------


def test_row_indexing(m: Table) -> None:
    assert m[1]["exception"] == "TypeError"
    row = m[0]
    assert isinstance(row, dict)
    assert list(row) == m.column_names()
    assert m[-1]["task_name"] == "add-0-2"
    with pytest.raises(IndexError, match="row index 3 is out of range.*3 rows"):
        m[3]
    with pytest.raises(IndexError):
        m[-4]
    with pytest.raises(IndexError):
        Table({"a": []})[0]


def test_column_indexing(m: Table) -> None:
    status = m["status"]
    assert isinstance(status, Column)
    assert status.name == "status"
    assert list(status) == ["Completed", "Failed", "Completed"]
    assert status.to_list() == ["Completed", "Failed", "Completed"]
    assert len(status) == 3
    assert status[1] == "Failed"
    assert status[-1] == "Completed"
    with pytest.raises(KeyError, match="available columns: 'task_name', 'status'"):
        m["nope"]


def test_filter_by_column_mask(m: Table) -> None:
    failed = m[m["status"] == "Failed"]
    assert isinstance(failed, Table)
    assert len(failed) == 1
    assert failed[0]["task_name"] == "add-0-1"
    assert failed.column_names() == m.column_names()
    assert len(m[m["status"] != "Failed"]) == 2


def test_filter_by_list_mask(m: Table) -> None:
    assert m[[True, False, True]]["task_name"].to_list() == ["add-0-0", "add-0-2"]
    with pytest.raises(ValueError, match="length 2.*3 rows"):
        m[[True, False]]
    with pytest.raises(ValueError):
        m[Column([True])]


def test_select_columns(m: Table) -> None:
    sub = m[["status", "task_name"]]
    assert sub.column_names() == ["status", "task_name"]
    assert sub.shape == (3, 2)
    assert sub[0] == {"status": "Completed", "task_name": "add-0-0"}
    with pytest.raises(KeyError):
        m[["status", "nope"]]


def test_slice(m: Table) -> None:
    t = Table({"i": list(range(10))})
    assert t[2:5]["i"].to_list() == [2, 3, 4]
    assert t[::3]["i"].to_list() == [0, 3, 6, 9]
    assert len(t[8:20]) == 2
    assert m[1:2] == m[m["status"] == "Failed"]


def test_bad_key_type(m: Table) -> None:
    with pytest.raises(TypeError):
        m[1.5]  # type: ignore[call-overload]


def test_iteration_and_equality(m: Table) -> None:
    rows = list(m)
    assert len(rows) == 3 and rows[1]["status"] == "Failed"
    assert m == make_metrics()
    assert m != m.head(2)
    assert m != m[["status"]]
    assert (m == "x") is False


# -- Column -------------------------------------------------------------------


def test_column_comparisons(nums: Table) -> None:
    v = nums["v"]
    assert (v == 10).to_list() == [False, False, True, False]
    assert (v != 10).to_list() == [True, True, False, True]
    assert (v > 20).to_list() == [True, False, False, True]
    assert (v >= 25).to_list() == [True, False, False, True]
    assert (v < 25).to_list() == [False, False, True, False]
    assert (v <= 25).to_list() == [False, False, True, True]
    assert (v == None).to_list() == [False, True, False, False]  # noqa: E711
    assert (v == [40, None, 0, 0]).to_list() == [True, True, False, False]
    assert (v > Column([0, 0, 20, 20])).to_list() == [True, False, False, True]
    with pytest.raises(ValueError):
        v == [1, 2]


def test_column_boolean_ops(nums: Table) -> None:
    v = nums["v"]
    both = (v > 5) & (v < 30)
    assert both.to_list() == [False, False, True, True]
    either = (v > 30) | (v < 15)
    assert either.to_list() == [True, False, True, False]
    assert (~(v > 30)).to_list() == [False, True, True, True]
    assert nums[(v > 5) & (nums["k"] != "d")]["k"].to_list() == ["a", "c"]
    assert ([True, True, False, False] & (v > 5)).to_list() == [True, False, False, False]


def test_column_truth_value_is_ambiguous(nums: Table) -> None:
    with pytest.raises(ValueError, match="ambiguous"):
        bool(nums["v"] == 10)
    assert (nums["v"] == 10).any()
    assert not (nums["v"] == 10).all()


def test_column_reductions_and_apply(nums: Table) -> None:
    v = nums["v"]
    assert v.sum() == 75
    assert v.mean() == 25
    assert Column([None, None]).mean() is None
    assert Column([]).sum() == 0
    assert v.apply(lambda x: x * 2).to_list() == [80, None, 20, 50]
    assert v.apply(lambda x: x is None, skip_undefined=False).to_list() == [
        False,
        True,
        False,
        False,
    ]
    assert Column(["b", "a", "b", None, "a"]).unique().to_list() == ["b", "a", None]
    assert Column([[1], [1], [2]]).unique().to_list() == [[1], [2]]


def test_column_sequence_behaviour(nums: Table) -> None:
    v = nums["v"]
    assert repr(v) == "[40, None, 10, 25]"
    assert str(v) == "[40, None, 10, 25]"
    assert repr(nums["k"]) == "['a', 'b', 'c', 'd']"
    assert isinstance(v[1:3], Column)
    assert v[1:3].to_list() == [None, 10]
    assert v[1:3].name == "v"
    assert 10 in v
    assert list(reversed(v)) == [25, 10, None, 40]
    with pytest.raises(IndexError):
        v[4]
    assert repr(Column(range(150))).endswith(", 99, ...]")
    with pytest.raises(TypeError):
        hash(v)


# -- row subsets and sorting --------------------------------------------------


def test_head_tail() -> None:
    t = Table({"i": list(range(15))})
    assert t.head()["i"].to_list() == list(range(10))
    assert t.head(3)["i"].to_list() == [0, 1, 2]
    assert t.tail(3)["i"].to_list() == [12, 13, 14]
    assert len(t.tail()) == 10
    assert len(t.tail(0)) == 0 and len(t.head(0)) == 0
    assert len(t.head(100)) == 15 and len(t.tail(100)) == 15


def test_sort(nums: Table) -> None:
    assert nums.sort("v")["v"].to_list() == [10, 25, 40, None]
    assert nums.sort("v", ascending=False)["v"].to_list() == [40, 25, 10, None]
    assert nums.sort("v")["k"].to_list() == ["c", "d", "a", "b"]
    assert nums.sort("k", ascending=False)["k"].to_list() == ["d", "c", "b", "a"]
    with pytest.raises(KeyError):
        nums.sort("nope")


def test_sort_is_stable_and_multi_key() -> None:
    t = Table({"g": [2, 1, 2, 1, None], "x": ["a", "b", "c", "d", "e"]})
    assert t.sort("g")["x"].to_list() == ["b", "d", "a", "c", "e"]
    assert t.sort(["g", "x"], ascending=False)["x"].to_list() == ["c", "a", "d", "b", "e"]


def test_sort_incomparable_values() -> None:
    with pytest.raises(TypeError, match="column 'a'"):
        Table({"a": [1, "x"]}).sort("a")


# -- conversions --------------------------------------------------------------


def test_to_records_and_to_list(nums: Table) -> None:
    assert nums.to_records()[1] == {"k": "b", "v": None}
    assert nums.to_list() == [["a", 40], ["b", None], ["c", 10], ["d", 25]]


def test_to_csv(m: Table, tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    m.to_csv(path)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == m.column_names()
    assert len(rows) == 4
    assert rows[2][0] == "add-0-1"
    assert rows[2][3] == ""  # None run_time
    assert rows[2][6] == TRACEBACK  # multi-line text round-trips
    assert rows[1][3] == "6.60419464111e-05"
    m.to_csv(str(tmp_path / "again.csv"))
    assert (tmp_path / "again.csv").read_text(encoding="utf-8") == path.read_text(encoding="utf-8")


def test_to_pandas(m: Table) -> None:
    df = m.to_pandas()
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == m.column_names()
    assert df.shape == (3, 7)
    assert df["status"].tolist() == ["Completed", "Failed", "Completed"]
    assert df["exception"].iloc[1] == "TypeError"
    assert Table({"a": [], "b": []}).to_pandas().shape == (0, 2)


def test_to_pandas_without_pandas(m: Table, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        m.to_pandas()


# -- HTML ---------------------------------------------------------------------


def test_repr_html_escapes_and_marks_failed_rows() -> None:
    t = Table(
        {
            "task_name": ["<b>x</b>", "y & z"],
            "status": ["Completed", "Failed"],
            "exception_message": [None, "'a' < \"b\""],
        }
    )
    out = t._repr_html_()
    assert "<table" in out and "</table>" in out
    assert "<b>x</b>" not in out
    assert "&lt;b&gt;x&lt;/b&gt;" in out
    assert "y &amp; z" in out
    assert "&#x27;a&#x27; &lt; &quot;b&quot;" in out
    assert out.count('class="mapdeploy-failed"') == 1
    failed_tr = next(line for line in out.splitlines() if "mapdeploy-failed" in line)
    assert "y &amp; z" in failed_tr
    assert "background-color" in failed_tr
    assert "<th>task_name</th>" in out
    assert "[2 rows x 3 columns]" in out


def test_repr_html_head_only() -> None:
    t = Table({"i": list(range(12))})
    out = t._repr_html_()
    assert out.count("<tr>") == 1 + 10  # header + 10 rows
    assert "Only the head of the Table is printed." in out


def test_to_html_row_class_hook(m: Table) -> None:
    assert failed_row_class({"status": "Failed"}) == "mapdeploy-failed"
    assert failed_row_class({"status": "Completed"}) is None
    assert failed_row_class({}) is None
    custom = m.to_html(row_class=lambda row: "slow" if row["task_name"] == "add-0-2" else None)
    assert custom.count('class="slow"') == 1
    assert "mapdeploy-failed" not in custom
    assert "mapdeploy-failed" not in m.to_html(row_class=None)
    assert "<br/>" in m.to_html()  # multi-line traceback keeps its line breaks
