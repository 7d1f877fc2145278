"""Who held a ticket when: every instant of its life attributed to exactly one party. Pure.

The one who-held-it rule of the hub: sla's ledger (`cityops sla ledger`) and the projections' story
(`cityops replay story`, "who held it") both come from `spans_from_facts`.

Parties:

- ``hotline``: from registration to the first assignment (triage, manual triage, a merge), between rounds
  (a reroute after a return, a reopening) and after handling (callback, 回访) until the ticket closes;
- ``unit:<id>``: the unit holding the current round's task, from assignment until it completes or returns it.
  With a lead and co-units working at once, the lead holds the ticket while its own task is open, then the
  first co-unit still working (in assignment order): one holder at a time, so the spans tile the lifetime;
- ``consultation``: from a ConsultationRequested until the plan is agreed or a supervisor decides
  (a supervisor review is still consultation); it wins over everything else while it lasts;
- ``resident``: while the holding task waits on the resident (a progress report with
  ``waiting_on_resident`` until that task's next report or its completion);
- ``suspension``: reserved for an approved suspension (挂起). No v1 event expresses one, so the ledger never
  produces it yet. An approved extension (延期) is *not* a suspension: it moves the deadline and the time
  stays the unit's, so that an extended task is still measured on its own time.

The lifetime runs from the ticket's first event (its registration) to its closing, or to `now` while it is
open. Events are taken in time order (ties keep their given order), so the spans tile the lifetime exactly:
contiguous, no gaps, no overlaps, the first starting at the registration and the last ending at the close.
Events after the close are ignored, and so is a unit's report on a task another unit was assigned (the rule of
`domain.reports`: it changes nothing, wherever it is read). The lead's end-to-end check calls `ledger_for` and
`check_tiles`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from contracts import events as ev
from contracts.envelope import Envelope, Event

from .reports import Claim, without_refused_reports

HOTLINE = "hotline"
CONSULTATION = "consultation"
RESIDENT = "resident"
SUSPENSION = "suspension"
UNIT_PREFIX = "unit:"

FactKind = Literal["registered", "assigned", "signed-for", "progress", "extension-requested", "extension-decided",
                   "completed", "returned", "return-rejected", "consultation-opened", "consultation-closed",
                   "reopened", "closed", "noted"]

# The facts a unit reports about its own task (TaskSignedFor ... TaskCompleted), checked by `without_refused`.
REPORT_KINDS = frozenset({"signed-for", "progress", "extension-requested", "completed", "returned"})


@dataclass(frozen=True)
class Span:
    """A stretch of a ticket's life during which one party held it."""

    party: str
    start: datetime
    end: datetime
    ended_by: str = field(default="", compare=False)
    """The kind of fact that handed the ticket on (`closed` at the close, `open` while it still runs)."""

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


@dataclass(frozen=True)
class LedgerFact:
    """What the ledger (and the timers, see `domain.replay`) need of one event: when, what, which task."""

    at: datetime
    kind: FactKind
    task_id: str | None = None
    unit: str | None = None
    role: str | None = None
    round: int | None = None
    waiting: bool = False
    detail: dict[str, Any] = field(default_factory=dict, compare=False)


def fact_from(envelope: Envelope[Any]) -> LedgerFact:
    """The ledger's view of one workflow event (`noted` for events that change no holder)."""
    return fact_of(envelope.data, envelope.time)


