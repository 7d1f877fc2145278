"""act's working state for one batch: the tickets and tasks its events touch, loaded with one query per
table, changed in memory as plain rows, written with one statement per table and kind of change.

A SELECT per event (and the ORM's flush before each query) cost more than the rules themselves; the
pipeline calls `start_batch`/`finish_batch` around a batch (around each event when it re-runs one
carefully, inside its savepoint), see `EventPipeline._start_batch`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Any

from sqlalchemy import Table, bindparam, insert, literal_column, select, update
from sqlalchemy.engine import Connection

from contracts import events as ev

from .models import ActTicket, Task

_TICKETS: Table = ActTicket.__table__  # type: ignore[assignment]
_TASKS: Table = Task.__table__  # type: ignore[assignment]


@dataclass(slots=True)
class TicketRow:
    """A row of act_tickets (same columns and defaults as `ActTicket`)."""

    ticket_id: str
    classified_json: str
    round: int = 1
    dispatches: int = 0
    returns: int = 0
    excluded: str = ""
    lead: str | None = None
    co_units: str = ""
    final: bool = False
    status: str = "waiting"
    # The parsed `classified_json`, kept with the text it was parsed from: parsed once per batch, not per event.
    _classified: tuple[str, ev.TicketClassified] | None = field(default=None, repr=False, compare=False)

    def classified(self) -> ev.TicketClassified:
        if self._classified is None or self._classified[0] != self.classified_json:
            self._classified = (self.classified_json, ev.TicketClassified.model_validate_json(self.classified_json))
        return self._classified[1]


@dataclass(slots=True)
class TaskRow:
    """A row of act_tasks (same columns and defaults as `Task`)."""

    task_id: str
    ticket_id: str
    unit: str
    role: str
    round: int
    dispatch_no: int
    final: bool = False
    status: str = "assigned"
    extensions: int = 0
    result: str | None = None


def _columns(row_class: type, table: Table) -> tuple[str, ...]:
    """The table's columns, checked against the row class: a column added to the model must be added here too."""
    names = tuple(c.name for c in table.columns)
    if names != tuple(f.name for f in fields(row_class) if not f.name.startswith("_")):
        raise TypeError(f"{row_class.__name__} does not match the columns of {table.name}: {names}")
    return names


_TICKET_COLUMNS = _columns(TicketRow, _TICKETS)
_TASK_COLUMNS = _columns(TaskRow, _TASKS)


