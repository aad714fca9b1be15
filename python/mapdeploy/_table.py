"""Pure-Python tabular containers used for mapdeploy's metrics tables.

GraphLab Create's deploy API handed users an ``SFrame`` of per-task metrics
(``job.get_metrics()``).  :class:`Table` is a small, dependency-free stand-in
that supports the ways such a table is normally used: indexing rows and
columns, boolean filtering (``m[m['status'] == 'Failed']``), sorting,
exporting (CSV, pandas, records), and printing -- where ``str(table)``
reproduces the boxed layout that ``print(sframe)`` produced.

:class:`Column` is the one-dimensional counterpart of ``SArray``: an
immutable sequence with element-wise comparison and boolean operators, so
that comparisons yield masks usable to filter a :class:`Table`.

A column's values are held either in a ``list`` or in any other read-only
sequence that makes each value when it is read: ``job.get_metrics()`` hands
its columns over as views of the job's results held in C
(``_mapdeploy.ResultColumn``), so that a table of a million tasks holds no
Python object per task until its cells are read.  Everything a Table does
only indexes, slices (a slice is a new list), iterates and measures its
columns, so both kinds behave the same.
"""

from __future__ import annotations

import csv
import html
import operator
import os
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, ClassVar, overload

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas

__all__ = ["Column", "Table", "failed_row_class"]

#: Number of rows shown by ``str(table)``.
_HEAD_ROWS = 10
#: Cells (and headers) longer than this are cut by the text renderer.
_MAX_COLUMN_WIDTH = 30
#: Column blocks are packed so that no printed line exceeds this many chars.
_MAX_ROW_WIDTH = 80
#: ``str(table)`` shows at most this many columns (as GraphLab did).
_MAX_COLUMNS = 20
#: Number of elements shown by ``repr(column)``.
_COLUMN_REPR_ITEMS = 100

_HEAD_NOTE = (
    "Note: Only the head of the Table is printed.\n"
    "You can use print_rows(num_rows=m, num_columns=n) to print more rows and columns."
)

_SENTINEL_ELLIPSIS = "..."


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _value_to_str(value: Any) -> str:
    """Text of one cell as GraphLab printed it (lists without string quotes)."""
    if isinstance(value, list):
        return "[" + ", ".join(_value_to_str(item) for item in value) + "]"
    if isinstance(value, float):
        # GraphLab printed floats with Python 2's str(): 12 significant digits.
        text = f"{value:.12g}"
        return text if any(c in text for c in ".ena") else text + ".0"
    return str(value)


def _one_line(text: str) -> str:
    """Replace line breaks and tabs by single spaces so a cell stays on one line."""
    return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ").replace("\t", " ")


def _truncate(text: str, max_width: int) -> str:
    """Cut *text* longer than *max_width* characters to ``max_width - 4`` chars + '...'.

    This is GraphLab's rule: with the default width of 30 a long cell shows
    its first 26 characters followed by ``...`` (29 characters in total).
    """
    if len(text) <= max_width:
        return text
    return text[: max(max_width - 4, 0)] + "..."