def fact_of(data: Event, at: datetime) -> LedgerFact:
    """The ledger's view of one event's data at its time (`noted` for events that change no holder)."""
    match data:
        case ev.TicketRegistered():
            return LedgerFact(at, "registered")
        case ev.TaskAssigned():
            return LedgerFact(at, "assigned", data.task_id, data.unit, data.role.value, data.round)
        case ev.TaskSignedFor():
            return LedgerFact(at, "signed-for", data.task_id, data.unit)
        case ev.ProgressReported():
            return LedgerFact(at, "progress", data.task_id, data.unit, waiting=data.waiting_on_resident)
        case ev.ExtensionRequested():
            return LedgerFact(at, "extension-requested", data.task_id, data.unit)
        case ev.ExtensionDecided():
            return LedgerFact(at, "extension-decided", data.task_id, data.unit,
                              detail={"approved": data.approved, "amount": data.extra.amount, "unit": data.extra.unit})
        case ev.TaskCompleted():
            return LedgerFact(at, "completed", data.task_id, data.unit)
        case ev.TaskReturned():
            # An escalation up the area chain leaves the unit's hands as a return does, but is no dispute (sla's
            # ping-pong and returns index leave it out).
            escalated = {"escalate_to": data.escalate_to.value} if data.escalate_to is not None else {}
            return LedgerFact(at, "returned", data.task_id, data.unit, detail=escalated)
        case ev.ReturnRejected():
            return LedgerFact(at, "return-rejected", data.task_id, data.unit)
        case ev.ConsultationRequested():
            return LedgerFact(at, "consultation-opened")
        case ev.PlanAgreed():
            return LedgerFact(at, "consultation-closed")
        case ev.SupervisorDecided():
            units = [data.routing.lead, *data.routing.co_units]
            return LedgerFact(at, "consultation-closed", detail={"supervisor": data.supervisor, "units": units})
        case ev.TicketReopened():
            return LedgerFact(at, "reopened", round=data.round)
        case ev.TicketClosed():
            return LedgerFact(at, "closed")
    return LedgerFact(at, "noted")


@dataclass
class _Task:
    unit: str
    role: str
    round: int
    order: int
    state: Literal["open", "waiting", "done"] = "open"


@dataclass
class _Holding:
    """Who holds the ticket, as the facts so far tell."""

    tasks: dict[str, _Task] = field(default_factory=dict)
    round: int = 0
    consultation: bool = False
    closed: bool = False

    def apply(self, fact: LedgerFact) -> None:
        task = self.tasks.get(fact.task_id or "")
        match fact.kind:
            case "assigned":
                self.round = max(self.round, fact.round or 1)
                self.tasks[fact.task_id or ""] = _Task(fact.unit or "?", fact.role or "lead", fact.round or 1, len(self.tasks))
            case "progress" if task is not None and task.state != "done":
                task.state = "waiting" if fact.waiting else "open"
            case "completed" | "returned" if task is not None:
                task.state = "done"
            case "return-rejected" if task is not None:
                task.state = "open"
            case "consultation-opened":
                self.consultation = True
            case "consultation-closed":
                self.consultation = False
            case "reopened":
                self.round = max(self.round, fact.round or self.round + 1)
            case "closed":
                self.closed = True

    def holder(self) -> str:
        if self.consultation:
            return CONSULTATION
        working = [t for t in self.tasks.values() if t.round == self.round and t.state != "done"]
        if not working:
            return HOTLINE
        first = min(working, key=lambda t: (t.role != "lead", t.order))
        return RESIDENT if first.state == "waiting" else UNIT_PREFIX + first.unit


def without_refused(facts: Iterable[LedgerFact]) -> list[LedgerFact]:
    """One ticket's facts without the reports on a task that its assignment (among them) gives another unit
    (`domain.reports.without_refused_reports`)."""
    return without_refused_reports(facts, assignment=_assignment, report=_report)


def _assignment(fact: LedgerFact) -> Claim | None:
    return (fact.task_id, fact.unit) if fact.kind == "assigned" and fact.task_id and fact.unit else None


def _report(fact: LedgerFact) -> Claim | None:
    return (fact.task_id, fact.unit) if fact.kind in REPORT_KINDS and fact.task_id and fact.unit else None


def _in_time_order(facts: Iterable[LedgerFact]) -> list[LedgerFact]:
    return sorted(without_refused(facts), key=lambda f: f.at)  # stable: ties keep the log's order


def ledger_bounds(facts: Sequence[LedgerFact], now: datetime | None = None) -> tuple[datetime, datetime] | None:
    """(start, end) of the lifetime: first fact to the close, or to `now` (else the last fact) while open."""
    ordered = _in_time_order(facts)
    if not ordered:
        return None
    closed = next((f.at for f in ordered if f.kind == "closed"), None)
    if closed is not None:
        return ordered[0].at, closed
    last = ordered[-1].at
    return ordered[0].at, max(last, now) if now is not None else last