@dataclass
class ActBatch:
    """The tickets and tasks of a batch. A ticket is loaded with all its tasks, so "the open tasks of a
    ticket" is answered in memory; rows loaded are remembered as they were, to update only what changed."""

    connection: Connection
    tickets: dict[str, TicketRow | None] = field(default_factory=dict)  # None: no such ticket (yet)
    tasks: dict[str, TaskRow] = field(default_factory=dict)
    tasks_by_ticket: dict[str, list[TaskRow]] = field(default_factory=dict)  # in the order they were created
    missing_tasks: set[str] = field(default_factory=set)  # looked up, not found: not looked up again
    stored_tickets: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    stored_tasks: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    new_tickets: list[TicketRow] = field(default_factory=list)
    new_tasks: list[TaskRow] = field(default_factory=list)

    # ------------------------------------------------------------ reading

    def load(self, ticket_ids: Iterable[str], task_ids: Iterable[str] = ()) -> None:
        """Load these tickets with their tasks, then the tickets of the named tasks not found that way
        (a task is normally reported on its own ticket: this second query is almost always skipped)."""
        self._load_tickets(ticket_ids)
        unknown = [t for t in dict.fromkeys(task_ids) if t not in self.tasks and t not in self.missing_tasks]
        if unknown:
            owners = set()
            for chunk in _chunks(unknown):
                owners |= set(self.connection.execute(select(_TASKS.c.ticket_id).where(_TASKS.c.task_id.in_(chunk))).scalars())
            self._load_tickets(owners)
            self.missing_tasks.update(t for t in unknown if t not in self.tasks)

    def _load_tickets(self, ticket_ids: Iterable[str]) -> None:
        wanted = [t for t in dict.fromkeys(ticket_ids) if t not in self.tickets]
        for chunk in _chunks(wanted):
            self.tickets.update(dict.fromkeys(chunk))
            for values in self.connection.execute(select(_TICKETS).where(_TICKETS.c.ticket_id.in_(chunk))):
                self.tickets[values.ticket_id] = TicketRow(*values)
                self.stored_tickets[values.ticket_id] = tuple(values)
            query = select(_TASKS).where(_TASKS.c.ticket_id.in_(chunk)).order_by(*self._creation_order())
            for values in self.connection.execute(query):
                self._index(TaskRow(*values))
                self.stored_tasks[values.task_id] = tuple(values)

    def _creation_order(self) -> list[Any]:
        """A ticket's tasks in the order they were created (a dispatch's co-units as routed, the order its
        results are reported in): SQLite's rowid (read from the ticket_id index as it is, without a sort);
        elsewhere by dispatch, the best we know."""
        last = literal_column("rowid") if self.connection.dialect.name == "sqlite" else _TASKS.c.dispatch_no
        return [_TASKS.c.ticket_id, last]

    def ticket(self, ticket_id: str) -> TicketRow | None:
        if ticket_id not in self.tickets:
            self._load_tickets([ticket_id])
        return self.tickets[ticket_id]

    def task(self, task_id: str) -> TaskRow | None:
        if task_id not in self.tasks and task_id not in self.missing_tasks:
            self.load((), [task_id])
        return self.tasks.get(task_id)

    def tasks_of(self, ticket_id: str) -> list[TaskRow]:
        self.ticket(ticket_id)  # loads its tasks
        return self.tasks_by_ticket.get(ticket_id, [])

    # ------------------------------------------------------------ changing

    def add_ticket(self, row: TicketRow) -> None:
        self.ticket(row.ticket_id)  # loaded (absent) first, so its tasks are known too
        self.tickets[row.ticket_id] = row
        self.new_tickets.append(row)

    def add_task(self, row: TaskRow) -> None:
        self.ticket(row.ticket_id)  # its other tasks first, so tasks_by_ticket stays complete
        self._index(row)
        self.missing_tasks.discard(row.task_id)
        self.new_tasks.append(row)

    def _index(self, row: TaskRow) -> None:
        self.tasks[row.task_id] = row
        self.tasks_by_ticket.setdefault(row.ticket_id, []).append(row)

    # ------------------------------------------------------------ writing

    def write(self) -> None:
        """New rows with one INSERT per table, changed rows with one UPDATE per table (executemany)."""
        self._insert(_TICKETS, _TICKET_COLUMNS, self.new_tickets)
        self._insert(_TASKS, _TASK_COLUMNS, self.new_tasks)
        self._update(_TICKETS, _TICKET_COLUMNS, self.tickets.values(), self.stored_tickets)
        self._update(_TASKS, _TASK_COLUMNS, self.tasks.values(), self.stored_tasks)

    def _insert(self, table: Table, columns: tuple[str, ...], rows: list[Any]) -> None:
        if rows:
            values_of = attrgetter(*columns)
            self.connection.execute(insert(table), [dict(zip(columns, values_of(row), strict=True)) for row in rows])

    def _update(self, table: Table, columns: tuple[str, ...], rows: Iterable[Any], stored: dict[str, tuple[Any, ...]]) -> None:
        """Rows loaded at the start of the batch whose values changed since (rows added are inserted)."""
        values_of = attrgetter(*columns)
        changed = []
        for row in rows:
            values = values_of(row) if row is not None else None
            if values is not None and values[0] in stored and values != stored[values[0]]:
                changed.append({"_key": values[0], **dict(zip(columns[1:], values[1:], strict=True))})
        if changed:
            # SET comes from the parameters' column names; the key's parameter has its own name, since a
            # column's name is reserved for its SET value.
            self.connection.execute(update(table).where(table.c[columns[0]] == bindparam("_key")), changed)


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
