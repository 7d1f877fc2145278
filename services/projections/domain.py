"""The pure heart of the projections: fold a ticket's events into its state, tasks, and metric shares.

`fold(facts)` sorts the facts itself (by event time, then lifecycle rank, then id), so its result
depends only on the *set* of events a ticket has. That is what makes the live projection, a rebuild
that reads the topics partition by partition, and an as-of replay agree row for row: topics
interleave differently in each, but the set of a ticket's events is the same. The fold is total:
an unexpected order or a missing event never raises, it just yields a less complete state.

No I/O here; `store` writes the results, `replay` reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from typing import Any

from contracts import events as ev
from contracts.envelope import Envelope, Event
from contracts.registry import model_for
from contracts.topics import topic_for_event
from services.common.workcalendar import CalendarCoverageError, SlaUnit, WorkCalendar

from .models import METRIC_COUNTERS

# Lifecycle order: breaks ties between events stamped with the same instant (one handler often
# emits several events with one clock reading).
_LIFECYCLE: tuple[type[Event], ...] = (
    ev.TicketSubmitted, ev.TicketRegistered, ev.TicketMerged, ev.SplitRequested, ev.TicketSplit,
    ev.ManualTriageRequested, ev.ManualTriageResolved, ev.TicketClassified, ev.ConsultationRequested,
    ev.OpinionGiven, ev.SupervisorReviewRequested, ev.SupervisorDecided, ev.PlanAgreed, ev.RerouteRequested,
    ev.TaskAssigned, ev.TaskSignedFor, ev.ProgressReported, ev.ExtensionRequested, ev.ExtensionDecided,
    ev.SlaReminderSent, ev.SlaBreached, ev.TicketEscalated, ev.TaskReturned, ev.ReturnRejected, ev.TaskCompleted,
    ev.TicketHandled, ev.CallbackRequested, ev.CallbackRecorded, ev.TicketReopened, ev.TicketClosed,
)
TYPE_RANK: dict[str, int] = {model.event_type: rank for rank, model in enumerate(_LIFECYCLE)}
PROJECTED_TYPES: tuple[str, ...] = tuple(TYPE_RANK)
KIND: dict[str, str] = {model.event_type: model.__name__ for model in _LIFECYCLE}
TOPIC: dict[str, str] = {model.event_type: topic_for_event(model.event_type) for model in _LIFECYCLE}

# Ticket states, roughly in lifecycle order (see GUIDE.md, "Lifecycle of a ticket").
STATUSES = ("submitted", "registered", "merged", "manual-triage", "classified", "consulting", "supervisor-review",
            "decided", "agreed", "rerouting", "dispatched", "signed-for", "in-progress", "waiting-on-resident",
            "returned", "completed", "handled", "callback", "evaluated", "reopened", "closed")
_STICKY = ("closed", "merged")  # only a reopen (closed) or a split (merged) leaves these
OPEN_TASK_STATES = ("assigned", "signed-for", "in-progress", "waiting-on-resident")
SATISFIED = (ev.Satisfaction.satisfied.value, ev.Satisfaction.basically_satisfied.value)


# ---------------------------------------------------------------------------------------------- facts

@dataclass(frozen=True)
class Fact:
    """What the fold needs of one event (an envelope, or a stored timeline row)."""

    id: str
    type: str
    time: datetime
    ticket_id: str
    data: Event
    source: str = ""
    correlation_id: str = ""
    causation_id: str | None = None

    @classmethod
    def from_envelope(cls, envelope: Envelope[Any]) -> Fact:
        return cls(envelope.id, envelope.type, as_utc(envelope.time), envelope.ticket_id, envelope.data,
                   envelope.source, envelope.correlation_id, envelope.causation_id)

    @classmethod
    def from_payload(cls, *, id: str, type: str, time: datetime, ticket_id: str, payload: str, source: str = "",
                     correlation_id: str = "", causation_id: str | None = None) -> Fact:
        data = model_for(type).model_validate_json(payload)
        return cls(id, type, as_utc(time), ticket_id, data, source, correlation_id, causation_id)

    @property
    def data_is_stored_as_is(self) -> bool:
        """Whether the timeline's payload (`stored_payload`) parses back to this very data: all but a
        submission, whose caller details are left out."""
        return not isinstance(self.data, ev.TicketSubmitted)

    @property
    def sort_key(self) -> tuple[datetime, int, str]:
        return (self.time, TYPE_RANK.get(self.type, 99), self.id)


def as_utc(moment: datetime) -> datetime:
    """Aware UTC; a naive value is read as UTC (that is how the store keeps it)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def db_time(moment: datetime | None) -> datetime | None:
    """Aware UTC: what SQLModel's UTCDateTime columns take, and give back from SQLite and PostgreSQL alike."""
    return None if moment is None else as_utc(moment)


def stored_payload(data: Event) -> str:
    """The event data as kept in the timeline: the caller's name and phone never reach a read model."""
    exclude = {"caller"} if isinstance(data, ev.TicketSubmitted) else None
    return data.model_dump_json(exclude=exclude)