def spans_from_facts(facts: Sequence[LedgerFact], now: datetime | None = None) -> list[Span]:
    """The ledger of one ticket from its facts (see the module docstring)."""
    bounds = ledger_bounds(facts, now)
    if bounds is None:
        return []
    start, end = bounds
    holding = _Holding()
    spans: list[Span] = []
    party, since = holding.holder(), start
    for fact in _in_time_order(facts):
        if fact.at > end:
            break
        holding.apply(fact)
        if holding.closed:
            break
        now_holding = holding.holder()
        if now_holding != party:
            spans.append(Span(party, since, fact.at, fact.kind))
            party, since = now_holding, fact.at
    spans.append(Span(party, since, end, "closed" if holding.closed else "open"))
    return _tidy(spans)


def _tidy(spans: list[Span]) -> list[Span]:
    """Drop empty spans and join neighbours of the same party (a holder that changed and changed back at
    one instant)."""
    out: list[Span] = []
    for span in spans:
        if span.end <= span.start:
            continue
        if out and out[-1].party == span.party:
            out[-1] = Span(span.party, out[-1].start, span.end, span.ended_by)
        else:
            out.append(span)
    return out


def ledger_for(events: Iterable[Envelope[Any]], now: datetime | None = None) -> list[Span]:
    """The ledger of one ticket from its events (any workflow topics, in log order)."""
    return spans_from_facts([fact_from(e) for e in events], now)


def bounds_for(events: Iterable[Envelope[Any]], now: datetime | None = None) -> tuple[datetime, datetime] | None:
    """The lifetime (start, end) that `ledger_for` tiles, for `check_tiles`."""
    return ledger_bounds([fact_from(e) for e in events], now)


def ledgers_by_ticket(events: Iterable[Envelope[Any]], now: datetime | None = None) -> dict[str, list[Span]]:
    """`ledger_for` of every ticket in a mixed stream of events."""
    grouped: dict[str, list[Envelope[Any]]] = defaultdict(list)
    for envelope in events:
        grouped[envelope.ticket_id].append(envelope)
    return {ticket: ledger_for(evs, now) for ticket, evs in grouped.items()}


def time_by_party(spans: Iterable[Span]) -> dict[str, timedelta]:
    """Total time per party."""
    totals: dict[str, timedelta] = defaultdict(timedelta)
    for span in spans:
        totals[span.party] += span.duration
    return dict(totals)


class LedgerTilingError(AssertionError):
    """A ledger's spans do not tile the ticket's lifetime."""


def tiling_problems(spans: Sequence[Span], start: datetime, end: datetime) -> list[str]:
    """Why `spans` do not tile [start, end] exactly (empty when they do)."""
    if start == end:
        return [] if not spans else [f"lifetime is empty but there are {len(spans)} spans"]
    problems = []
    if not spans:
        return [f"no spans for a lifetime of {end - start}"]
    if spans[0].start != start:
        problems.append(f"first span starts {spans[0].start.isoformat()}, lifetime {start.isoformat()}")
    if spans[-1].end != end:
        problems.append(f"last span ends {spans[-1].end.isoformat()}, lifetime {end.isoformat()}")
    for i, span in enumerate(spans):
        if span.end <= span.start:
            problems.append(f"span {i} ({span.party}) is empty or negative")
        if i and spans[i - 1].end != span.start:
            problems.append(f"gap or overlap between span {i - 1} and {i}: "
                            f"{spans[i - 1].end.isoformat()} / {span.start.isoformat()}")
    total = sum((s.duration for s in spans), timedelta())
    if total != end - start:
        problems.append(f"spans add up to {total}, lifetime is {end - start}")
    return problems


def check_tiles(spans: Sequence[Span], start: datetime, end: datetime) -> None:
    """Raise `LedgerTilingError` unless `spans` tile [start, end] exactly."""
    problems = tiling_problems(spans, start, end)
    if problems:
        raise LedgerTilingError("; ".join(problems))
