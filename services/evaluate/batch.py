"""A batch's working state of evaluate: the tickets its events touch and the rate increments they add.

The tickets are loaded before the batch with one query (`EvalBatch.load`), changed in memory by the
handlers, and written at its end with one INSERT and one UPDATE per table (`EvalBatch.write`),
instead of an ORM object, a lookup and a flush per event.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from .models import EvalTask, EvalTicket, Rates

_TICKETS = EvalTicket.__table__
_TASKS = EvalTask.__table__
_RATES = Rates.__table__
COUNTERS = ("assigned", "signed_for", "response_n", "responded", "callbacks", "resolved", "satisfied", "rated", "reopened")


@dataclass(slots=True)
class Ticket:
    """One evaluate_tickets row, as plain attributes (the same names and defaults as EvalTicket)."""

    ticket_id: str
    caller_json: str = "{}"
    district: str | None = None
    grid: str | None = None
    master_ticket_id: str | None = None
    round: int = 0
    units: str = ""
    status: str = "open"

    def values(self, *, key: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _TICKET_COLUMNS if key or name != "ticket_id"}

    def as_row(self) -> tuple[Any, ...]:
        """Its values, to tell whether it changed since it was last written (cheaper than
        dataclasses.astuple, which deep-copies every value)."""
        return tuple(getattr(self, name) for name in _TICKET_COLUMNS)


_TICKET_COLUMNS = tuple(f.name for f in fields(Ticket))


@dataclass(slots=True)
class Task:
    """One evaluate_tasks row."""

    task_id: str
    unit: str
    sign_for_due: datetime | None = None
    judged: bool = False

    def values(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "unit": self.unit, "sign_for_due": self.sign_for_due, "judged": self.judged}


@dataclass
class EvalBatch:
    """The tickets of a batch's events as plain objects, and the rate counters' increments."""

    tickets: dict[str, Ticket | None] = field(default_factory=dict)  # None: no such ticket (yet)
    stored: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # ticket id -> its row as last written
    new_tickets: list[Ticket] = field(default_factory=list)           # in creation order, the store's row order
    masters_in_store: set[str] = field(default_factory=set)           # loaded tickets that have merged children stored
    rate_increments: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    tasks: dict[str, Task | None] = field(default_factory=dict)     # None: no such task (yet)
    new_tasks: dict[str, Task] = field(default_factory=dict)
    judged_tasks: set[str] = field(default_factory=set)               # stored tasks judged in this batch

    @classmethod
    def load(cls, session: Session, ticket_ids: Iterable[str], task_ids: Iterable[str] = ()) -> EvalBatch:
        batch = cls()
        batch.load_tickets(session, ticket_ids)
        batch.load_tasks(session, task_ids)
        return batch

    # ------------------------------------------------------------ tasks (for the response rate)

    def load_tasks(self, session: Session, task_ids: Iterable[str]) -> None:
        wanted = [t for t in dict.fromkeys(task_ids) if t not in self.tasks]
        for chunk in _chunks(wanted):
            self.tasks.update(dict.fromkeys(chunk))
            for row in session.execute(select(_TASKS).where(_TASKS.c.task_id.in_(chunk))):
                self.tasks[row.task_id] = Task(**row._mapping)

    def task(self, session: Session, task_id: str) -> Task | None:
        if task_id not in self.tasks:
            self.load_tasks(session, [task_id])
        return self.tasks[task_id]

    def add_task(self, task: Task) -> None:
        if self.tasks.get(task.task_id) is None:
            self.tasks[task.task_id] = task
            self.new_tasks[task.task_id] = task

    def judge(self, task: Task) -> None:
        task.judged = True
        if task.task_id not in self.new_tasks:  # a new one is inserted judged
            self.judged_tasks.add(task.task_id)

    def write_tasks(self, session: Session) -> None:
        if self.new_tasks:
            session.execute(insert(_TASKS), [t.values() for t in self.new_tasks.values()])
            self.new_tasks = {}
        if self.judged_tasks:
            session.execute(update(_TASKS).where(_TASKS.c.task_id == bindparam("b_task_id")).values(judged=True),
                            [{"b_task_id": task_id} for task_id in sorted(self.judged_tasks)])
            self.judged_tasks = set()

    # ------------------------------------------------------------ tickets

    def load_tickets(self, session: Session, ticket_ids: Iterable[str]) -> None:
        """Load these tickets (one query per 500) and whether any has merged children in the store."""
        wanted = [t for t in dict.fromkeys(ticket_ids) if t not in self.tickets]
        for chunk in _chunks(wanted):
            self.tickets.update(dict.fromkeys(chunk))
            for row in session.execute(select(_TICKETS).where(_TICKETS.c.ticket_id.in_(chunk))):
                self._adopt(Ticket(**row._mapping))
            self.masters_in_store |= set(session.execute(
                select(_TICKETS.c.master_ticket_id).where(_TICKETS.c.master_ticket_id.in_(chunk)).distinct()).scalars())

    def ticket(self, session: Session, ticket_id: str) -> Ticket | None:
        if ticket_id not in self.tickets:  # not one of the batch's tickets: load it on its own
            self.load_tickets(session, [ticket_id])
        return self.tickets[ticket_id]

    def add_ticket(self, ticket: Ticket) -> Ticket:
        self.tickets[ticket.ticket_id] = ticket
        self.new_tickets.append(ticket)
        return ticket

    def may_have_children(self, master_ticket_id: str) -> bool:
        """False when no ticket, stored or in this batch, is merged into this one (the common case,
        answered without a query)."""
        return master_ticket_id in self.masters_in_store or any(
            t is not None and t.master_ticket_id == master_ticket_id for t in self.tickets.values())

    def open_children(self, session: Session, master_ticket_id: str) -> list[Ticket]:
        """The open tickets merged into this one, in the store's order (it numbers the events that close
        them, so it must not change): the batch's tickets are written first, then selected."""
        self.write_tickets(session)
        rows = session.execute(select(_TICKETS).where(_TICKETS.c.master_ticket_id == master_ticket_id,
                                                      _TICKETS.c.status != "closed"))
        children = []
        for row in rows:
            ticket = self.tickets.get(row.ticket_id) or self._adopt(Ticket(**row._mapping))
            children.append(ticket)
        return children

    def _adopt(self, ticket: Ticket) -> Ticket:
        self.tickets[ticket.ticket_id] = ticket
        self.stored[ticket.ticket_id] = ticket.as_row()
        return ticket

    def write_tickets(self, session: Session) -> None:
        """Insert the new tickets and update the changed ones; afterwards they count as stored."""
        if self.new_tickets:
            session.execute(insert(_TICKETS), [t.values() for t in self.new_tickets])
            for t in self.new_tickets:
                self.stored[t.ticket_id] = t.as_row()
            self.new_tickets = []
        changed = [t for t in self.tickets.values() if t is not None and t.as_row() != self.stored[t.ticket_id]]
        if changed:
            # The SET clause is every column of the parameters: all but the key, which the WHERE names.
            session.execute(update(_TICKETS).where(_TICKETS.c.ticket_id == bindparam("b_ticket_id")),
                            [{"b_ticket_id": t.ticket_id, **t.values(key=False)} for t in changed])
            for t in changed:
                self.stored[t.ticket_id] = t.as_row()

    # ------------------------------------------------------------ rates

    def count(self, scope: str, key: str, increments: dict[str, int]) -> None:
        totals = self.rate_increments.setdefault((scope, key), dict.fromkeys(COUNTERS, 0))
        for name, by in increments.items():
            totals[name] += by

    def write_rates(self, session: Session) -> None:
        """Add the increments to the stored counters (one UPDATE), and insert the counters seen for the
        first time (one INSERT). Nothing reads a counter while a batch runs, so only increments are kept."""
        if not self.rate_increments:
            return
        stored: set[tuple[str, str]] = set()
        for chunk in _chunks(sorted({key for _, key in self.rate_increments})):
            stored |= {(r.scope, r.key) for r in session.execute(select(_RATES.c.scope, _RATES.c.key)
                                                                  .where(_RATES.c.key.in_(chunk)))}
        old = [{"b_scope": s, "b_key": k, **{f"by_{c}": v for c, v in inc.items()}}
               for (s, k), inc in self.rate_increments.items() if (s, k) in stored]
        new = [{"scope": s, "key": k, **inc} for (s, k), inc in self.rate_increments.items() if (s, k) not in stored]
        if old:
            session.execute(update(_RATES).where(_RATES.c.scope == bindparam("b_scope"), _RATES.c.key == bindparam("b_key"))
                            .values({c: _RATES.c[c] + bindparam(f"by_{c}") for c in COUNTERS}), old)
        if new:
            session.execute(insert(_RATES), new)
        self.rate_increments = {}

    def write(self, session: Session) -> None:
        self.write_tickets(session)
        self.write_tasks(session)
        self.write_rates(session)


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