def is_projected(event_type: str) -> bool:
    return event_type in TYPE_RANK


# ---------------------------------------------------------------------------------------------- state

@dataclass
class TicketState:
    """Mirrors `models.ProjTicket` field for field (aware datetimes; `store` makes them naive)."""

    ticket_id: str
    status: str = "submitted"
    channel: str | None = None
    external_id: str | None = None
    text: str | None = None
    urgency: str | None = None
    category: str | None = None
    catalogue_version: str | None = None
    classified_by: str | None = None
    district: str | None = None
    street: str | None = None
    community: str | None = None
    grid: str | None = None
    lead_unit: str | None = None
    co_units: str = ""
    level: str | None = None
    round: int = 0
    final: bool = False
    master_ticket_id: str | None = None
    limits: str | None = None
    sign_for_due: datetime | None = None
    response_due: datetime | None = None
    resolution_due: datetime | None = None
    overdue: bool = False
    breaches: int = 0
    reminders: int = 0
    escalations: int = 0
    escalated_to: str | None = None
    returns: int = 0
    reroutes: int = 0
    reopens: int = 0
    extensions: int = 0
    outcome: str | None = None
    resolved: bool | None = None
    satisfaction: str | None = None
    reasonable_demand: bool | None = None
    submitted_at: datetime | None = None
    registered_at: datetime | None = None
    classified_at: datetime | None = None
    dispatched_at: datetime | None = None
    signed_for_at: datetime | None = None
    handled_at: datetime | None = None
    closed_at: datetime | None = None
    last_event_at: datetime | None = None
    events: int = 0


@dataclass
class TaskState:
    """Mirrors `models.ProjTask` (plus the status a rejected return goes back to)."""

    task_id: str
    ticket_id: str
    unit: str
    role: str
    round: int
    final: bool = False
    category: str | None = None
    status: str = "assigned"
    open: bool = True
    dispatch_id: str | None = None
    assigned_at: datetime | None = None
    signed_for_at: datetime | None = None
    first_progress_at: datetime | None = None
    completed_at: datetime | None = None
    ended_at: datetime | None = None
    limits: str | None = None
    sign_for_due: datetime | None = None
    response_due: datetime | None = None
    resolution_due: datetime | None = None
    breached: str = ""
    reminders: int = 0
    returns: int = 0
    extensions_requested: int = 0
    extensions_granted: int = 0
    status_before_return: str = field(default="assigned", repr=False)

    def end(self, status: str, at: datetime) -> None:
        self.status, self.open, self.ended_at = status, False, at

    def set_due(self, clock: str, deadline: datetime) -> None:
        setattr(self, f"{clock}_due", as_utc(deadline))

    def breach(self, clock: str) -> None:
        if clock not in self.breached.split(","):
            self.breached = ",".join(sorted(filter(None, [*self.breached.split(","), clock])))


@dataclass(frozen=True)
class Callback:
    round: int
    resolved: bool
    satisfaction: str
    reasonable: bool


@dataclass
class Folded:
    """Everything the projections keep about one ticket, computed from its events."""

    ticket: TicketState
    tasks: list[TaskState]
    metrics: dict[tuple[str, str], dict[str, int]]
    facts: list[Fact]
    handled_at_by_round: dict[int, datetime] = field(default_factory=dict)


# The columns of each row, listed once: `dataclasses.fields` per row was a tenth of a refold.
_TICKET_COLUMNS = tuple(f.name for f in fields(TicketState))
_TASK_COLUMNS = tuple(f.name for f in fields(TaskState) if f.name != "status_before_return")


def ticket_row(state: TicketState) -> dict[str, Any]:
    values = vars(state)
    return {name: _db_value(values[name]) for name in _TICKET_COLUMNS}


def task_row(state: TaskState) -> dict[str, Any]:
    values = vars(state)
    return {name: _db_value(values[name]) for name in _TASK_COLUMNS}


def _db_value(value: Any) -> Any:
    return db_time(value) if isinstance(value, datetime) else value


# ---------------------------------------------------------------------------------------------- the fold

def fold(facts: Iterable[Fact], ticket_id: str | None = None) -> Folded | None:
    """Fold one ticket's events (any order, duplicates allowed) into its projection; None if no events."""
    unique = {f.id: f for f in facts if is_projected(f.type)}
    ordered = sorted(unique.values(), key=lambda f: f.sort_key)
    if not ordered:
        return None
    folding = _Folding(ticket_id or ordered[0].ticket_id)
    for fact in ordered:
        folding.apply(fact)
    return folding.finish(ordered)


