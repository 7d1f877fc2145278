"""act's working state for one batch: the tickets and tasks its events touch, loaded with one query per
table, changed in memory as plain rows, written with one statement per table and kind of change.

A SELECT per event (and the ORM's flush before each query) cost more than the rules themselves; the
pipeline runs the batch through the spec's `Batched` hooks (around each event when it re-runs one
carefully, inside its savepoint), see services/common/handler.py and batch_state.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import literal_column, select
from sqlalchemy.engine import Connection

from contracts import events as ev
from services.common.batch_state import TableRows, table_of

from .models import ActTicket, Task

_TICKETS = table_of(ActTicket)
_TASKS = table_of(Task)
# A ticket's tasks in creation order (see `_creation_order`), built once: batch_state caches by identity.
_BY_ROWID: tuple[Any, ...] = (_TASKS.c.ticket_id, literal_column("rowid"))
_BY_DISPATCH: tuple[Any, ...] = (_TASKS.c.ticket_id, _TASKS.c.dispatch_no)


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


@dataclass
class ActBatch:
    """The tickets and tasks of a batch (`TableRows` each). A ticket is loaded with all its tasks, so "the open
    tasks of a ticket" is answered in memory."""

    connection: Connection
    tickets: TableRows[TicketRow] = field(init=False)
    tasks: TableRows[TaskRow] = field(init=False)
    tasks_by_ticket: dict[str, list[TaskRow]] = field(default_factory=dict)  # in the order they were created
    missing_tasks: set[str] = field(default_factory=set)  # looked up, not found: not looked up again

    def __post_init__(self) -> None:
        self.tickets = TableRows(self.connection, _TICKETS, TicketRow)
        self.tasks = TableRows(self.connection, _TASKS, TaskRow)

    # ------------------------------------------------------------ reading

    def load(self, ticket_ids: Iterable[str], task_ids: Iterable[str] = ()) -> None:
        """Load these tickets with their tasks, then the tickets of the named tasks not found that way
        (a task is normally reported on its own ticket: this second query is almost always skipped)."""
        self._load_tickets(ticket_ids)
        unknown = [t for t in dict.fromkeys(task_ids) if not self.tasks.known(t) and t not in self.missing_tasks]
        if unknown:
            owners = set()
            for start in range(0, len(unknown), 500):
                chunk = unknown[start:start + 500]
                owners |= set(self.connection.execute(select(_TASKS.c.ticket_id).where(_TASKS.c.task_id.in_(chunk))).scalars())
            self._load_tickets(owners)
            self.missing_tasks.update(t for t in unknown if not self.tasks.known(t))

    def _load_tickets(self, ticket_ids: Iterable[str]) -> None:
        wanted = [t for t in dict.fromkeys(ticket_ids) if not self.tickets.known(t)]
        if wanted:
            self.tickets.load(wanted)
            for task in self.tasks.load(wanted, by="ticket_id", order_by=self._creation_order()):
                self._index(task)

    def _creation_order(self) -> tuple[Any, ...]:
        """A ticket's tasks in the order they were created (a dispatch's co-units as routed, the order its
        results are reported in): SQLite's rowid (read from the ticket_id index as it is, without a sort);
        elsewhere by dispatch, the best we know."""
        return _BY_ROWID if self.connection.dialect.name == "sqlite" else _BY_DISPATCH

    def ticket(self, ticket_id: str) -> TicketRow | None:
        rows = self.tickets.rows  # (read directly: several lookups per event)
        if ticket_id not in rows:
            self._load_tickets([ticket_id])
        return rows[ticket_id]

    def task(self, task_id: str) -> TaskRow | None:
        rows = self.tasks.rows
        if task_id not in rows and task_id not in self.missing_tasks:
            self.load((), [task_id])
        return rows.get(task_id)

    def tasks_of(self, ticket_id: str) -> list[TaskRow]:
        self.ticket(ticket_id)  # loads its tasks
        return self.tasks_by_ticket.get(ticket_id, [])

    # ------------------------------------------------------------ changing

    def add_ticket(self, row: TicketRow) -> None:
        self.ticket(row.ticket_id)  # loaded (absent) first, so its tasks are known too
        self.tickets.add(row)

    def add_task(self, row: TaskRow) -> None:
        self.ticket(row.ticket_id)  # its other tasks first, so tasks_by_ticket stays complete
        self.tasks.add(row)
        self._index(row)
        self.missing_tasks.discard(row.task_id)

    def _index(self, row: TaskRow) -> None:
        self.tasks_by_ticket.setdefault(row.ticket_id, []).append(row)

    # ------------------------------------------------------------ writing

    def write(self) -> None:
        """New rows with one INSERT per table, changed rows with one UPDATE per table (executemany)."""
        self.tickets.write()
        self.tasks.write()