def _display_width(text: str) -> int:
    """Number of terminal cells *text* occupies (wide East Asian chars count 2)."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def _center(text: str, width: int) -> str:
    """Center *text* in *width* cells exactly like :meth:`str.center`.

    ``str.center`` counts code points; this uses the display width so that
    wide characters still line up, and is identical to ``text.center(width)``
    for ordinary text.
    """
    n = _display_width(text)
    pad = width - n
    if pad <= 0:
        return text
    left = pad // 2 + (pad & width & 1)
    return " " * left + text + " " * (pad - left)


def _is_missing(value: Any) -> bool:
    return value is None


def _same_values(a: Sequence[Any], b: Sequence[Any]) -> bool:
    """``list(a) == list(b)`` (identity or ``==`` per element), without copying either."""
    if a is b:
        return True
    if len(a) != len(b):
        return False
    if type(a) is list and type(b) is list:
        return a == b
    return all(x is y or x == y for x, y in zip(a, b))


def failed_row_class(row: Mapping[str, Any]) -> str | None:
    """Default HTML row-class hook: ``"mapdeploy-failed"`` for failed tasks.

    Parameters
    ----------
    row:
        One row of the table as a mapping from column name to value.

    Returns
    -------
    str or None
        ``"mapdeploy-failed"`` when ``row['status'] == 'Failed'``, otherwise
        ``None`` (no class).
    """
    return "mapdeploy-failed" if row.get("status") == "Failed" else None


# ---------------------------------------------------------------------------
# Column
# ---------------------------------------------------------------------------


class Column(Sequence[Any]):
    """An immutable, named, one-dimensional sequence of values (like ``SArray``).

    Comparison operators (``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``) work
    element-wise against a scalar or against a list/Column of the same
    length and return a Column of bools, which can be combined with ``&``,
    ``|`` and ``~`` and used to filter a :class:`Table`::

        failed = metrics[metrics['status'] == 'Failed']

    Only ``list`` and :class:`Column` operands are treated element-wise; any
    other operand (including a tuple) is compared as a scalar.  Ordering
    comparisons involving a ``None`` element (or a ``None`` operand) yield
    ``False`` rather than raising.  Boolean operators use truthiness, so
    ``None`` counts as ``False``.

    Because ``==`` is element-wise, Columns are unhashable, and -- as with
    numpy arrays -- using a Column in a boolean context (``if col:``) raises
    :class:`ValueError`; use :meth:`any`, :meth:`all` or ``len(col)``.

    Parameters
    ----------
    data:
        The values; the iterable is copied.
    name:
        The column's name (``""`` for anonymous, derived columns).
    """

    __slots__ = ("name", "_data")

    __hash__ = None  # type: ignore[assignment]

    name: str
    """The column's name (the table column it came from, or ``""``)."""

    def __init__(self, data: Iterable[Any] = (), name: str = "") -> None:
        self.name = name
        self._data: Sequence[Any] = list(data)

    @classmethod
    def _wrap(cls, data: Sequence[Any], name: str = "") -> Column:
        """Build a Column around *data* (a list or a read-only sequence) without copying it (internal)."""
        col = cls.__new__(cls)
        col.name = name
        col._data = data
        return col

    # -- sequence protocol -------------------------------------------------

    def __len__(self) -> int:
        """Number of elements."""
        return len(self._data)

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> Column: ...

    def __getitem__(self, index: int | slice) -> Any:
        """Element at an integer position (negative allowed) or a sliced Column."""
        if isinstance(index, slice):
            return Column._wrap(self._data[index], self.name)
        if isinstance(index, bool):
            raise TypeError("Column indices must be integers or slices, not bool")
        try:
            position = operator.index(index)
        except TypeError:
            raise TypeError(
                f"Column indices must be integers or slices, not {type(index).__name__}"
            ) from None
        try:
            return self._data[position]
        except IndexError:
            raise IndexError(
                f"index {position} is out of range for column {self.name!r} "
                f"of length {len(self._data)}"
            ) from None

    def __iter__(self) -> Iterator[Any]:
        """Iterate over the elements."""
        return iter(self._data)

    def __bool__(self) -> bool:
        """Refuse implicit truth testing (ambiguous for an element-wise type)."""
        raise ValueError(
            "The truth value of a Column is ambiguous; use col.any(), col.all() or len(col)."
        )

    # -- element-wise comparison ------------------------------------------

    def _operand_values(self, other: Any) -> Sequence[Any] | None:
        """The other operand as a same-length list, or None if it is a scalar."""
        if isinstance(other, (Column, list)):
            values = other._data if isinstance(other, Column) else other
            if len(values) != len(self._data):
                raise ValueError(
                    f"cannot combine column {self.name!r} of length {len(self._data)} "
                    f"with a sequence of length {len(values)}"
                )
            return values
        return None

    def _elementwise(self, other: Any, op: Callable[[Any, Any], Any]) -> Column:
        values = self._operand_values(other)
        if values is None:
            return Column._wrap([op(a, other) for a in self._data])
        return Column._wrap([op(a, b) for a, b in zip(self._data, values)])

    @staticmethod
    def _ordering(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], bool]:
        def compare(a: Any, b: Any) -> bool:
            if a is None or b is None:
                return False
            return bool(op(a, b))

        return compare

    def __eq__(self, other: Any) -> Column:  # type: ignore[override]
        """Element-wise ``==``; returns a Column of bools."""
        return self._elementwise(other, lambda a, b: bool(a == b))

    def __ne__(self, other: Any) -> Column:  # type: ignore[override]
        """Element-wise ``!=``; returns a Column of bools."""
        return self._elementwise(other, lambda a, b: bool(a != b))

    def __lt__(self, other: Any) -> Column:
        """Element-wise ``<`` (``False`` where a value is None)."""
        return self._elementwise(other, self._ordering(operator.lt))

    def __le__(self, other: Any) -> Column:
        """Element-wise ``<=`` (``False`` where a value is None)."""
        return self._elementwise(other, self._ordering(operator.le))

    def __gt__(self, other: Any) -> Column:
        """Element-wise ``>`` (``False`` where a value is None)."""
        return self._elementwise(other, self._ordering(operator.gt))

    def __ge__(self, other: Any) -> Column:
        """Element-wise ``>=`` (``False`` where a value is None)."""
        return self._elementwise(other, self._ordering(operator.ge))

    # -- boolean operators -------------------------------------------------

    def __and__(self, other: Any) -> Column:
        """Element-wise logical AND of truth values."""
        return self._elementwise(other, lambda a, b: bool(a) and bool(b))

    def __rand__(self, other: Any) -> Column:
        """Element-wise logical AND with the Column on the right."""
        return self.__and__(other)

    def __or__(self, other: Any) -> Column:
        """Element-wise logical OR of truth values."""
        return self._elementwise(other, lambda a, b: bool(a) or bool(b))

    def __ror__(self, other: Any) -> Column:
        """Element-wise logical OR with the Column on the right."""
        return self.__or__(other)

    def __invert__(self) -> Column:
        """Element-wise logical NOT of truth values."""
        return Column._wrap([not bool(a) for a in self._data])

    # -- conversions and reductions -----------------------------------------

    def to_list(self) -> list[Any]:
        """Return the values as a new list."""
        return list(self._data)

    def apply(self, fn: Callable[[Any], Any], skip_undefined: bool = True) -> Column:
        """Return a new Column with *fn* applied to each element.

        Parameters
        ----------
        fn:
            Function called with one element.
        skip_undefined:
            As in GraphLab's ``SArray.apply``: when True (the default),
            ``None`` elements are not passed to *fn* and stay ``None``.
        """
        if skip_undefined:
            return Column._wrap([None if v is None else fn(v) for v in self._data], self.name)
        return Column._wrap([fn(v) for v in self._data], self.name)

    def unique(self) -> Column:
        """Return the distinct values, in order of first appearance."""
        seen_hashable: set[Any] = set()
        seen_other: list[Any] = []
        out: list[Any] = []
        for value in self._data:
            try:
                if value in seen_hashable:
                    continue
                seen_hashable.add(value)
            except TypeError:  # unhashable value: linear search
                if any(value == other for other in seen_other):
                    continue
                seen_other.append(value)
            out.append(value)
        return Column._wrap(out, self.name)

    def sum(self) -> Any:
        """Sum of the non-None values (``0`` if there are none)."""
        total: Any = 0
        for value in self._data:
            if value is not None:
                total = total + value
        return total

    def mean(self) -> float | None:
        """Arithmetic mean of the non-None values, or ``None`` if there are none."""
        values = [v for v in self._data if v is not None]
        if not values:
            return None
        return float(sum(values)) / len(values)

    def any(self) -> bool:
        """True if any element is truthy."""
        return any(self._data)

    def all(self) -> bool:
        """True if every element is truthy (True for an empty Column)."""
        return all(self._data)

    def __repr__(self) -> str:
        """List-like representation, e.g. ``[40, None, 10]`` (long columns elided)."""
        if len(self._data) <= _COLUMN_REPR_ITEMS:
            return repr(list(self._data))
        shown = ", ".join(repr(v) for v in self._data[:_COLUMN_REPR_ITEMS])
        return f"[{shown}, ...]"

    __str__ = __repr__


