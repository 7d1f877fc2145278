"""The SLA service's store: timers with what they already fired, tasks, tickets and the facts of every ticket.

A timer's fired marks (reminder fractions, breach, escalation rung) are written in the same transaction
as the events they produce, and those events go through the pipeline's outbox: a crash before the commit
loses both (the next sweep fires them again, with the same derived ids), a crash after it leaves them in
the outbox, published at the next start. So no reminder is lost and none is fired twice.
"""

from __future__ import annotations

from collections import defaultdict, namedtuple
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, bindparam, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, Session, SQLModel, col

from domain.calendar import Extension, Pause
from domain.holders import LedgerFact
from services.common.batch_state import table_of
from services.common.direct_sql import insert_rows, select_rows, update_rows
from services.common.store import make_engine

from . import domain


def make_store_engine(url: str) -> Engine:
    """The service's engine. On SQLite every transaction starts with BEGIN IMMEDIATE, because the consumer and
    the timer sweep run in two threads on one store: without it pysqlite opens a transaction only at the first
    write, so one could read a timer, the other commit a change to it, and the first overwrite that change
    (a completion lost, or a reminder fired twice); and a savepoint released outside a transaction commits,
    so a rolled-back batch would keep half its effects."""
    return make_engine(url, immediate=True)


class UtcDateTime(TypeDecorator):
    """An aware datetime stored as naive UTC (SQLite keeps no zone), read back as aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"refusing to store a naive datetime {value.isoformat()}")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def _utc(*, index: bool = False, nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(UtcDateTime(), index=index, nullable=nullable))


def _json(default: Any) -> Any:
    return Field(default_factory=default, sa_column=Column(JSON, nullable=False))


class SlaTimerRow(SQLModel, table=True):
    """One clock of one task."""

    __tablename__ = "sla_timers"

    task_id: str = Field(primary_key=True, description="Task id (ticket, unit, round).")
    clock: str = Field(primary_key=True, description="sign_for, response or resolution.")
    ticket_id: str = Field(index=True)
    unit: str = Field(index=True)
    level: str | None = Field(default=None, description="The unit's level on the escalation ladder.")
    cause_id: str = Field(description="Id of the TaskAssigned event: the ids of everything this timer fires derive from it.")
    correlation_id: str
    limit_amount: int
    limit_unit: str
    started_at: datetime = _utc(nullable=False)
    pauses: list = _json(list)  # [[start ISO, end ISO or null], ...]
    extensions: list = _json(list)  # [[amount, unit], ...]
    pause_reasons: list = _json(list)
    status: str = Field(default="running", index=True, description="running, done, returned or stopped.")
    finished_at: datetime | None = _utc()
    on_time: bool | None = None
    fired: list = _json(list)  # reminder fractions already sent
    breach_deadline: datetime | None = _utc()
    rung: int = Field(default=0, description="Escalations fired so far.")
    next_due_at: datetime | None = _utc(index=True)
    location: dict = _json(dict)


class SlaTaskRow(SQLModel, table=True):
    """How far up the ladder a task has been escalated (shared by its clocks)."""

    __tablename__ = "sla_tasks"

    task_id: str = Field(primary_key=True)
    ticket_id: str = Field(index=True)
    unit: str
    rung: int = Field(default=0, description="Escalations announced so far.")


class SlaTicketRow(SQLModel, table=True):
    """What the SLA service knows of a ticket beyond its tasks."""

    __tablename__ = "sla_tickets"

    ticket_id: str = Field(primary_key=True)
    level: str | None = Field(default=None, description="Level the ticket was routed at.")
    category: str | None = None
    location: dict = _json(dict)
    pingpong_escalated: bool = False
    closed_at: datetime | None = _utc()


class SlaFactRow(SQLModel, table=True):
    """A ledger fact (one per workflow event of the ticket)."""

    __tablename__ = "sla_ledger_facts"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(unique=True)
    ticket_id: str = Field(index=True)
    at: datetime = _utc(nullable=False)
    kind: str
    task_id: str | None = None
    unit: str | None = None
    role: str | None = None
    round: int | None = None
    waiting: bool = False
    detail: dict = _json(dict)


@dataclass(slots=True)
class TicketRow:
    """A row of sla_tickets as a batch keeps it (services/common/batch_state.py: the same columns, order and
    defaults as `SlaTicketRow`; `location` is replaced, never changed in place)."""

    ticket_id: str
    level: str | None = None
    category: str | None = None
    location: dict[str, Any] = field(default_factory=dict)
    pingpong_escalated: bool = False
    closed_at: datetime | None = None


TICKETS_TABLE = table_of(SlaTicketRow)

TABLES = [table_of(SlaTimerRow), table_of(SlaTaskRow), table_of(SlaTicketRow), table_of(SlaFactRow)]


# ---------------------------------------------------------------------------- rows <-> domain


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def to_timer(row: SlaTimerRow) -> domain.Timer:
    # The ignores below: the store's columns are typed str, the domain's fields Literal (or non-optional);
    # the rows hold only what the domain wrote.
    return domain.Timer(
        task_id=row.task_id, clock=row.clock, ticket_id=row.ticket_id, unit=row.unit, level=row.level,  # type: ignore[arg-type]  # see above
        limit=row.limit_amount, limit_unit=row.limit_unit, started_at=row.started_at,  # type: ignore[arg-type]  # see above
        pauses=tuple(Pause(_dt(s), _dt(e)) for s, e in row.pauses),  # type: ignore[arg-type]  # see above
        extensions=tuple(Extension(a, u) for a, u in row.extensions), pause_reasons=frozenset(row.pause_reasons),
        status=row.status, finished_at=row.finished_at, on_time=row.on_time, fired=tuple(row.fired),  # type: ignore[arg-type]  # see above
        breach_deadline=row.breach_deadline, rung=row.rung,
    )


def timer_state(timer: domain.Timer, next_due: datetime | None) -> dict[str, Any]:
    """The columns a clock's replays and firings change."""
    return {"pauses": [[_iso(p.started_at), _iso(p.ended_at)] for p in timer.pauses],
            "extensions": [[e.amount, e.unit] for e in timer.extensions],
            "pause_reasons": sorted(timer.pause_reasons), "status": timer.status, "finished_at": timer.finished_at,
            "on_time": timer.on_time, "fired": list(timer.fired), "breach_deadline": timer.breach_deadline,
            "rung": timer.rung, "next_due_at": next_due}


