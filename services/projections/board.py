"""What the supervisors' board asks of the projection store: tickets by state, the alerts feed, the
arbitration queue, the daily trend of the three rates and the grids' open tickets and on-time rates.

Everything is counted in SQL (GROUP BY over indexed columns): the board must answer in well under a
second with 100,000 tickets in the store, so no query here loads rows to count them in Python.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, literal_column, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from domain import rates as rate_rules
from domain.grid_workers import LOWEST_LEVELS
from domain.statuses import TicketStatus

from .domain import as_utc
from .models import METRIC_COUNTERS
from .queries import METRICS, TICKETS, TIMELINE

ALERT_KINDS = ("SlaReminderSent", "SlaBreached", "TicketEscalated")
# The arbitration queue shows the consultation and the parties' positions: these events carry them.
ARBITRATION_KINDS = ("ConsultationRequested", "OpinionGiven", "SupervisorReviewRequested")
# A closed or merged ticket is off everybody's desk (a merged one follows its master).
DONE_STATES = (TicketStatus.closed.value, TicketStatus.merged.value)
ALERT_COLUMNS = ("event_id", "ticket_id", "time", "kind", "unit", "round", "summary")


def state_counts(engine: Engine) -> dict[str, Any]:
    """Tickets per lifecycle state now, with the total, the open ones and the open overdue ones."""
    query = select(TICKETS.c.status, func.count(), func.sum(case((TICKETS.c.overdue.is_(True), 1), else_=0))) \
        .group_by(TICKETS.c.status)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    by_state = {status: int(n) for status, n, _ in rows}
    open_rows = [(n, overdue) for status, n, overdue in rows if status not in DONE_STATES]
    return {"states": by_state, "total": sum(by_state.values()), "open": sum(int(n) for n, _ in open_rows),
            "overdue": sum(int(o or 0) for _, o in open_rows)}


# ---------------------------------------------------------------------------------------------- alerts

@dataclass(frozen=True)
class Cursor:
    """Where a page of alerts ends: the (time, event id) of its last row; the next page starts below it."""

    time: datetime
    event_id: str

    def text(self) -> str:
        return f"{self.time.astimezone(UTC).isoformat()}|{self.event_id}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        moment, sep, event_id = text.partition("|")
        if not sep or not event_id:
            raise ValueError(f"not a cursor: {text!r}")
        parsed = datetime.fromisoformat(moment)
        return cls(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC), event_id)


def alerts(engine: Engine, *, limit: int = 50, before: Cursor | None = None, since: datetime | None = None,
           kinds: Sequence[str] = ALERT_KINDS) -> dict[str, Any]:
    """Reminders, breaches and escalations, newest first, a page at a time (`next` is the cursor of the following
    page, None at the end); `since` keeps only the ones after a time (what the live feed asks on a refresh).

    One query per kind, each walking the (kind, time) index backwards for at most a page, merged here: an IN over
    the kinds would make the database read and sort every alert ever raised to find the newest page."""
    columns = [TIMELINE.c[name] for name in ALERT_COLUMNS]
    rows: list[dict[str, Any]] = []
    with engine.connect() as conn:
        for kind in kinds:
            query = select(*columns).where(and_(TIMELINE.c.kind == kind, *_page_conditions(before, since)))
            query = query.order_by(TIMELINE.c.time.desc(), TIMELINE.c.event_id.desc()).limit(limit + 1)
            rows += [dict(r) for r in conn.execute(query).mappings()]
        for row in rows:
            row["time"] = as_utc(row["time"])
        rows.sort(key=lambda r: (r["time"], r["event_id"]), reverse=True)
        more = len(rows) > limit
        rows = rows[:limit]
        where = _ticket_places(conn, {r["ticket_id"] for r in rows})
    for row in rows:
        row.update(where.get(row["ticket_id"], {"grid": None, "district": None, "status": None}))
    following = Cursor(rows[-1]["time"], rows[-1]["event_id"]).text() if more and rows else None
    return {"items": rows, "next": following}


def _page_conditions(before: Cursor | None, since: datetime | None) -> list[Any]:
    conditions: list[Any] = []
    if before is not None:
        at = as_utc(before.time)
        # time <= at first (an index range), then the ties at that instant by id
        conditions += [TIMELINE.c.time <= at, or_(TIMELINE.c.time < at, TIMELINE.c.event_id < before.event_id)]
    if since is not None:
        conditions.append(TIMELINE.c.time > as_utc(since))
    return conditions


def _ticket_places(conn: Any, ticket_ids: set[str]) -> dict[str, dict[str, Any]]:
    if not ticket_ids:
        return {}
    query = select(TICKETS.c.ticket_id, TICKETS.c.grid, TICKETS.c.district, TICKETS.c.status) \
        .where(TICKETS.c.ticket_id.in_(sorted(ticket_ids)))
    return {r["ticket_id"]: {"grid": r["grid"], "district": r["district"], "status": r["status"]}
            for r in conn.execute(query).mappings()}


# ---------------------------------------------------------------------------------------------- arbitration

def arbitration_queue(engine: Engine, limit: int = 200) -> list[dict[str, Any]]:
    """Tickets waiting for a supervisor's decision (supervisor-review), longest waiting first, each with the
    consultation that failed: the plan put to the parties, their opinions, and why it came to a supervisor."""
    tickets_query = (select(TICKETS.c.ticket_id, TICKETS.c.category, TICKETS.c.text, TICKETS.c.district,
                            TICKETS.c.grid, TICKETS.c.lead_unit, TICKETS.c.co_units, TICKETS.c.last_event_at)
                     .where(TICKETS.c.status == TicketStatus.supervisor_review.value)
                     .order_by(TICKETS.c.last_event_at, TICKETS.c.ticket_id).limit(limit))
    with engine.connect() as conn:
        tickets = [dict(r) for r in conn.execute(tickets_query).mappings()]
        ids = [t["ticket_id"] for t in tickets]
        events = conn.execute(select(TIMELINE.c.ticket_id, TIMELINE.c.time, TIMELINE.c.kind, TIMELINE.c.payload)
                              .where(and_(TIMELINE.c.ticket_id.in_(ids), TIMELINE.c.kind.in_(ARBITRATION_KINDS)))
                              .order_by(TIMELINE.c.ticket_id, TIMELINE.c.time, TIMELINE.c.type_rank)).all() if ids else []
    by_ticket: dict[str, list[tuple[datetime, str, dict[str, Any]]]] = {}
    for ticket_id, time, kind, payload in events:
        by_ticket.setdefault(ticket_id, []).append((as_utc(time), kind, json.loads(payload)))
    return [{**t, "co_units": [u for u in (t["co_units"] or "").split(",") if u],
             **_consultation(by_ticket.get(t["ticket_id"], []))} for t in tickets]


def _consultation(events: list[tuple[datetime, str, dict[str, Any]]]) -> dict[str, Any]:
    """The latest consultation of a ticket with the opinions given in it and the review request that ended it."""
    out: dict[str, Any] = {"consultation": None, "opinions": [], "review": None}
    for time, kind, data in events:
        if kind == "ConsultationRequested":
            out = {"consultation": {"consultation_id": data.get("consultation_id"), "parties": data.get("parties", []),
                                    "proposed": data.get("proposed"), "reason": data.get("reason"),
                                    "opinions_due": data.get("opinions_due"), "at": time},
                   "opinions": [], "review": None}
        elif kind == "OpinionGiven":
            out["opinions"].append({"unit": data.get("unit"), "agrees": data.get("agrees"),
                                    "proposed_lead": data.get("proposed_lead"), "comment": data.get("comment", ""),
                                    "at": time})
        else:
            out["review"] = {"reason": data.get("reason"), "at": time,
                             "consultation_id": data.get("consultation_id")}
    return out


# ---------------------------------------------------------------------------------------------- trend, grids

def local_day(column: Any, zone: str, dialect: str) -> ColumnElement[Any]:
    """The calendar day of a UTC timestamp column in the city's zone, computed by the database."""
    if dialect == "postgresql":
        return func.to_char(func.timezone(zone, column), literal_column("'YYYY-MM-DD'"))
    # SQLite keeps UTC text: shift by the zone's offset now (the city's zones have no daylight saving).
    offset = datetime.now(ZoneInfo(zone)).utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset else 0
    return func.date(column, f"{minutes:+d} minutes")