class _Folding:
    def __init__(self, ticket_id: str) -> None:
        self.t = TicketState(ticket_id)
        self.tasks: dict[str, TaskState] = {}
        self.handled_units: dict[int, tuple[str, ...]] = {}
        self.handled_at: dict[int, datetime] = {}
        self.callbacks: list[Callback] = []
        self.reopened_rounds: list[int] = []

    def apply(self, fact: Fact) -> None:
        self.t.events += 1
        self.t.last_event_at = fact.time
        handler = _HANDLERS.get(type(fact.data))
        if handler is not None:
            handler(self, fact, fact.data)

    # -- helpers ---------------------------------------------------------------------------

    def status(self, status: str, *, force: bool = False) -> None:
        if force or self.t.status not in _STICKY:
            self.t.status = status

    def location(self, location: ev.Location | None) -> None:
        if location is None or not any((location.district, location.street, location.community, location.grid)):
            return
        self.t.district, self.t.street = location.district, location.street
        self.t.community, self.t.grid = location.community, location.grid

    def registered(self, ticket: ev.RegisteredTicket) -> None:
        t = self.t
        t.channel, t.text, t.urgency = ticket.channel.value, ticket.text, ticket.urgency.value
        t.category = t.category or ticket.category
        t.submitted_at = t.submitted_at or as_utc(ticket.submitted_at)
        self.location(ticket.location)

    def routing(self, routing: ev.Routing) -> None:
        self.t.lead_unit, self.t.co_units, self.t.level = routing.lead, ",".join(routing.co_units), routing.level.value

    def task(self, task_id: str, unit: str) -> TaskState:
        """The task, or a placeholder when its assignment sorts later (clock skew) or is missing."""
        if task_id not in self.tasks:
            role = "lead" if unit == self.t.lead_unit else "co"
            self.tasks[task_id] = TaskState(task_id, self.t.ticket_id, unit, role, self.t.round or 1)
        return self.tasks[task_id]

    def withdraw_open(self, at: datetime, keep_dispatch: str | None = None) -> None:
        """A new dispatch (after a return, a new plan, a reopen) replaces whatever was still open."""
        for task in self.tasks.values():
            if task.open and task.dispatch_id is not None and task.dispatch_id != keep_dispatch:
                task.end("withdrawn", at)

    def lead_moves(self, task: TaskState, status: str) -> None:
        """Task events move the ticket only when they concern the lead task of the current round."""
        if task.role == "lead" and task.round >= self.t.round:
            self.status(status)

    # -- finishing -------------------------------------------------------------------------

    def finish(self, ordered: list[Fact]) -> Folded:
        self._current_round_holders()
        tasks = sorted(self.tasks.values(), key=lambda k: k.task_id)
        return Folded(self.t, tasks, self._contributions(), ordered, dict(self.handled_at))

    def _current_round_holders(self) -> None:
        """Lead, co-units and deadlines come from the latest dispatch of the current round."""
        current = [k for k in self.tasks.values() if k.round == self.t.round]
        if not current:
            return
        never = datetime.min.replace(tzinfo=UTC)
        latest = max(current, key=lambda k: (k.assigned_at or never, k.task_id)).dispatch_id
        if latest is not None:
            current = [k for k in current if k.dispatch_id == latest]
        current.sort(key=lambda k: (k.assigned_at or datetime.max.replace(tzinfo=UTC), k.task_id))
        lead = next((k for k in current if k.role == "lead"), None)
        if lead is not None:
            self.t.lead_unit = lead.unit
            self.t.sign_for_due = lead.sign_for_due or self.t.sign_for_due
            self.t.response_due = lead.response_due or self.t.response_due
            self.t.resolution_due = lead.resolution_due or self.t.resolution_due
        self.t.co_units = ",".join(k.unit for k in current if k.role != "lead")

    def _contributions(self) -> dict[tuple[str, str], dict[str, int]]:
        per_unit: dict[str, dict[str, int]] = {}
        area = _zero()
        for task in self.tasks.values():
            counts = _task_counts(task)
            _add(per_unit.setdefault(task.unit, _zero()), counts)
            _add(area, counts)
        for units, counts in self._round_counts():
            for unit in units:
                _add(per_unit.setdefault(unit, _zero()), counts)
            _add(area, counts)  # once per ticket round, however many units shared it
        out = {("unit", unit): counts for unit, counts in per_unit.items()}
        if any(area.values()):
            for scope, key in (("grid", self.t.grid), ("district", self.t.district)):
                if key:
                    out[(scope, key)] = dict(area)
        return out

    def _round_counts(self) -> Iterable[tuple[tuple[str, ...], dict[str, int]]]:
        for units in self.handled_units.values():
            yield units, {"handled": 1}
        for round_ in self.reopened_rounds:
            yield self._units_of_round(round_ - 1), {"rehandled": 1}
        for cb in self.callbacks:
            rated = int(cb.reasonable)
            yield self._units_of_round(cb.round), {
                "callbacks": 1, "resolved": int(cb.resolved), "rated": rated,
                "satisfied": rated * int(cb.satisfaction in SATISFIED)}

    def _units_of_round(self, round_: int) -> tuple[str, ...]:
        if round_ in self.handled_units:
            return self.handled_units[round_]
        return tuple(sorted({k.unit for k in self.tasks.values() if k.round == round_ and k.status != "returned"}))