# ---------------------------------------------------------------------------
# Table
# ---------------------------------------------------------------------------


class Table:
    """An ordered collection of equally long named columns (like ``SFrame``).

    Parameters
    ----------
    columns:
        Mapping from column name to the column's values, in column order.
        All columns must have the same length.  The values are copied.

    Raises
    ------
    TypeError
        If a column name is not a string or a column is a plain string.
    ValueError
        If the columns do not all have the same length.

    Examples
    --------
    >>> t = Table({'task_name': ['add-0-0', 'add-0-1'], 'status': ['Completed', 'Failed']})
    >>> t[1]['status']
    'Failed'
    >>> len(t[t['status'] == 'Failed'])
    1
    """

    __hash__ = None  # type: ignore[assignment]

    #: CSS declarations put inline on ``<tr>`` elements by :meth:`to_html`,
    #: keyed by the class the row-class hook returned.
    ROW_CLASS_STYLES: ClassVar[dict[str, str]] = {
        "mapdeploy-failed": "background-color: #fde2e2;",
    }

    def __init__(self, columns: Mapping[str, Sequence[Any]] | None = None) -> None:
        self._names: list[str] = []
        # name -> values: a list, or a read-only sequence that makes each
        # value when it is read (the lazy columns of get_metrics())
        self._data: dict[str, Sequence[Any]] = {}
        self._nrows = 0
        if columns is None:
            return
        if not isinstance(columns, Mapping):
            raise TypeError("a Table is made from a mapping of column name to a sequence of values, "
                            f"not {type(columns).__name__}")
        for name, values in columns.items():
            if not isinstance(name, str):
                raise TypeError(f"column names must be strings, got {name!r}")
            if isinstance(values, (str, bytes)):
                raise TypeError(
                    f"column {name!r} must be a sequence of values, not a {type(values).__name__}"
                )
            self._names.append(name)
            self._data[name] = list(values)
        lengths = {name: len(self._data[name]) for name in self._names}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{name!r} has {n}" for name, n in lengths.items())
            raise ValueError(f"all columns must have the same length, but {detail} rows")
        self._nrows = next(iter(lengths.values()), 0)

    @classmethod
    def _from_parts(cls, names: list[str], data: Mapping[str, Sequence[Any]], nrows: int) -> Table:
        """Build a Table from already-validated parts without copying (internal).

        The columns may be lists or read-only sequences that support
        ``len``, integer and slice indexing (a slice being a new list) and
        iteration; the table keeps them as they are and never changes them.
        """
        table = cls.__new__(cls)
        table._names = names
        table._data = dict(data)
        table._nrows = nrows
        return table

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]], column_names: Sequence[str]) -> Table:
        """Build a Table from row mappings.

        Parameters
        ----------
        rows:
            Iterable of mappings from column name to value.  A key missing
            from a row gives ``None``; keys not in *column_names* are ignored.
        column_names:
            The columns to build, in order.

        Raises
        ------
        ValueError
            If *column_names* contains duplicates.
        """
        names = list(column_names)
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate column names in {names!r}")
        for name in names:
            if not isinstance(name, str):
                raise TypeError(f"column names must be strings, got {name!r}")
        data: dict[str, list[Any]] = {name: [] for name in names}
        nrows = 0
        for row in rows:
            for name in names:
                data[name].append(row.get(name))
            nrows += 1
        return cls._from_parts(names, data, nrows)

    # -- size and schema ----------------------------------------------------

    def __len__(self) -> int:
        """Number of rows."""
        return self._nrows

    def num_rows(self) -> int:
        """Number of rows."""
        return self._nrows

    def num_columns(self) -> int:
        """Number of columns."""
        return len(self._names)

    def column_names(self) -> list[str]:
        """The column names, in order (a new list)."""
        return list(self._names)

    @property
    def shape(self) -> tuple[int, int]:
        """``(number of rows, number of columns)``."""
        return (self._nrows, len(self._names))

    def __contains__(self, name: object) -> bool:
        """True if *name* is a column name (as for ``SFrame``)."""
        return name in self._data

    # -- indexing -----------------------------------------------------------

    def _row(self, position: int) -> dict[str, Any]:
        return {name: self._data[name][position] for name in self._names}

    def _take(self, positions: Sequence[int]) -> Table:
        data = {name: [self._data[name][i] for i in positions] for name in self._names}
        return Table._from_parts(list(self._names), data, len(positions))

    def _slice(self, key: slice) -> Table:
        data = {name: self._data[name][key] for name in self._names}
        nrows = len(range(*key.indices(self._nrows)))
        return Table._from_parts(list(self._names), data, nrows)

    def _missing_column(self, name: str) -> KeyError:
        available = ", ".join(repr(n) for n in self._names) or "(none)"
        return KeyError(f"no column named {name!r}; available columns: {available}")

    def select_columns(self, names: Iterable[str]) -> Table:
        """Return a Table with only the given columns, in the given order.

        Raises
        ------
        KeyError
            If a name is not a column of this table.
        ValueError
            If a name is repeated.
        """
        selected = list(names)
        for name in selected:
            if name not in self._data:
                raise self._missing_column(name)
        if len(set(selected)) != len(selected):
            raise ValueError(f"duplicate column names in {selected!r}")
        data = {name: self._data[name] for name in selected}
        return Table._from_parts(selected, data, self._nrows if selected else 0)

    def _filter(self, mask: Sequence[Any]) -> Table:
        if len(mask) != self._nrows:
            raise ValueError(
                f"boolean mask has length {len(mask)} but the table has {self._nrows} rows"
            )
        return self._take([i for i, keep in enumerate(mask) if keep])

    @overload
    def __getitem__(self, key: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, key: str) -> Column: ...

    @overload
    def __getitem__(self, key: slice | Column | list[Any] | tuple[Any, ...]) -> Table: ...

    def __getitem__(self, key: Any) -> Any:
        """Index the table.

        * ``t[i]`` (int, negative allowed): the row as a dict in column order.
        * ``t['col']``: the column as a :class:`Column`.
        * ``t[mask]`` (Column or list of bools, one per row): the rows where
          the mask is truthy, as a Table.
        * ``t[['a', 'b']]`` (list of column names): those columns, as a Table.
          An empty list selects no columns.
        * ``t[2:5]`` (slice): those rows, as a Table.

        Raises
        ------
        IndexError
            Row index out of range.
        KeyError
            Unknown column name (the message lists the available columns).
        ValueError
            Mask length differs from the number of rows.
        TypeError
            Unsupported key type.
        """
        if isinstance(key, str):
            if key not in self._data:
                raise self._missing_column(key)
            return Column._wrap(self._data[key], key)
        if isinstance(key, slice):
            return self._slice(key)
        if isinstance(key, Column):
            return self._filter(key._data)
        if isinstance(key, (list, tuple)):
            if all(isinstance(item, str) for item in key):
                return self.select_columns(key)
            return self._filter(key)
        if isinstance(key, bool):
            raise TypeError("Table indices must be integers, strings, slices or masks, not bool")
        try:
            position = operator.index(key)
        except TypeError:
            raise TypeError(
                "Table indices must be integers, column names, lists of column names, "
                f"slices or boolean masks, not {type(key).__name__}"
            ) from None
        if not -self._nrows <= position < self._nrows:
            raise IndexError(
                f"row index {position} is out of range for a table with {self._nrows} rows"
            )
        return self._row(position % self._nrows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Iterate over the rows, each a dict in column order."""
        for position in range(self._nrows):
            yield self._row(position)

    def __eq__(self, other: object) -> bool:
        """True if *other* is a Table with the same column names (in order) and values."""
        if not isinstance(other, Table):
            return NotImplemented
        return self._names == other._names and all(
            _same_values(self._data[name], other._data[name]) for name in self._names
        )

    # -- row subsets --------------------------------------------------------

    def head(self, n: int = 10) -> Table:
        """The first *n* rows as a Table."""
        return self._slice(slice(0, max(n, 0)))

    def tail(self, n: int = 10) -> Table:
        """The last *n* rows as a Table."""
        return self._slice(slice(max(self._nrows - max(n, 0), 0), self._nrows))

    def sort(self, column: str | Sequence[str], ascending: bool = True) -> Table:
        """Return a Table sorted by one column (or several, most significant first).

        The sort is stable and ``None`` values always sort last, whichever
        the direction.

        Raises
        ------
        KeyError
            Unknown column name.
        TypeError
            A column holds values that cannot be compared with each other.
        """
        keys = [column] if isinstance(column, str) else list(column)
        for key in keys:
            if key not in self._data:
                raise self._missing_column(key)
        order = list(range(self._nrows))
        for key in reversed(keys):
            # read each value once: a lazy column makes a new object per read
            values = list(self._data[key])
            present = [i for i in order if values[i] is not None]
            missing = [i for i in order if values[i] is None]
            try:
                present.sort(key=values.__getitem__, reverse=not ascending)
            except TypeError as exc:
                raise TypeError(f"cannot sort by column {key!r}: {exc}") from None
            order = present + missing
        return self._take(order)

    # -- conversions --------------------------------------------------------

    def to_records(self) -> list[dict[str, Any]]:
        """The rows as a list of dicts (in column order)."""
        return [self._row(i) for i in range(self._nrows)]

    def to_list(self) -> list[list[Any]]:
        """The rows as a list of lists (values in column order)."""
        if not self._names:
            return [[] for _ in range(self._nrows)]
        return [list(row) for row in zip(*(self._data[name] for name in self._names))]

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the table to a UTF-8 CSV file with a header row.

        ``None`` is written as an empty field; other values with ``str()``.
        """
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(self._names)
            writer.writerows(
                ["" if v is None else v for v in row] for row in self.to_list()
            )

    def to_pandas(self) -> pandas.DataFrame:
        """Convert to a ``pandas.DataFrame`` with the same columns.

        Raises
        ------
        ImportError
            If pandas is not installed.
        """
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError(
                "Table.to_pandas() requires pandas, which is not installed; "
                "install it with `pip install pandas`"
            ) from exc
        return pd.DataFrame(
            {name: list(self._data[name]) for name in self._names}, columns=list(self._names)
        )

    # -- text rendering -----------------------------------------------------

    def _render_blocks(
        self,
        num_rows: int,
        max_columns: int,
        max_column_width: int = _MAX_COLUMN_WIDTH,
        max_row_width: int = _MAX_ROW_WIDTH,
    ) -> list[str]:
        """Boxed text blocks of the first *num_rows* rows and *max_columns* columns.

        Columns are packed greedily, left to right, into blocks whose lines
        are at most *max_row_width* characters (a block always holds at least
        one column).  When columns are left out, a final ``...`` column is
        appended, as GraphLab did.
        """
        names = self._names[:max_columns]
        nrows = min(max(num_rows, 0), self._nrows)
        columns: list[tuple[str, list[str]]] = []
        for name in names:
            cells = [
                _truncate(_one_line(_value_to_str(v)), max_column_width)
                for v in self._data[name][:nrows]
            ]
            columns.append((_truncate(_one_line(name), max_column_width), cells))
        if len(self._names) > len(names):
            columns.append((_SENTINEL_ELLIPSIS, [_SENTINEL_ELLIPSIS] * nrows))
        if not columns:
            return []

        widths = [
            max([_display_width(header)] + [_display_width(c) for c in cells]) + 2
            for header, cells in columns
        ]

        groups: list[list[int]] = []
        current: list[int] = []
        line_width = 1
        for index, width in enumerate(widths):
            if current and line_width + width + 1 > max_row_width:
                groups.append(current)
                current, line_width = [], 1
            current.append(index)
            line_width += width + 1
        groups.append(current)

        blocks: list[str] = []
        for group in groups:
            rule = "+" + "+".join("-" * widths[i] for i in group) + "+"

            def line(texts: list[str], group: list[int] = group) -> str:
                return "|" + "|".join(_center(t, widths[i]) for t, i in zip(texts, group)) + "|"

            lines = [rule, line([columns[i][0] for i in group]), rule]
            for r in range(nrows):
                lines.append(line([columns[i][1][r] for i in group]))
            lines.append(rule)  # an empty table shows the header then two rules, like GraphLab
            blocks.append("\n".join(lines))
        return blocks

    def _footer(self) -> str:
        return f"[{self._nrows} rows x {len(self._names)} columns]"

    def __str__(self) -> str:
        """The first 10 rows in GraphLab SFrame's boxed layout, plus a size footer."""
        blocks = self._render_blocks(_HEAD_ROWS, _MAX_COLUMNS)
        footer = self._footer()
        if self._nrows > _HEAD_ROWS:
            footer += "\n" + _HEAD_NOTE
        return "\n".join(blocks + [footer])

    __repr__ = __str__

    def print_rows(
        self,
        num_rows: int = 10,
        num_columns: int = 40,
        max_column_width: int = 30,
        max_row_width: int = 80,
        output_file: IO[str] | None = None,
    ) -> None:
        """Print the first *num_rows* rows and *num_columns* columns.

        Uses the same layout as ``str(table)``.  If columns are left out, a
        ``...`` column is shown and a note after the footer says how many.

        Parameters
        ----------
        num_rows:
            Number of rows to print.
        num_columns:
            Number of columns to print (at least 1).
        max_column_width:
            Longer cells are cut to ``max_column_width - 4`` characters + ``...``.
        max_row_width:
            Columns are wrapped into blocks no wider than this.
        output_file:
            Text stream to print to (default ``sys.stdout``).
        """
        num_columns = max(num_columns, 1)
        blocks = self._render_blocks(num_rows, num_columns, max_column_width, max_row_width)
        footer = self._footer()
        hidden = len(self._names) - num_columns
        if hidden > 0:
            noun = "column is" if hidden == 1 else "columns are"
            footer += (
                f"\nNote: {hidden} {noun} not shown; "
                f"use print_rows(num_columns={len(self._names)}) to print all columns."
            )
        print("\n".join(blocks + [footer]), file=output_file if output_file is not None else sys.stdout)

    # -- HTML rendering -----------------------------------------------------

    def to_html(
        self,
        max_rows: int | None = None,
        row_class: Callable[[Mapping[str, Any]], str | None] | None = failed_row_class,
    ) -> str:
        """Render the table as an HTML ``<table>`` (cell text is HTML-escaped).

        Parameters
        ----------
        max_rows:
            Show only the first *max_rows* rows (all rows when None).
        row_class:
            Hook called with each row (a dict); a returned string becomes the
            ``<tr>``'s CSS class, and if that class is a key of
            :attr:`ROW_CLASS_STYLES` its declarations are added as an inline
            ``style``.  The default, :func:`failed_row_class`, marks rows
            whose ``status`` is ``'Failed'`` with class ``mapdeploy-failed``
            and a light red background.  Pass None for no row classes.
        """
        nrows = self._nrows if max_rows is None else min(max(max_rows, 0), self._nrows)
        out = ['<table class="mapdeploy-table" border="1">', "<thead>", "<tr>"]
        out.extend(f"<th>{html.escape(name)}</th>" for name in self._names)
        out += ["</tr>", "</thead>", "<tbody>"]
        for position in range(nrows):
            row = self._row(position)
            attrs = ""
            css_class = row_class(row) if row_class is not None else None
            if css_class:
                attrs = f' class="{html.escape(css_class)}"'
                style = self.ROW_CLASS_STYLES.get(css_class)
                if style:
                    attrs += f' style="{html.escape(style)}"'
            cells = "".join(
                "<td>" + html.escape(_value_to_str(value)).replace("\n", "<br/>") + "</td>"
                for value in row.values()
            )
            out.append(f"<tr{attrs}>{cells}</tr>")
        out += ["</tbody>", "</table>"]
        return "\n".join(out)

    def _repr_html_(self) -> str:
        """Jupyter rich display: the first 10 rows as HTML plus the size footer."""
        footer = html.escape(self._footer())
        if self._nrows > _HEAD_ROWS:
            footer += "<br/>" + html.escape(_HEAD_NOTE).replace("\n", "<br/>")
        return (
            '<div style="max-height:1000px;max-width:1500px;overflow:auto;">\n'
            + self.to_html(max_rows=_HEAD_ROWS)
            + f"\n<p>{footer}</p>\n</div>"
        )
