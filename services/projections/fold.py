"""The fold: a ticket's events, in any order, become its state, its tasks and its metric contributions.

`fold(facts)` sorts the facts itself (by event time, then lifecycle rank, then id), so its result
depends only on the *set* of events a ticket has. That is what makes the live projection, a rebuild
that reads the topics partition by partition, and an as-of replay agree row for row: topics
interleave differently in each, but the set of a ticket's events is the same. The fold is total:
an unexpected order or a missing event never raises, it just yields a less complete state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from contracts import events as ev
from contracts.envelope import Event
from domain import rates
from domain.calendar import CalendarCoverageError, SlaUnit, WorkCalendar
from domain.reports import Claim, assignment_claim, report_claim, without_refused_reports
from domain.statuses import STICKY_STATUSES, TaskStatus, TicketStatus, status_after_progress

from .facts import Fact, as_utc, is_projected
from .rankings import add_counts, zero_counts
from .state import Callback, Folded, TaskState, TicketState

# ---------------------------------------------------------------------------------------------- the fold

def fold(facts: Iterable[Fact], ticket_id: str | None = None) -> Folded | None:
    """Fold one ticket's events (any order, duplicates allowed) into its projection; None if no events.

    A unit's report on a task that the ticket's events assign to another unit is not folded (the rule of
    `domain.reports`): not dead-lettered, since whether the assignment was read before it depends on the
    order topics are read in, and a rebuild or an as-of replay must give the same rows as the live
    consumer. It stays in the timeline, which is the ticket's log as it was sent."""
    unique = {f.id: f for f in facts if is_projected(f.type)}
    ordered = sorted(without_refused_reports(unique.values(), assignment=_assignment, report=_report),
                     key=lambda f: f.sort_key)
    if not ordered:
        return None
    folding = _Folding(ticket_id or ordered[0].ticket_id)
    for fact in ordered:
        folding.apply(fact)
    return folding.finish(ordered)


def _assignment(fact: Fact) -> Claim | None:
    return assignment_claim(fact.data)


def _report(fact: Fact) -> Claim | None:
    return report_claim(fact.data)


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

    def status(self, status: TicketStatus, *, force: bool = False) -> None:
        if force or self.t.status not in STICKY_STATUSES:
            self.t.status = status

    def location(self, location: ev.Location | None) -> None:
        if location is None or not any((location.district, location.street, location.community, location.grid)):
            return
        self.t.district, self.t.street = location.district, location.street
        self.t.community, self.t.grid = location.community, location.grid

    def registered(self, ticket: ev.RegisteredTicket) -> None:
        t = self.t
        t.channel, t.text, t.urgency = ticket.channel.value, ticket.text, ticket.urgency.value
        t.proactive_rule = t.proactive_rule or ticket.proactive_rule
        t.category = t.category or ticket.category
        t.submitted_at = t.submitted_at or as_utc(ticket.submitted_at)
        t.external_id = t.external_id or ticket.external_id
        t.reported_by = t.reported_by or ticket.reported_by
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
                task.end(TaskStatus.withdrawn, at)

    def lead_moves(self, task: TaskState, status: TicketStatus) -> None:
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
        area = zero_counts()
        for task in self.tasks.values():
            counts = _task_counts(task)
            add_counts(per_unit.setdefault(task.unit, zero_counts()), counts)
            add_counts(area, counts)
        for units, counts in self._round_counts():
            for unit in units:
                add_counts(per_unit.setdefault(unit, zero_counts()), counts)
            add_counts(area, counts)  # once per ticket round, however many units shared it
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
            counts = rates.callback_counts(resolved=cb.resolved, satisfaction=cb.satisfaction,
                                           reasonable_demand=cb.reasonable)
            yield self._units_of_round(cb.round), {
                "callbacks": counts.callbacks, "resolved": counts.resolved, "rated": counts.rated,
                "satisfied": counts.satisfied}

    def _units_of_round(self, round_: int) -> tuple[str, ...]:
        if round_ in self.handled_units:
            return self.handled_units[round_]
        return tuple(sorted({k.unit for k in self.tasks.values() if k.round == round_ and k.status != TaskStatus.returned}))