def _zero() -> dict[str, int]:
    return dict.fromkeys(METRIC_COUNTERS, 0)


def _add(into: dict[str, int], counts: dict[str, int]) -> None:
    for name, value in counts.items():
        into[name] += value


def _task_counts(task: TaskState) -> dict[str, int]:
    breached = task.breached.split(",")
    signed = task.signed_for_at is not None
    return {
        "tasks": 1,
        "response_n": int(signed or "sign_for" in breached),
        "responded": int(signed and "sign_for" not in breached),
        "returned": task.returns,
        "completed": int(task.completed_at is not None),
        "on_time": int(task.completed_at is not None and "resolution" not in breached),
    }


def _limits_text(limits: ev.Limits) -> str:
    return "/".join(f"{x.amount}{x.unit}" for x in (limits.sign_for, limits.response, limits.resolution))


@cache
def _calendar() -> WorkCalendar:
    return WorkCalendar.load()


def nominal_due(start: datetime | None, limit: ev.TimeLimitSpec) -> datetime | None:
    """A deadline from the limit alone (working days on China's calendar), pauses not counted.

    The SLA service owns the exact clocks (pauses for consultation and for the resident); when it
    states a deadline (a reminder, a breach) that replaces this one."""
    if start is None:
        return None
    return _calendar_deadline(start, limit.amount, limit.unit)


@lru_cache(maxsize=8192)
def _calendar_deadline(start: datetime, amount: int, unit: SlaUnit) -> datetime | None:
    # Memoised: a live ticket is refolded once per batch that brings it an event, and each refold
    # computes the deadlines of all its tasks again (the calendar walk is most of a fold's cost).
    try:
        return as_utc(_calendar().add(start, amount, unit))
    except (CalendarCoverageError, ValueError):  # years the holiday data does not cover: no guess
        return None


# ---------------------------------------------------------------------------------------------- handlers

def _on_submitted(f: _Folding, fact: Fact, d: ev.TicketSubmitted) -> None:
    t = f.t
    t.channel, t.text, t.urgency = t.channel or d.channel.value, t.text or d.text, t.urgency or d.urgency.value
    t.category = t.category or d.category
    t.external_id = d.external_id
    t.submitted_at = as_utc(d.submitted_at)
    if t.district is None and t.grid is None:
        f.location(d.location)


def _on_registered(f: _Folding, fact: Fact, d: ev.TicketRegistered) -> None:
    f.registered(d.ticket)
    f.t.registered_at = f.t.registered_at or fact.time
    if d.master_ticket_id:
        f.t.master_ticket_id = d.master_ticket_id
    f.status("registered")


def _on_merged(f: _Folding, fact: Fact, d: ev.TicketMerged) -> None:
    f.t.master_ticket_id = d.master_ticket_id
    if f.t.status != "closed":
        f.status("merged", force=True)


def _on_split(f: _Folding, fact: Fact, d: ev.TicketSplit) -> None:
    f.registered(d.ticket)
    f.t.master_ticket_id = None
    if f.t.status == "merged":
        f.status("registered", force=True)


def _on_manual_requested(f: _Folding, fact: Fact, d: ev.ManualTriageRequested) -> None:
    f.registered(d.ticket)
    f.status("manual-triage")


def _on_manual_resolved(f: _Folding, fact: Fact, d: ev.ManualTriageResolved) -> None:
    f.t.category, f.t.classified_by = d.category, "manual"
    f.status("classified")


def _on_classified(f: _Folding, fact: Fact, d: ev.TicketClassified) -> None:
    t = f.t
    f.registered(d.ticket)
    t.category, t.catalogue_version, t.classified_by = d.category, d.catalogue_version, d.method
    t.limits = _limits_text(d.limits)
    t.classified_at = t.classified_at or fact.time
    f.routing(d.routing)
    f.status("classified")


def _on_consultation(f: _Folding, fact: Fact, d: ev.ConsultationRequested) -> None:
    f.t.category, f.t.limits = d.category, _limits_text(d.limits)
    f.routing(d.proposed)
    f.status("consulting")


def _on_review_requested(f: _Folding, fact: Fact, d: ev.SupervisorReviewRequested) -> None:
    f.status("supervisor-review")


def _on_supervisor_decided(f: _Folding, fact: Fact, d: ev.SupervisorDecided) -> None:
    f.routing(d.routing)
    f.t.final = True
    f.status("decided")


def _on_plan_agreed(f: _Folding, fact: Fact, d: ev.PlanAgreed) -> None:
    f.routing(d.routing)
    f.t.resolution_due = as_utc(d.deadline)
    f.t.category, f.t.limits = d.category, _limits_text(d.limits)
    f.status("agreed")


def _on_reroute(f: _Folding, fact: Fact, d: ev.RerouteRequested) -> None:
    f.t.reroutes += 1
    f.withdraw_open(fact.time)
    f.status("rerouting")


