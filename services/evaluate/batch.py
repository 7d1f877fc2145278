"""A batch's working state of evaluate: the tickets its events touch and the rate increments they add.

The tickets are loaded before the batch with one query (`EvalBatch.load`, services/common/batch_state.py),
changed in memory by the handlers, and written at its end with one INSERT and one UPDATE per table
(`EvalBatch.write`), instead of an ORM object, a lookup and a flush per event.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from services.common.batch_state import TableRows, table_of
from services.common.direct_sql import select_rows

from .models import EvalTask, EvalTicket, EvalTicketLevel, LowestLevelRates, Rates

_TICKETS = table_of(EvalTicket)
_TASKS = table_of(EvalTask)
_RATES = table_of(Rates)
_LEVELS = table_of(EvalTicketLevel)
_LOWEST = table_of(LowestLevelRates)
# Per-batch reads, built once (their IN lists expand at execution) and read on the store's cursor (direct_sql).
_MASTERS_AMONG = (select(_TICKETS.c.master_ticket_id)
                  .where(_TICKETS.c.master_ticket_id.in_(bindparam("keys", expanding=True))).distinct())
_COUNTER_KEYS = {table.name: select(table.c.scope, table.c.key).where(table.c.key.in_(bindparam("keys", expanding=True)))
                 for table in (_RATES, _LOWEST)}
COUNTERS = ("assigned", "signed_for", "response_n", "responded", "callbacks", "resolved", "satisfied", "rated", "reopened")
LOWEST_COUNTERS = ("handled_closed", "solved_lowest", "on_the_spot")


@dataclass(slots=True)
class Ticket:
    """One evaluate_tickets row, as plain attributes (the same columns, order and defaults as EvalTicket)."""

    ticket_id: str
    caller_json: str = "{}"
    district: str | None = None
    grid: str | None = None
    master_ticket_id: str | None = None
    round: int = 0
    units: str = ""
    status: str = "open"


@dataclass(slots=True)
class Task:
    """One evaluate_tasks row, as plain attributes (the same columns, order and defaults as EvalTask)."""

    task_id: str
    unit: str
    assigned: bool = False
    sign_for_due: datetime | None = None
    signed_for_at: datetime | None = None
    breached: bool = False
    judged: bool = False


@dataclass(slots=True)
class TicketLevel:
    """One evaluate_ticket_levels row (the same columns, order and defaults as EvalTicketLevel)."""

    ticket_id: str
    level: str | None = None
    escalated: bool = False
    on_the_spot: bool = False


@dataclass
class EvalBatch:
    """The tickets of a batch's events (`TableRows`), and the rate counters' increments."""

    session: Session
    tickets: TableRows[Ticket] = field(init=False)
    masters_in_store: set[str] = field(default_factory=set)  # loaded tickets that have merged children stored
    rate_increments: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    lowest_increments: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    tasks: TableRows[Task] = field(init=False)
    levels: TableRows[TicketLevel] = field(init=False)

    def __post_init__(self) -> None:
        self.tickets = TableRows(self.session.connection(), _TICKETS, Ticket)
        self.tasks = TableRows(self.session.connection(), _TASKS, Task)
        self.levels = TableRows(self.session.connection(), _LEVELS, TicketLevel)

    @classmethod
    def load(cls, session: Session, ticket_ids: Iterable[str], task_ids: Iterable[str] = ()) -> EvalBatch:
        batch = cls(session)
        batch.load_tickets(ticket_ids)
        batch.tasks.load(task_ids)
        return batch

    # ------------------------------------------------------------ tasks (for the response rate)

    def task(self, task_id: str, unit: str) -> Task:
        """The task's row, made on the first of its assignment, sign-for or breach to be read."""
        return self.tasks.get(task_id) or self.tasks.add(Task(task_id=task_id, unit=unit))

    # ------------------------------------------------------------ tickets

    def load_tickets(self, ticket_ids: Iterable[str]) -> None:
        """Load these tickets (one query per 500) and whether any has merged children in the store."""
        wanted = [t for t in dict.fromkeys(ticket_ids) if not self.tickets.known(t)]
        if not wanted:
            return
        self.tickets.load(wanted)
        self.levels.load([t for t in wanted if not self.levels.known(t)])
        connection = self.session.connection()
        for chunk in _chunks(wanted):
            self.masters_in_store |= {master for (master,) in select_rows(connection, _MASTERS_AMONG, {"keys": chunk})}

    def ticket(self, ticket_id: str) -> Ticket | None:
        rows = self.tickets.rows  # (read directly: several lookups per event)
        if ticket_id not in rows:  # not one of the batch's tickets: load it on its own
            self.load_tickets([ticket_id])
        return rows[ticket_id]

    def add_ticket(self, ticket: Ticket) -> Ticket:
        return self.tickets.add(ticket)

    def may_have_children(self, master_ticket_id: str) -> bool:
        """False when no ticket, stored or in this batch, is merged into this one (the common case,
        answered without a query)."""
        return master_ticket_id in self.masters_in_store or any(
            t is not None and t.master_ticket_id == master_ticket_id for t in self.tickets.rows.values())

    def open_children(self, master_ticket_id: str) -> list[Ticket]:
        """The open tickets merged into this one, in the store's order (it numbers the events that close
        them, so it must not change): the batch's tickets are written first, then selected."""
        self.tickets.write()
        rows = self.session.execute(select(_TICKETS).where(_TICKETS.c.master_ticket_id == master_ticket_id,
                                                           _TICKETS.c.status != "closed"))
        return [self.tickets.rows.get(row.ticket_id) or self.tickets.adopt(tuple(row)) for row in rows]

    # ------------------------------------------------------------ rates

    def count(self, scope: str, key: str, increments: dict[str, int]) -> None:
        totals = self.rate_increments.setdefault((scope, key), dict.fromkeys(COUNTERS, 0))
        for name, by in increments.items():
            totals[name] += by

    def count_lowest(self, scope: str, key: str, increments: dict[str, int]) -> None:
        totals = self.lowest_increments.setdefault((scope, key), dict.fromkeys(LOWEST_COUNTERS, 0))
        for name, by in increments.items():
            totals[name] += by

    def level(self, ticket_id: str) -> TicketLevel | None:
        if not self.levels.known(ticket_id):
            self.levels.load([ticket_id])
        return self.levels.get(ticket_id)

    def set_level(self, ticket_id: str, level: str | None, escalated: bool, on_the_spot: bool) -> None:
        row = self.level(ticket_id) or self.levels.add(TicketLevel(ticket_id=ticket_id))
        row.level, row.escalated, row.on_the_spot = level, escalated, on_the_spot

    def write_rates(self) -> None:
        """Add the increments to the stored counters (one UPDATE per table), and insert the counters seen for
        the first time (one INSERT). Nothing reads a counter while a batch runs, so only increments are kept."""
        self._write_counters(_RATES, COUNTERS, self.rate_increments)
        self._write_counters(_LOWEST, LOWEST_COUNTERS, self.lowest_increments)
        self.rate_increments, self.lowest_increments = {}, {}

    def _write_counters(self, table: Any, counters: tuple[str, ...], increments: dict[tuple[str, str], dict[str, int]]) -> None:
        if not increments:
            return
        stored: set[tuple[str, str]] = set()
        connection = self.session.connection()
        for chunk in _chunks(sorted({key for _, key in increments})):
            stored |= set(select_rows(connection, _COUNTER_KEYS[table.name], {"keys": chunk}))
        old = [{"b_scope": s, "b_key": k, **{f"by_{c}": v for c, v in inc.items()}}
               for (s, k), inc in increments.items() if (s, k) in stored]
        new = [{"scope": s, "key": k, **inc} for (s, k), inc in increments.items() if (s, k) not in stored]
        if old:
            self.session.execute(update(table).where(table.c.scope == bindparam("b_scope"), table.c.key == bindparam("b_key"))
                                 .values({c: table.c[c] + bindparam(f"by_{c}") for c in counters}), old)
        if new:
            self.session.execute(insert(table), new)

    def write(self) -> None:
        self.tickets.write()
        self.tasks.write()
        self.levels.write()
        self.write_rates()


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