def _task_counts(task: TaskState) -> dict[str, int]:
    breached = task.breached.split(",")
    response = rates.response_counts(signed_for=task.signed_for_at is not None, sign_for_breached="sign_for" in breached)
    return {
        "tasks": 1,
        "response_n": response.response_n,
        "responded": response.responded,
        "returned": task.returns,
        "completed": int(task.completed_at is not None),
        "on_time": int(task.completed_at is not None and "resolution" not in breached),
    }


def _limits_text(limits: ev.Limits) -> str:
    return "/".join(f"{x.amount}{x.unit}" for x in (limits.sign_for, limits.response, limits.resolution))


# The calendar nominal deadlines are counted on: the one the settings describe, as sla's clocks are
# (set by `use_calendar`; until then the environment's ProjectionsSettings). A module-level choice
# rather than a fold argument because every fold of a process must count on the same calendar.
_CALENDAR: list[WorkCalendar] = []


def use_calendar(calendar: WorkCalendar) -> None:
    """Count nominal deadlines on this calendar from now on (the app and the replay tools pass their
    settings' `work_calendar()`)."""
    if not _CALENDAR or _CALENDAR[0] is not calendar:
        _CALENDAR[:] = [calendar]
        _calendar_deadline.cache_clear()


def _calendar() -> WorkCalendar:
    if not _CALENDAR:
        from .settings import ProjectionsSettings

        _CALENDAR.append(ProjectionsSettings().work_calendar())
    return _CALENDAR[0]


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
    # No source reads the intake topic any more (issue 11: its records carry the sealed caller); this folds
    # the submissions already kept in timelines stored before, so those tickets read as they did.
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
    f.status(TicketStatus.registered)


def _on_merged(f: _Folding, fact: Fact, d: ev.TicketMerged) -> None:
    f.t.master_ticket_id = d.master_ticket_id
    if f.t.status != TicketStatus.closed:
        f.status(TicketStatus.merged, force=True)


def _on_split(f: _Folding, fact: Fact, d: ev.TicketSplit) -> None:
    f.registered(d.ticket)
    f.t.master_ticket_id = None
    if f.t.status == TicketStatus.merged:
        f.status(TicketStatus.registered, force=True)


def _on_manual_requested(f: _Folding, fact: Fact, d: ev.ManualTriageRequested) -> None:
    f.registered(d.ticket)
    f.status(TicketStatus.manual_triage)


def _on_manual_resolved(f: _Folding, fact: Fact, d: ev.ManualTriageResolved) -> None:
    f.t.category, f.t.classified_by = d.category, "manual"
    f.status(TicketStatus.classified)


def _on_classified(f: _Folding, fact: Fact, d: ev.TicketClassified) -> None:
    t = f.t
    f.registered(d.ticket)
    t.category, t.catalogue_version, t.classified_by = d.category, d.catalogue_version, d.method
    t.limits = _limits_text(d.limits)
    t.classified_at = t.classified_at or fact.time
    f.routing(d.routing)
    f.status(TicketStatus.classified)


def _on_consultation(f: _Folding, fact: Fact, d: ev.ConsultationRequested) -> None:
    f.t.category, f.t.limits = d.category, _limits_text(d.limits)
    f.routing(d.proposed)
    f.status(TicketStatus.consulting)


def _on_review_requested(f: _Folding, fact: Fact, d: ev.SupervisorReviewRequested) -> None:
    f.status(TicketStatus.supervisor_review)


def _on_supervisor_decided(f: _Folding, fact: Fact, d: ev.SupervisorDecided) -> None:
    f.routing(d.routing)
    f.t.final = True
    f.status(TicketStatus.decided)


def _on_plan_agreed(f: _Folding, fact: Fact, d: ev.PlanAgreed) -> None:
    f.routing(d.routing)
    f.t.resolution_due = as_utc(d.deadline)
    f.t.category, f.t.limits = d.category, _limits_text(d.limits)
    f.status(TicketStatus.agreed)