def _on_assigned(f: _Folding, fact: Fact, d: ev.TaskAssigned) -> None:
    t = f.t
    # Tasks of one dispatch share the event that caused them; any other open task is replaced.
    dispatch = fact.causation_id or fact.id
    f.withdraw_open(fact.time, keep_dispatch=dispatch)
    task = f.task(d.task_id, d.unit)
    task.unit, task.role, task.round, task.final = d.unit, d.role.value, d.round, d.final
    task.dispatch_id = dispatch
    task.category, task.limits, task.assigned_at = d.category, _limits_text(d.limits), fact.time
    task.sign_for_due = task.sign_for_due or nominal_due(fact.time, d.limits.sign_for)
    task.response_due = task.response_due or nominal_due(fact.time, d.limits.response)
    task.resolution_due = task.resolution_due or (as_utc(d.resolution_due) if d.resolution_due
                                                  else nominal_due(fact.time, d.limits.resolution))
    t.round = max(t.round, d.round)
    t.dispatched_at = t.dispatched_at or fact.time
    t.category = t.category or d.category
    t.limits = t.limits or task.limits
    if task.role == "lead" and d.round >= t.round:
        t.final = d.final
    f.lead_moves(task, "dispatched")


def _on_signed_for(f: _Folding, fact: Fact, d: ev.TaskSignedFor) -> None:
    task = f.task(d.task_id, d.unit)
    task.signed_for_at = task.signed_for_at or fact.time
    if task.status == "assigned":
        task.status = "signed-for"
    if task.role == "lead":
        f.t.signed_for_at = f.t.signed_for_at or fact.time
    f.lead_moves(task, "signed-for")


def _on_progress(f: _Folding, fact: Fact, d: ev.ProgressReported) -> None:
    task = f.task(d.task_id, d.unit)
    task.first_progress_at = task.first_progress_at or fact.time
    if task.open:
        task.status = "waiting-on-resident" if d.waiting_on_resident else "in-progress"
        f.lead_moves(task, task.status)


def _on_extension_requested(f: _Folding, fact: Fact, d: ev.ExtensionRequested) -> None:
    f.task(d.task_id, d.unit).extensions_requested += 1


def _on_extension_decided(f: _Folding, fact: Fact, d: ev.ExtensionDecided) -> None:
    if d.approved:
        task = f.task(d.task_id, d.unit)
        task.extensions_granted += 1
        task.resolution_due = nominal_due(task.resolution_due, d.extra) or task.resolution_due
        f.t.extensions += 1


def _on_returned(f: _Folding, fact: Fact, d: ev.TaskReturned) -> None:
    task = f.task(d.task_id, d.unit)
    task.returns += 1
    f.t.returns += 1
    if task.open:
        task.status_before_return = task.status
        task.end("returned", fact.time)
        f.lead_moves(task, "returned")


def _on_return_rejected(f: _Folding, fact: Fact, d: ev.ReturnRejected) -> None:
    task = f.task(d.task_id, d.unit)
    if task.status == "returned":
        task.status, task.open, task.ended_at = task.status_before_return, True, None
        f.lead_moves(task, task.status if task.status != "assigned" else "dispatched")


def _on_completed(f: _Folding, fact: Fact, d: ev.TaskCompleted) -> None:
    task = f.task(d.task_id, d.unit)
    task.completed_at = task.completed_at or fact.time
    task.end("completed", task.ended_at if task.status == "completed" and task.ended_at else fact.time)
    f.lead_moves(task, "completed")


def _on_handled(f: _Folding, fact: Fact, d: ev.TicketHandled) -> None:
    f.handled_units[d.round] = tuple(d.units)
    f.handled_at[d.round] = fact.time
    f.t.handled_at = fact.time
    f.t.category = f.t.category or d.category
    if f.t.district is None and f.t.grid is None:
        f.location(d.location)
    f.status("handled")


def _on_callback_requested(f: _Folding, fact: Fact, d: ev.CallbackRequested) -> None:
    f.status("callback")


def _on_callback_recorded(f: _Folding, fact: Fact, d: ev.CallbackRecorded) -> None:
    f.callbacks.append(Callback(d.round, d.resolved, d.satisfaction.value, d.reasonable_demand))
    f.t.resolved, f.t.satisfaction, f.t.reasonable_demand = d.resolved, d.satisfaction.value, d.reasonable_demand
    f.status("evaluated")


def _on_reopened(f: _Folding, fact: Fact, d: ev.TicketReopened) -> None:
    f.reopened_rounds.append(d.round)
    f.t.reopens += 1
    f.t.round = max(f.t.round, d.round)
    f.t.outcome, f.t.closed_at = None, None
    f.status("reopened", force=True)