def daily_trend(engine: Engine, zone: str, *, scope: str = "district", key: str | None = None,
                since: datetime | None = None, days: int = 30) -> list[dict[str, Any]]:
    """The three rates (and the on-time rate) per day, a ticket counted on the day it was submitted, over the whole
    city by default (every district's contributions: a ticket counts once) or one unit, grid or district.

    From `since`, or over the `days` up to the newest submission: the window is read through the tickets'
    (submitted_at, ticket_id) index and joined to the metrics by their key, so a long history costs nothing."""
    if since is None:
        with engine.connect() as conn:
            newest = conn.execute(select(func.max(TICKETS.c.submitted_at))).scalar()
        if newest is None:
            return []
        since = as_utc(newest) - timedelta(days=days)
    day = local_day(TICKETS.c.submitted_at, zone, engine.dialect.name).label("day")
    sums = [func.sum(METRICS.c[name]).label(name) for name in METRIC_COUNTERS]
    query = (select(day, func.count(func.distinct(METRICS.c.ticket_id)).label("tickets"), *sums)
             .select_from(TICKETS.join(METRICS, METRICS.c.ticket_id == TICKETS.c.ticket_id))
             .where(and_(TICKETS.c.submitted_at >= as_utc(since), METRICS.c.scope == scope))
             .group_by(day).order_by(day))
    if key:
        query = query.where(METRICS.c.key == key)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    out = []
    for r in rows:
        counts = {name: int(r[name] or 0) for name in METRIC_COUNTERS}
        out.append({"day": str(r["day"]), "tickets": int(r["tickets"]), **rate_rules.three_rates(counts),
                    "on_time_rate": rate_rules.rate(counts["on_time"], counts["completed"]), "counts": counts})
    return out