def _on_reroute(f: _Folding, fact: Fact, d: ev.RerouteRequested) -> None:
    f.t.reroutes += 1
    f.withdraw_open(fact.time)
    f.status(TicketStatus.rerouting)


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
    f.lead_moves(task, TicketStatus.dispatched)


def _on_signed_for(f: _Folding, fact: Fact, d: ev.TaskSignedFor) -> None:
    task = f.task(d.task_id, d.unit)
    task.signed_for_at = task.signed_for_at or fact.time
    if task.status == TaskStatus.assigned:
        task.status = TaskStatus.signed_for
    if task.role == "lead":
        f.t.signed_for_at = f.t.signed_for_at or fact.time
    f.lead_moves(task, TicketStatus.signed_for)


def _on_progress(f: _Folding, fact: Fact, d: ev.ProgressReported) -> None:
    task = f.task(d.task_id, d.unit)
    task.first_progress_at = task.first_progress_at or fact.time
    if task.open:
        task.status = status_after_progress(d.waiting_on_resident)
        f.lead_moves(task, TicketStatus(task.status))


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
    if d.escalate_to is None:  # an escalation up the area chain is not a return: it counts in no return rate
        task.returns += 1
        f.t.returns += 1
    if task.open:
        task.status_before_return = task.status
        task.end(TaskStatus.returned, fact.time)
        f.lead_moves(task, TicketStatus.returned)


def _on_return_rejected(f: _Folding, fact: Fact, d: ev.ReturnRejected) -> None:
    task = f.task(d.task_id, d.unit)
    if task.status == TaskStatus.returned:
        task.status, task.open, task.ended_at = task.status_before_return, True, None
        f.lead_moves(task, TicketStatus(task.status) if task.status != TaskStatus.assigned else TicketStatus.dispatched)


def _on_completed(f: _Folding, fact: Fact, d: ev.TaskCompleted) -> None:
    task = f.task(d.task_id, d.unit)
    task.completed_at = task.completed_at or fact.time
    task.end(TaskStatus.completed, task.ended_at if task.status == TaskStatus.completed and task.ended_at else fact.time)
    f.lead_moves(task, TicketStatus.completed)


def _on_handled(f: _Folding, fact: Fact, d: ev.TicketHandled) -> None:
    f.handled_units[d.round] = tuple(d.units)
    f.handled_at[d.round] = fact.time
    f.t.handled_at = fact.time
    f.t.handled_level = d.level.value if d.level is not None else f.t.level
    f.t.on_the_spot, f.t.escalated_up = d.resolved_on_the_spot, d.escalated
    f.t.category = f.t.category or d.category
    if f.t.district is None and f.t.grid is None:
        f.location(d.location)
    f.status(TicketStatus.handled)


def _on_callback_requested(f: _Folding, fact: Fact, d: ev.CallbackRequested) -> None:
    f.status(TicketStatus.callback)


def _on_callback_recorded(f: _Folding, fact: Fact, d: ev.CallbackRecorded) -> None:
    f.callbacks.append(Callback(d.round, d.resolved, d.satisfaction.value, d.reasonable_demand))
    f.t.resolved, f.t.satisfaction, f.t.reasonable_demand = d.resolved, d.satisfaction.value, d.reasonable_demand
    f.status(TicketStatus.evaluated)


def _on_reopened(f: _Folding, fact: Fact, d: ev.TicketReopened) -> None:
    f.reopened_rounds.append(d.round)
    f.t.reopens += 1
    f.t.round = max(f.t.round, d.round)
    f.t.outcome, f.t.closed_at = None, None
    f.status(TicketStatus.reopened, force=True)


def _on_closed(f: _Folding, fact: Fact, d: ev.TicketClosed) -> None:
    t = f.t
    t.outcome, t.closed_at = d.outcome, fact.time
    t.satisfaction = d.satisfaction.value if d.satisfaction else t.satisfaction
    t.master_ticket_id = d.master_ticket_id or t.master_ticket_id
    for task in f.tasks.values():
        if task.open:
            task.end(TaskStatus.closed, fact.time)
    f.status(TicketStatus.closed, force=True)


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
