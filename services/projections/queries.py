"""Reading the projection store: a ticket, its timeline, a unit's queue, rankings, events in a range."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Engine

from services.common.batch_state import table_of

from .domain import KIND, Ranked, as_utc, rank
from .models import METRIC_COUNTERS, ProjTask, ProjTicket, ProjTicketMetric, ProjTimelineEntry

TICKETS, TASKS, TIMELINE, METRICS = (table_of(ProjTicket), table_of(ProjTask), table_of(ProjTimelineEntry),
                                      table_of(ProjTicketMetric))
# What a timeline entry shows (the payload is for refolds, not for people).
ENTRY_COLUMNS = ("event_id", "ticket_id", "time", "kind", "type", "unit", "round", "summary", "source",
                 "correlation_id", "causation_id")


def parse_time(text: str, zone: str) -> datetime:
    """ISO 8601; a time without an offset is in `zone`."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(zone))


@dataclass(frozen=True)
class EventFilter:
    """Which events a supervisor asks for; every part is optional."""

    since: datetime | None = None
    until: datetime | None = None
    types: tuple[str, ...] = ()
    unit: str | None = None
    district: str | None = None
    ticket_id: str | None = None
    limit: int | None = None

    def type_names(self) -> set[str]:
        """Full CloudEvents types for the given names: full types, short names (TaskAssigned) or suffixes."""
        wanted: set[str] = set()
        for given in self.types:
            matches = [t for t, kind in KIND.items()
                       if given == t or given.lower() == kind.lower() or ("." in given and given in t)]
            wanted.update(matches or [given])
        return wanted

    def in_range(self, moment: datetime) -> bool:
        moment = as_utc(moment)
        return (self.since is None or moment >= as_utc(self.since)) and (self.until is None or moment <= as_utc(self.until))


def ticket(engine: Engine, ticket_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(TICKETS).where(TICKETS.c.ticket_id == ticket_id)).mappings().first()
    return dict(row) if row else None


def ticket_tasks(engine: Engine, ticket_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(TASKS).where(TASKS.c.ticket_id == ticket_id).order_by(TASKS.c.task_id)).mappings()
        return [dict(r) for r in rows]


def timeline(engine: Engine, ticket_id: str) -> list[dict[str, Any]]:
    """A ticket's events in story order (time, lifecycle rank, id)."""
    columns = [TIMELINE.c[name] for name in ENTRY_COLUMNS]
    query = (select(*columns).where(TIMELINE.c.ticket_id == ticket_id)
             .order_by(TIMELINE.c.time, TIMELINE.c.type_rank, TIMELINE.c.event_id))
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def unit_queue(engine: Engine, unit: str) -> list[dict[str, Any]]:
    """The unit's open tasks, oldest first."""
    query = (select(TASKS).where(and_(TASKS.c.unit == unit, TASKS.c.open.is_(True)))
             .order_by(TASKS.c.assigned_at, TASKS.c.task_id))
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def rankings(engine: Engine, min_n: int, scope: str | None = None) -> list[Ranked]:
    sums = [func.sum(METRICS.c[name]).label(name) for name in METRIC_COUNTERS]
    query = select(METRICS.c.scope, METRICS.c.key, *sums).group_by(METRICS.c.scope, METRICS.c.key)
    if scope:
        query = query.where(METRICS.c.scope == scope)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return rank(((r["scope"], r["key"], {n: r[n] for n in METRIC_COUNTERS}) for r in rows), min_n)


def events(engine: Engine, flt: EventFilter) -> list[dict[str, Any]]:
    """Events of the stored timelines that match the filter, in time order."""
    columns = [TIMELINE.c[name] for name in ENTRY_COLUMNS]
    query = select(*columns, TICKETS.c.district).select_from(
        TIMELINE.outerjoin(TICKETS, TICKETS.c.ticket_id == TIMELINE.c.ticket_id))
    conditions = _conditions(flt)
    if conditions:
        query = query.where(and_(*conditions))
    query = query.order_by(TIMELINE.c.time, TIMELINE.c.type_rank, TIMELINE.c.event_id)
    if flt.limit:
        query = query.limit(flt.limit)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def _conditions(flt: EventFilter) -> Sequence[Any]:
    conditions: list[Any] = []
    if flt.since is not None:
        conditions.append(TIMELINE.c.time >= as_utc(flt.since))
    if flt.until is not None:
        conditions.append(TIMELINE.c.time <= as_utc(flt.until))
    if flt.types:
        conditions.append(TIMELINE.c.type.in_(sorted(flt.type_names())))
    if flt.unit:
        conditions.append(or_(TIMELINE.c.unit == flt.unit, TIMELINE.c.units.like(f"%,{flt.unit},%")))
    if flt.district:
        conditions.append(TICKETS.c.district == flt.district)
    if flt.ticket_id:
        conditions.append(TIMELINE.c.ticket_id == flt.ticket_id)
    return conditions


