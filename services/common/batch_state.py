"""A batch's working rows of one table, kept in memory: the one optimisation act, evaluate and sla share.

A SELECT per event (and the ORM's flush before each query) costs more than most services' rules. So a
batched handler (`handler.Batched`) loads the rows of its batch's keys with one query per table
(`TableRows.load`), changes them in memory as plain dataclass rows, and writes them at the end with one
INSERT for the new rows and one UPDATE for the changed ones (`TableRows.write`, executemany).

A row class is a dataclass with the table's columns as its fields, in the table's order (checked), its
first field being the primary key; fields starting with `_` are the row's own (caches) and not stored.
A value that is mutable (a JSON column's dict or list) is replaced, never changed in place: a change is
found by comparing the row's values with those it was loaded with.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import fields
from operator import attrgetter
from typing import Any, Generic, TypeVar

from sqlalchemy import BindParameter, Select, Table, bindparam, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapper

from .direct_sql import insert_values, select_rows, update_values

Row = TypeVar("Row")


class TableRows(Generic[Row]):
    """The rows of one table a batch touches, by primary key (None: looked up, no such row)."""

    def __init__(self, connection: Connection, table: Table, row_class: type[Row]) -> None:
        self.connection = connection
        self.table = table
        self.row_class = row_class
        self.columns, self._values_of = _shape(row_class, table)
        self.key = self.columns[0]
        self.rows: dict[Hashable, Row | None] = {}
        self._stored: dict[Hashable, tuple[Any, ...]] = {}  # key -> the row's values as last read or written
        self._new: list[Row] = []  # in creation order: the store's row order

    # ------------------------------------------------------------ reading

    def load(self, keys: Iterable[Hashable], *, by: str | None = None, order_by: Sequence[Any] = ()) -> list[Row]:
        """Load the rows whose `by` column (default: the key) is one of `keys`, with one query per 500 keys,
        and return those not known before (a row already in memory keeps its changes). Loaded by key, a
        key without a row is remembered as absent."""
        statement = rows_where_in(self.table, by or self.key, tuple(order_by))
        wanted = list(dict.fromkeys(keys)) if by else [k for k in dict.fromkeys(keys) if k not in self.rows]
        loaded: list[Row] = []
        for chunk in _chunks(wanted):
            if by is None:
                self.rows.update(dict.fromkeys(chunk))
            for values in select_rows(self.connection, statement, {"keys": chunk}):
                if self.rows.get(values[0]) is None:
                    loaded.append(self.adopt(values))
        return loaded

    def adopt(self, values: tuple[Any, ...]) -> Row:
        """A row read from the store (by this class or a query of the caller's), as a row of the batch."""
        row = self.row_class(*values)
        self.rows[values[0]] = row
        self._stored[values[0]] = values
        return row

    def get(self, key: Hashable) -> Row | None:
        """The row of this key, loaded on its own if it is not one of the batch's."""
        if key not in self.rows:
            self.load([key])
        return self.rows[key]

    def known(self, key: Hashable) -> bool:
        """Whether the key was looked up (or added) already, found or not."""
        return key in self.rows

    def values(self) -> Iterator[Row]:
        return (row for row in self.rows.values() if row is not None)

    # ------------------------------------------------------------ changing

    def add(self, row: Row) -> Row:
        """A new row (inserted by `write`)."""
        self.rows[self._values_of(row)[0]] = row
        self._new.append(row)
        return row

    # ------------------------------------------------------------ writing

    def write(self) -> None:
        """New rows with one INSERT, changed rows with one UPDATE (executemany); afterwards they count as stored."""
        changed = []
        for key, stored in self._stored.items():
            row = self.rows.get(key)
            if row is not None and (values := self._values_of(row)) != stored:
                changed.append(values)
        if self._new:
            new = [self._values_of(row) for row in self._new]
            insert_values(self.connection, self.table, self.columns, new)
            self._stored.update((values[0], values) for values in new)
            self._new = []
        if changed:
            update_values(self.connection, self.table, self.columns, changed, (self.key,))
            self._stored.update((v[0], v) for v in changed)


def rows_where_in(table: Table, column: str, order_by: tuple[Any, ...] = ()) -> Select[Any]:
    """`SELECT * FROM table WHERE column IN :keys [ORDER BY ...]`, built once per shape and reused: building
    the statement per batch cost about a third of a small query's CPU (SQLAlchemy still caches the compiled
    form either way). The `keys` parameter expands to the list given at execution.

    Pass module-level clauses as `order_by`: the cache knows them by identity (SQL expressions overload ==),
    and holds them, so an identity is never reused while cached."""
    shape = (table, column, tuple(map(id, order_by)))
    cached = _WHERE_IN.get(shape)
    if cached is None:
        if len(_WHERE_IN) >= _WHERE_IN_MAX:  # a caller building its clauses per call: stay bounded
            _WHERE_IN.clear()
        keys: BindParameter[list[Any]] = bindparam("keys", expanding=True)
        cached = _WHERE_IN[shape] = (order_by, select(table).where(table.c[column].in_(keys)).order_by(*order_by))
    return cached[1]


_WHERE_IN: dict[tuple[Table, str, tuple[int, ...]], tuple[tuple[Any, ...], Select[Any]]] = {}
_WHERE_IN_MAX = 256


def table_of(model: type) -> Table:
    """A table=True model's table, typed (SQLModel does not declare `__table__` to type checkers)."""
    mapper: Mapper[Any] = sa_inspect(model)
    table = mapper.local_table
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not mapped to a table")
    return table


def columns_of(row_class: type, table: Table) -> tuple[str, ...]:
    """The table's columns, checked against the row class: a column added to the model must be added there too.
    Checked once per pair (the careful pass makes a batch state per event)."""
    names = _CHECKED.get((row_class, table))
    if names is None:
        names = tuple(c.name for c in table.columns)
        if names != tuple(f.name for f in fields(row_class) if not f.name.startswith("_")):
            raise TypeError(f"{row_class.__name__} does not match the columns of {table.name}: {names}")
        _CHECKED[(row_class, table)] = names
    return names


_CHECKED: dict[tuple[type, Table], tuple[str, ...]] = {}


def _shape(row_class: type, table: Table) -> tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]:
    """The columns and their getter, made once per pair."""
    shape = _SHAPES.get((row_class, table))
    if shape is None:
        columns = columns_of(row_class, table)
        shape = _SHAPES[(row_class, table)] = (columns, attrgetter(*columns))
    return shape


_SHAPES: dict[tuple[type, Table], tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]] = {}


def _chunks(items: list[Any], size: int = 500) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