def _on_closed(f: _Folding, fact: Fact, d: ev.TicketClosed) -> None:
    t = f.t
    t.outcome, t.closed_at = d.outcome, fact.time
    t.satisfaction = d.satisfaction.value if d.satisfaction else t.satisfaction
    t.master_ticket_id = d.master_ticket_id or t.master_ticket_id
    for task in f.tasks.values():
        if task.open:
            task.end("closed", fact.time)
    f.status("closed", force=True)


def _on_reminder(f: _Folding, fact: Fact, d: ev.SlaReminderSent) -> None:
    task = f.task(d.task_id, d.unit)
    task.reminders += 1
    task.set_due(d.clock, d.deadline)
    f.t.reminders += 1


def _on_breached(f: _Folding, fact: Fact, d: ev.SlaBreached) -> None:
    task = f.task(d.task_id, d.unit)
    task.breach(d.clock)
    task.set_due(d.clock, d.deadline)
    f.t.breaches += 1
    f.t.overdue = True


def _on_escalated(f: _Folding, fact: Fact, d: ev.TicketEscalated) -> None:
    f.t.escalations += 1
    f.t.escalated_to = d.to_unit or (d.to_level.value if d.to_level else None)


_HANDLERS: dict[type[Event], Callable[[_Folding, Fact, Any], None]] = {
    ev.TicketSubmitted: _on_submitted, ev.TicketRegistered: _on_registered, ev.TicketMerged: _on_merged,
    ev.TicketSplit: _on_split, ev.ManualTriageRequested: _on_manual_requested,
    ev.ManualTriageResolved: _on_manual_resolved, ev.TicketClassified: _on_classified,
    ev.ConsultationRequested: _on_consultation, ev.SupervisorReviewRequested: _on_review_requested,
    ev.SupervisorDecided: _on_supervisor_decided, ev.PlanAgreed: _on_plan_agreed, ev.RerouteRequested: _on_reroute,
    ev.TaskAssigned: _on_assigned, ev.TaskSignedFor: _on_signed_for, ev.ProgressReported: _on_progress,
    ev.ExtensionRequested: _on_extension_requested, ev.ExtensionDecided: _on_extension_decided,
    ev.TaskReturned: _on_returned, ev.ReturnRejected: _on_return_rejected, ev.TaskCompleted: _on_completed,
    ev.TicketHandled: _on_handled, ev.CallbackRequested: _on_callback_requested,
    ev.CallbackRecorded: _on_callback_recorded, ev.TicketReopened: _on_reopened, ev.TicketClosed: _on_closed,
    ev.SlaReminderSent: _on_reminder, ev.SlaBreached: _on_breached, ev.TicketEscalated: _on_escalated,
}


# ---------------------------------------------------------------------------------------------- timeline

def event_units(data: Event) -> tuple[str, ...]:
    """Every unit an event concerns, the principal one first."""
    if isinstance(data, (ev.TicketClassified, ev.PlanAgreed, ev.SupervisorDecided)):
        return (data.routing.lead, *data.routing.co_units)
    if isinstance(data, ev.ConsultationRequested):
        return tuple(dict.fromkeys((data.proposed.lead, *data.parties)))
    if isinstance(data, ev.SupervisorReviewRequested):
        return (data.proposed.lead, *data.proposed.co_units)
    if isinstance(data, (ev.TicketHandled, ev.CallbackRequested, ev.TicketReopened)):
        return tuple(data.units)
    if isinstance(data, ev.RerouteRequested):
        return tuple(data.excluded_units)
    if isinstance(data, ev.TicketEscalated):
        return (data.to_unit,) if data.to_unit else ()
    unit = data.unit if _has_field(type(data), "unit") else None  # type: ignore[attr-defined]  # _has_field checked it
    return (unit,) if isinstance(unit, str) else ()


def event_round(data: Event) -> int | None:
    """The handling round an event states (task reports do not: their task id carries a dispatch number)."""
    return data.round if _has_field(type(data), "round") else None  # type: ignore[attr-defined]  # _has_field checked it


@cache
def _has_field(model: type[Event], name: str) -> bool:
    # Cached: pydantic's `model_fields` goes through a (deprecation-checking) descriptor on each access.
    return name in model.model_fields


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _iso(moment: datetime) -> str:
    return as_utc(moment).strftime("%Y-%m-%d %H:%M")