def ticket_ids_with_unit(engine: Engine, unit: str, until: datetime | None = None, *, open_only: bool = False) -> list[str]:
    """Tickets a unit was ever given a task on (up to a time); with `open_only`, not those closed by then (a closed
    ticket has no open task: an as-of queue need not fold the unit's whole history)."""
    query = select(TIMELINE.c.ticket_id).where(and_(TIMELINE.c.kind == "TaskAssigned", TIMELINE.c.unit == unit))
    if until is not None:
        query = query.where(TIMELINE.c.time <= as_utc(until))
    if open_only:
        closed = select(TIMELINE.c.ticket_id).where(TIMELINE.c.kind == "TicketClosed")
        if until is not None:
            closed = closed.where(TIMELINE.c.time <= as_utc(until))
        query = query.where(TIMELINE.c.ticket_id.not_in(closed))
    with engine.connect() as conn:
        return sorted(set(conn.execute(query.distinct()).scalars()))


def stored_rows(engine: Engine, ticket_ids: Sequence[str] | None, until: datetime | None) -> Iterator[Any]:
    """Timeline rows (with payloads), ticket by ticket, up to a time: input of an as-of fold."""
    base = select(TIMELINE)
    if until is not None:
        base = base.where(TIMELINE.c.time <= as_utc(until))
    chunks = [None] if ticket_ids is None else [list(ticket_ids[i:i + 500]) for i in range(0, len(ticket_ids), 500)]
    with engine.connect() as conn:
        for chunk in chunks:
            query = base if chunk is None else base.where(TIMELINE.c.ticket_id.in_(chunk))
            yield from conn.execute(query.order_by(TIMELINE.c.ticket_id)).mappings().yield_per(5000)


def ticket_ids_active_after(engine: Engine, at: datetime) -> list[str]:
    """Tickets with an event after `at`: the ones an as-of fold must replay (the others stand as stored)."""
    query = select(TICKETS.c.ticket_id).where(TICKETS.c.last_event_at > as_utc(at))
    with engine.connect() as conn:
        return list(conn.execute(query).scalars())


def settled_by(engine: Engine, at: datetime, scope: str | None = None) -> tuple[dict[str, int], list[tuple[str, str, dict[str, int]]]]:
    """Of the tickets whose every event is by `at`: how many stand in each state, and their metric sums per
    (scope, key). The sums are everybody's (read off the covering index in key order) less those of the tickets with
    later events (usually the fewer): a join from the settled tickets would visit most metric rows one by one."""
    states_query = (select(TICKETS.c.status, func.count()).where(TICKETS.c.last_event_at <= as_utc(at))
                    .group_by(TICKETS.c.status))
    with engine.connect() as conn:
        states = {str(status): int(n) for status, n in conn.execute(states_query).all()}
        total = _metric_sums(conn, scope, None)
        later = _metric_sums(conn, scope, TICKETS.c.last_event_at > as_utc(at))
    sums = []
    for (scope_, key), (rows, counts) in sorted(total.items()):
        rows_later, counts_later = later.get((scope_, key), (0, {}))
        if rows > rows_later:  # a key none of whose tickets is settled is not there yet
            sums.append((scope_, key, {n: counts[n] - counts_later.get(n, 0) for n in METRIC_COUNTERS}))
    return states, sums


def _metric_sums(conn: Any, scope: str | None, tickets: Any) -> dict[tuple[str, str], tuple[int, dict[str, int]]]:
    """(rows, counter sums) per (scope, key), over every ticket or those matching `tickets`."""
    sums = [func.sum(METRICS.c[name]).label(name) for name in METRIC_COUNTERS]
    query = select(METRICS.c.scope, METRICS.c.key, func.count().label("rows"), *sums)
    if tickets is not None:
        # IN over the tickets' ids: SQLite then seeks each one's rows; as a join it scanned every metric row
        query = query.where(METRICS.c.ticket_id.in_(select(TICKETS.c.ticket_id).where(tickets)))
    if scope:
        query = query.where(METRICS.c.scope == scope)
    query = query.group_by(METRICS.c.scope, METRICS.c.key)
    return {(r["scope"], r["key"]): (int(r["rows"]), {n: int(r[n] or 0) for n in METRIC_COUNTERS})
            for r in conn.execute(query).mappings()}


def settled_queue(engine: Engine, unit: str, at: datetime) -> list[dict[str, Any]]:
    """A unit's open tasks on the tickets whose every event is by `at` (as stored: they stood so then)."""
    query = (select(TASKS).select_from(TASKS.join(TICKETS, TICKETS.c.ticket_id == TASKS.c.ticket_id))
             .where(and_(TASKS.c.unit == unit, TASKS.c.open.is_(True), TICKETS.c.last_event_at <= as_utc(at))))
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]
