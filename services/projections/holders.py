"""Who held a ticket, for `cityops replay story`: the ledger of `domain.holders` (the rule sla uses too),
each span described with the role, round and hand-over the story shows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.holders import CONSULTATION, HOTLINE, RESIDENT, SUSPENSION, UNIT_PREFIX, Span, fact_of, spans_from_facts

from .state import Folded, TaskState

# What the story calls the fact kind that handed a ticket on.
_HANDED_ON_BY = {"assigned": "dispatched", "reopened": "re-handling", "consultation-opened": "consultation",
                 "consultation-closed": "consultation closed", "progress": "progress"}


@dataclass(frozen=True)
class Holding:
    """Who held a ticket, from when to when (None: still holds it), and how the holding ended."""

    holder: str
    role: str
    round: int
    start: datetime
    end: datetime | None
    ended_by: str

    def duration(self, now: datetime) -> timedelta:
        return (self.end or now) - self.start

    @property
    def kind(self) -> str:
        """The kind of party: hotline, unit, consultation, resident or suspension."""
        return self.holder if self.holder in _PARTIES else "unit"

    @property
    def clock(self) -> str:
        """Whose time this span is: the unit's own clocks run while it holds the ticket, the hotline's while the
        hotline does; a consultation stops every clock and waiting on the resident the task's (sla's rule)."""
        return _CLOCK.get(self.kind, "unit")


_PARTIES = frozenset({HOTLINE, CONSULTATION, RESIDENT, SUSPENSION})
_CLOCK = {HOTLINE: "hotline", CONSULTATION: "paused", RESIDENT: "paused", SUSPENSION: "paused"}


def holdings(folded: Folded, now: datetime | None = None) -> list[Holding]:
    """The hand-offs of a ticket, one holder at a time (`domain.holders.spans_from_facts`). With `now`, an open
    ticket's current holder holds it until then, even when it took it at the ticket's last event."""
    spans = spans_from_facts([fact_of(f.data, f.time) for f in folded.facts], now)
    return [_holding(folded, span) for span in spans]


def _holding(folded: Folded, span: Span) -> Holding:
    open_end = span.ended_by == "open"
    holder = span.party.removeprefix(UNIT_PREFIX)
    task = _task_held(folded, holder, span.start) if span.party.startswith(UNIT_PREFIX) else None
    return Holding(holder, task.role if task else _role_of(folded, span), task.round if task else _round_at(folded, span.start),
                   span.start, None if open_end else span.end, _ended_by(folded, span, task))


def _task_held(folded: Folded, unit: str, at: datetime) -> TaskState | None:
    """The unit's task assigned last at or before `at`."""
    held = [k for k in folded.tasks if k.unit == unit and k.assigned_at is not None and k.assigned_at <= at]
    return max(held, key=lambda k: (k.assigned_at or at, k.task_id), default=None)


def _round_at(folded: Folded, at: datetime) -> int:
    return max((k.round for k in folded.tasks if k.assigned_at is not None and k.assigned_at <= at), default=0)


def _role_of(folded: Folded, span: Span) -> str:
    if span.party != HOTLINE:
        return span.party  # consultation, resident
    if any(span.start <= at <= span.end for at in folded.handled_at_by_round.values()):
        return "callback"  # handling finished while the hotline held it: the callback (回访) is the hotline's
    if any(k.assigned_at is not None and k.assigned_at <= span.start for k in folded.tasks):
        return "rerouting"
    return "intake+triage"


def _ended_by(folded: Folded, span: Span, task: TaskState | None) -> str:
    if span.ended_by == "closed":
        return folded.ticket.outcome or "closed"
    if span.ended_by == "open":
        return "open"
    if task is not None and span.ended_by in ("completed", "returned"):
        return span.ended_by
    return _HANDED_ON_BY.get(span.ended_by, span.ended_by)