_SUMMARIES: dict[type[Event], Callable[[Any], str]] = {
    ev.TicketSubmitted: lambda d: f"submitted via {d.channel.value}: {_short(d.text)}",
    ev.TicketRegistered: lambda d: "registered" + (f" as a repeat of {d.master_ticket_id}" if d.master_ticket_id else ""),
    ev.TicketMerged: lambda d: f"merged into {d.master_ticket_id} (similarity {d.similarity:.2f}): {_short(d.reason)}",
    ev.SplitRequested: lambda d: f"split requested by {d.requested_by}: {_short(d.reason)}",
    ev.TicketSplit: lambda d: f"split from {d.former_master_ticket_id}: {_short(d.reason)}",
    ev.ManualTriageRequested: lambda d: f"manual triage needed: {_short(d.reason)}",
    ev.ManualTriageResolved: lambda d: f"operator {d.operator} chose {d.category}",
    ev.TicketClassified: lambda d: (f"classified {d.category} by {d.method} ({d.confidence:.2f}, catalogue "
                                    f"{d.catalogue_version}); lead {d.routing.lead}"
                                    + (f", co {','.join(d.routing.co_units)}" if d.routing.co_units else "")),
    ev.ConsultationRequested: lambda d: f"consultation with {', '.join(d.parties)}: {_short(d.reason)}",
    ev.OpinionGiven: lambda d: f"{d.unit} " + ("agrees" if d.agrees else f"disagrees, proposes {d.proposed_lead or '-'}"),
    ev.PlanAgreed: lambda d: f"plan agreed: lead {d.routing.lead}, due {_iso(d.deadline)}",
    ev.SupervisorReviewRequested: lambda d: f"supervisor review: {_short(d.reason)}",
    ev.SupervisorDecided: lambda d: f"supervisor {d.supervisor} decided: lead {d.routing.lead}",
    ev.TaskAssigned: lambda d: (f"task to {d.unit} as {d.role.value}, round {d.round}" + (", final" if d.final else "")
                                + (f", due {_iso(d.resolution_due)}" if d.resolution_due else "")),
    ev.TaskSignedFor: lambda d: f"{d.unit} signed for" + (f" ({d.handler})" if d.handler else ""),
    ev.ProgressReported: lambda d: f"{d.unit}: {_short(d.note)}" + (" (waiting on resident)" if d.waiting_on_resident else ""),
    ev.ExtensionRequested: lambda d: f"{d.unit} asks +{d.extra.amount}{d.extra.unit}: {_short(d.reason)}",
    ev.ExtensionDecided: lambda d: f"extension +{d.extra.amount}{d.extra.unit} for {d.unit} " + ("approved" if d.approved else "refused"),
    ev.TaskReturned: lambda d: f"{d.unit} returned it: {_short(d.reason)}",
    ev.ReturnRejected: lambda d: f"return by {d.unit} rejected: {_short(d.reason)}",
    ev.RerouteRequested: lambda d: f"reroute without {', '.join(d.excluded_units)} (return #{d.returns})",
    ev.TaskCompleted: lambda d: f"{d.unit} completed: {_short(d.result)}",
    ev.TicketHandled: lambda d: f"handled (round {d.round}) by {', '.join(d.units)}",
    ev.CallbackRequested: lambda d: f"callback requested (round {d.round})",
    ev.CallbackRecorded: lambda d: (f"callback: {'resolved' if d.resolved else 'unresolved'}, {d.satisfaction.value}"
                                    + ("" if d.reasonable_demand else " (unreasonable demand)")),
    ev.TicketReopened: lambda d: f"reopened for round {d.round}: {_short(d.reason)}",
    ev.TicketClosed: lambda d: f"closed: {d.outcome}" + (f", {d.satisfaction.value}" if d.satisfaction else ""),
    ev.SlaReminderSent: lambda d: f"reminder to {d.unit}: {d.clock} clock {d.fraction:.0%} used, due {_iso(d.deadline)}",
    ev.SlaBreached: lambda d: f"{d.clock} deadline {_iso(d.deadline)} passed ({d.unit})",
    ev.TicketEscalated: lambda d: f"escalated to {d.to_unit or (d.to_level.value if d.to_level else '?')}: {d.reason}",
}


def summary(data: Event) -> str:
    render = _SUMMARIES.get(type(data))
    return _short(render(data), 300) if render else type(data).__name__


def timeline_row(fact: Fact) -> dict[str, Any]:
    units = event_units(fact.data)
    return {
        "event_id": fact.id, "ticket_id": fact.ticket_id, "time": db_time(fact.time),
        "type_rank": TYPE_RANK.get(fact.type, 99), "type": fact.type, "kind": KIND.get(fact.type, fact.type),
        "topic": TOPIC[fact.type], "unit": units[0] if units else None,
        "units": f",{','.join(units)}," if units else "", "round": event_round(fact.data),
        "summary": summary(fact.data), "source": fact.source, "correlation_id": fact.correlation_id,
        "causation_id": fact.causation_id, "payload": stored_payload(fact.data),
    }


# ---------------------------------------------------------------------------------------------- holders

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