def grid_stats(engine: Engine) -> list[dict[str, Any]]:
    """Per grid: tickets, open ones, open overdue ones, and the on-time rate of the tasks completed there."""
    is_open = TICKETS.c.status.not_in(DONE_STATES)
    tickets_query = (select(TICKETS.c.grid, func.count().label("tickets"),
                            func.sum(case((is_open, 1), else_=0)).label("open"),
                            func.sum(case((and_(is_open, TICKETS.c.overdue.is_(True)), 1), else_=0)).label("overdue"))
                     .where(TICKETS.c.grid.is_not(None)).group_by(TICKETS.c.grid))
    metrics_query = (select(METRICS.c.key, func.sum(METRICS.c.completed).label("completed"),
                            func.sum(METRICS.c.on_time).label("on_time"))
                     .where(METRICS.c.scope == "grid").group_by(METRICS.c.key))
    with engine.connect() as conn:
        counted = {r["grid"]: r for r in conn.execute(tickets_query).mappings()}
        timely = {r["key"]: r for r in conn.execute(metrics_query).mappings()}
    out = []
    for grid in sorted(set(counted) | set(timely)):
        c, m = counted.get(grid), timely.get(grid)
        completed, on_time = int(m["completed"] or 0) if m else 0, int(m["on_time"] or 0) if m else 0
        out.append({"grid": grid, "tickets": int(c["tickets"]) if c else 0, "open": int(c["open"] or 0) if c else 0,
                    "overdue": int(c["overdue"] or 0) if c else 0, "completed": completed, "on_time": on_time,
                    "on_time_rate": rate_rules.rate(on_time, completed)})
    return out


# ---------------------------------------------------------------------------------------------- proactive coverage

def proactive_coverage(engine: Engine) -> list[dict[str, Any]]:
    """Per proactive rule: the residents it found (qualified: one ticket each per entitlement) and those reached
    (their ticket closed: the grid worker went to the door and the matter is done), with the share reached."""
    closed = TICKETS.c.status == TicketStatus.closed.value
    query = (select(TICKETS.c.proactive_rule, func.count().label("qualified"),
                    func.sum(case((closed, 1), else_=0)).label("reached"))
             .where(TICKETS.c.proactive_rule.is_not(None)).group_by(TICKETS.c.proactive_rule)
             .order_by(TICKETS.c.proactive_rule))
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [{"rule": r["proactive_rule"], "qualified": int(r["qualified"]), "reached": int(r["reached"] or 0),
             "reached_rate": rate_rules.rate(int(r["reached"] or 0), int(r["qualified"]))} for r in rows]


# ---------------------------------------------------------------------------------------------- the lowest level

def lowest_level(engine: Engine) -> list[dict[str, Any]]:
    """Per district (and "all"): of the closed tickets that were handled, how many a grid or community handled
    without an escalation (domain.rates: the solved-at-the-lowest-level rate), and how many a grid worker
    resolved on the spot."""
    closed_handled = and_(TICKETS.c.status == TicketStatus.closed.value, TICKETS.c.handled_level.is_not(None))
    lowest = and_(TICKETS.c.handled_level.in_([level.value for level in LOWEST_LEVELS]), TICKETS.c.escalated_up.is_(False))
    query = (select(TICKETS.c.district, func.count().label("handled_closed"),
                    func.sum(case((lowest, 1), else_=0)).label("solved_lowest"),
                    func.sum(case((TICKETS.c.on_the_spot.is_(True), 1), else_=0)).label("on_the_spot"),
                    func.sum(case((TICKETS.c.escalated_up.is_(True), 1), else_=0)).label("escalated"))
             .where(closed_handled).group_by(TICKETS.c.district).order_by(TICKETS.c.district))
    with engine.connect() as conn:
        rows = [{k: (int(v or 0) if k != "district" else v) for k, v in r.items()} for r in conn.execute(query).mappings()]
    total = {name: sum(r[name] for r in rows) for name in ("handled_closed", "solved_lowest", "on_the_spot", "escalated")}
    return [{**r, "district": r["district"] or "-", "lowest_level_rate": rate_rules.lowest_level_rate(r)}
            for r in rows] + [{"district": "all", **total, "lowest_level_rate": rate_rules.lowest_level_rate(total)}]