def store_timer(row: SlaTimerRow, timer: domain.Timer, next_due: datetime | None) -> None:
    for column, value in timer_state(timer, next_due).items():
        setattr(row, column, value)


def to_fact(row: SlaFactRow) -> LedgerFact:
    return LedgerFact(row.at, row.kind, row.task_id, row.unit, row.role, row.round, row.waiting,  # type: ignore[arg-type]  # str columns, Literal fields: as written by the domain
                      dict(row.detail or {}))


# ---------------------------------------------------------------------------- read side (CLI, reports)


_FACTS = table_of(SlaFactRow)


def fact_values(event_id: str, ticket_id: str, fact: LedgerFact) -> dict[str, Any]:
    return {"event_id": event_id, "ticket_id": ticket_id, "at": fact.at, "kind": fact.kind, "task_id": fact.task_id,
            "unit": fact.unit, "role": fact.role, "round": fact.round, "waiting": fact.waiting, "detail": fact.detail}


_FACT_COLUMNS = (_FACTS.c.ticket_id, _FACTS.c.at, _FACTS.c.kind, _FACTS.c.task_id, _FACTS.c.unit, _FACTS.c.role,
                 _FACTS.c.round, _FACTS.c.waiting, _FACTS.c.detail)


_FACTS_OF_TICKETS = (select(*_FACT_COLUMNS).where(_FACTS.c.ticket_id.in_(bindparam("tickets", expanding=True)))
                     .order_by(_FACTS.c.id))  # built once, as every per-batch statement here (batch_state.rows_where_in)


def ticket_facts(session: Session, ticket_id: str) -> list[LedgerFact]:
    """A ticket's facts in the order they were recorded (`LedgerFact`s, read without ORM objects)."""
    return facts_of_tickets(session, [ticket_id]).get(ticket_id, [])