def holdings(folded: Folded) -> list[Holding]:
    """The hand-offs of a ticket: the hotline while it is triaged and evaluated, each unit while it holds a task."""
    t = folded.ticket
    out: list[Holding] = []
    intake_start = t.submitted_at or t.registered_at or (folded.facts[0].time if folded.facts else None)
    first_task = min((k.assigned_at for k in folded.tasks if k.assigned_at), default=None)
    if intake_start is not None:
        end = first_task or t.closed_at
        out.append(Holding("hotline", "intake+triage", 0, intake_start, end,
                           "dispatched" if first_task else (t.outcome or t.status) if end else "open"))
    for task in sorted(folded.tasks, key=lambda k: (k.assigned_at or intake_start or datetime.min.replace(tzinfo=UTC), k.task_id)):
        if task.assigned_at is None:
            continue
        out.append(Holding(task.unit, task.role, task.round, task.assigned_at, task.ended_at,
                           task.status if not task.open else "open"))
    for round_, handled_at in sorted(folded.handled_at_by_round.items()):
        after = [k.assigned_at for k in folded.tasks if k.round > round_ and k.assigned_at]
        end = min(after) if after else t.closed_at
        ended_by = "re-handling" if after else (t.outcome or "closed") if end else "open"
        out.append(Holding("hotline", "callback", round_, handled_at, end, ended_by))
    return sorted(out, key=lambda h: (h.start, h.holder))


# ---------------------------------------------------------------------------------------------- rankings

RATES: tuple[tuple[str, str, str, bool], ...] = (
    # (rate, numerator, denominator, higher is better)
    ("response_rate", "responded", "response_n", True),
    ("resolution_rate", "resolved", "callbacks", True),
    ("satisfaction_rate", "satisfied", "rated", True),
    ("on_time_rate", "on_time", "completed", True),
    ("return_rate", "returned", "tasks", False),
    ("rehandling_rate", "rehandled", "handled", False),
)


@dataclass(frozen=True)
class Ranked:
    scope: str
    key: str
    n: int
    counts: dict[str, int]
    rates: dict[str, float | None]
    score: float | None
    rank: int | None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "key": self.key, "n": self.n, "rank": self.rank, "score": self.score,
                **self.rates, "counts": self.counts, "note": self.note}


def rates_of(counts: dict[str, int]) -> dict[str, float | None]:
    return {name: (round(counts[num] / counts[den], 4) if counts.get(den) else None) for name, num, den, _ in RATES}


def score_of(rates: dict[str, float | None]) -> float | None:
    """The mean of the rates that have data, the 'lower is better' ones inverted.

    Never satisfaction alone: a unit that satisfies callers but returns half its tasks ranks low.
    """
    parts = [(v if higher else 1 - v) for (name, _, _, higher) in RATES if (v := rates[name]) is not None]
    return round(sum(parts) / len(parts), 4) if parts else None


def rank(rows: Iterable[tuple[str, str, dict[str, int]]], min_n: int) -> list[Ranked]:
    """Rank each scope's keys by score; keys with fewer than `min_n` tasks are listed, with n, unranked."""
    by_scope: dict[str, list[Ranked]] = {}
    for scope, key, counts in rows:
        counts = {name: int(counts.get(name) or 0) for name in METRIC_COUNTERS}
        rates = rates_of(counts)
        by_scope.setdefault(scope, []).append(Ranked(scope, key, counts["tasks"], counts, rates, score_of(rates), None))
    out: list[Ranked] = []
    for scope in sorted(by_scope):
        out += _rank_scope(by_scope[scope], min_n)
    return out


def _rank_scope(rows: list[Ranked], min_n: int) -> list[Ranked]:
    eligible = sorted((r for r in rows if r.n >= min_n and r.score is not None), key=lambda r: (-r.score, r.key))
    ranked: list[Ranked] = []
    previous: tuple[float | None, int] = (None, 0)
    for position, row in enumerate(eligible, start=1):
        place = previous[1] if row.score == previous[0] else position
        ranked.append(Ranked(**{**row.__dict__, "rank": place}))
        previous = (row.score, place)
    eligible_keys = {r.key for r in eligible}
    rest = sorted((r for r in rows if r.key not in eligible_keys), key=lambda r: (-r.n, r.key))
    ranked += [Ranked(**{**r.__dict__, "note": f"not ranked: n={r.n} < {min_n}" if r.n < min_n else "not ranked: no data"})
               for r in rest]
    return ranked


def aggregate(contributions: Iterable[tuple[str, str, dict[str, int]]]) -> list[tuple[str, str, dict[str, int]]]:
    """Sum per-ticket contributions per (scope, key)."""
    totals: dict[tuple[str, str], dict[str, int]] = {}
    for scope, key, counts in contributions:
        _add(totals.setdefault((scope, key), _zero()), counts)
    return [(scope, key, counts) for (scope, key), counts in sorted(totals.items())]


def parse_facts(rows: Sequence[Any]) -> list[Fact]:
    """Facts from stored timeline rows (objects or mappings with the timeline's columns)."""
    def get(row: Any, name: str) -> Any:
        return row[name] if isinstance(row, dict) else getattr(row, name)
    return [Fact.from_payload(id=get(r, "event_id"), type=get(r, "type"), time=get(r, "time"),
                              ticket_id=get(r, "ticket_id"), payload=get(r, "payload"), source=get(r, "source"),
                              correlation_id=get(r, "correlation_id"), causation_id=get(r, "causation_id"))
            for r in rows]