def facts_of_tickets(session: Session, ticket_ids: Sequence[str]) -> dict[str, list[LedgerFact]]:
    """Every fact of these tickets, per ticket in the order they were recorded, with one query per 500 tickets."""
    facts: dict[str, list[LedgerFact]] = defaultdict(list)
    connection = session.connection()
    for chunk in _chunks(ticket_ids):
        for ticket, at, kind, task, unit, role, rnd, waiting, detail in select_rows(connection, _FACTS_OF_TICKETS, {"tickets": chunk}):
            facts[ticket].append(LedgerFact(at, kind, task, unit, role, rnd, bool(waiting), dict(detail or {})))
    return facts


_TIMERS = table_of(SlaTimerRow)
_TIMERS_OF_TICKETS = select(_TIMERS).where(_TIMERS.c.ticket_id.in_(bindparam("tickets", expanding=True))).with_for_update()


# A timer row as `timer_rows_of_tickets` reads it: the columns by name, as the ORM's rows have them.
TimerValues = namedtuple("TimerValues", [c.key for c in _TIMERS.columns])  # type: ignore[misc]  # names known at run time


def timer_rows_of_tickets(session: Session, ticket_ids: Sequence[str]) -> list[Any]:
    """The timer rows of these tickets (`TimerValues`: attribute access like the ORM's, without its cost). Locked
    on PostgreSQL, so a concurrent sweep cannot write a timer between our read and our write."""
    rows: list[Any] = []
    connection = session.connection()
    for chunk in _chunks(ticket_ids):
        rows += map(TimerValues._make, select_rows(connection, _TIMERS_OF_TICKETS, {"tickets": chunk}))
    return rows


def new_timer_values(timer: domain.Timer, next_due: datetime | None, *, cause_id: str, correlation_id: str,
                     location: dict) -> dict[str, Any]:
    return {"task_id": timer.task_id, "clock": timer.clock, "ticket_id": timer.ticket_id, "unit": timer.unit,
            "level": timer.level, "cause_id": cause_id, "correlation_id": correlation_id, "limit_amount": timer.limit,
            "limit_unit": timer.limit_unit, "started_at": timer.started_at, "location": location,
            **timer_state(timer, next_due)}


def write_batch(session: Session, *, facts: list[dict[str, Any]], tasks: list[dict[str, Any]],
                new_timers: list[dict[str, Any]], changed_timers: list[tuple[domain.Timer, datetime | None]]) -> None:
    """A batch's writes, one executemany statement per table."""
    connection = session.connection()
    insert_rows(connection, _FACTS, facts)
    insert_rows(connection, table_of(SlaTaskRow), tasks)
    insert_rows(connection, _TIMERS, new_timers)
    if changed_timers:
        update_rows(connection, _TIMERS, [{"task_id": t.task_id, "clock": t.clock, **timer_state(t, due)}
                                          for t, due in changed_timers], ("task_id", "clock"))


def _chunks(items: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def all_timers(session: Session) -> list[domain.Timer]:
    return [to_timer(r) for r in session.execute(select(SlaTimerRow)).scalars().all()]


def returns_and_tickets(session: Session) -> tuple[list[tuple[str, bool]], dict[str, int]]:
    """(unit, overruled) per return, and the number of distinct tickets each unit was given."""
    # The assignments too: only a return by the unit a task was assigned to counts (domain.genuine_returns).
    kinds = ("assigned", "returned", "return-rejected", "consultation-closed")
    rows = session.execute(select(SlaFactRow).where(col(SlaFactRow.kind).in_(kinds)).order_by(col(SlaFactRow.id))).scalars().all()
    by_ticket: dict[str, list[LedgerFact]] = defaultdict(list)
    for row in rows:
        by_ticket[row.ticket_id].append(to_fact(row))
    returns = [verdict for facts in by_ticket.values() for verdict in domain.return_verdicts(facts)]
    counted = session.execute(
        select(col(SlaTimerRow.unit), func.count(func.distinct(SlaTimerRow.ticket_id)))
        .where(col(SlaTimerRow.clock) == "resolution").group_by(col(SlaTimerRow.unit))).all()
    return returns, {unit: n for unit, n in counted}
