"""act: dispatch to units' topics, follow their reports, decide extensions and returns, detect completion.

A unit's task topic depends on its level (contracts/topics.py `unit_task_topic`): area units share one
topic, so act knows each unit's level from the responsibility catalogue (`ActDeps`), and keys every record
it sends a unit by the unit id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.topics import ACT, CONSULT, EVALUATE, SLA, TRIAGE, UNIT_REPORTS, unit_task_topic
from domain.grid_workers import escalation_refusal, on_the_spot_refusal
from domain.reports import report_refusal
from domain.statuses import status_after_progress
from services.common.handler import Batched, Emit, HandlerContext, HandlerSpec, NotYet, Rejected, settings_as

from . import domain
from .settings import ActSettings
from .state import ActBatch, TaskRow, TicketRow

TOPICS = [TRIAGE.name, CONSULT.name, UNIT_REPORTS.name, EVALUATE.name, SLA.name]
EVENT_TYPES = [m.event_type for m in (ev.TicketClassified, ev.PlanAgreed, ev.SupervisorDecided, ev.TaskSignedFor,
                                      ev.ProgressReported, ev.ExtensionRequested, ev.TaskReturned, ev.TaskCompleted,
                                      ev.TicketReopened, ev.ConsultationRequested, ev.SlaReminderSent, ev.TicketEscalated)]


@dataclass(frozen=True)
class ActDeps:
    """Each unit's catalogue level, which decides its task topic; None for a unit the catalogue does not list
    (then it gets a topic of its own, as a department does: a task is never dropped for an unknown level)."""

    level_of: Callable[[str], str | None]


Ctx = HandlerContext[ActDeps]


def spec(deps: ActDeps) -> HandlerSpec[ActDeps]:
    """What the pipeline runs: each batch's events applied to its tickets and tasks (`BATCH`)."""
    return HandlerSpec(topics=TOPICS, event_types=EVENT_TYPES, deps=deps, batch=BATCH)


def to_unit(ctx: Ctx, unit: str, envelope: Envelope[Any]) -> Emit:
    """The record that brings `envelope` to `unit`, keyed by the unit id (one unit's records stay in order,
    and readers of the shared area topic skip other units' records without decoding them)."""
    return Emit(unit_task_topic(unit, ctx.deps.level_of(unit)), envelope, key=unit)


def handle(ctx: Ctx, envelope: Envelope[Any]) -> Iterable[Emit]:
    """One event on its own (tests, tools): a batch of one."""
    return BATCH.one(ctx, envelope)


def _apply(ctx: Ctx, batch: ActBatch, envelope: Envelope[Any]) -> list[Emit]:
    match envelope.data:
        case ev.TicketClassified():
            return on_classified(ctx, batch, envelope)
        case ev.PlanAgreed():
            return dispatch(ctx, batch, envelope, envelope.data.routing, resolution_due=envelope.data.deadline)
        case ev.SupervisorDecided():
            return dispatch(ctx, batch, envelope, envelope.data.routing, final=True)
        case ev.TaskSignedFor():
            return set_task_state(batch, envelope, domain.TaskStatus.signed_for)
        case ev.ProgressReported():
            return set_task_state(batch, envelope, status_after_progress(envelope.data.waiting_on_resident))
        case ev.ExtensionRequested():
            return decide_extension(ctx, batch, envelope)
        case ev.TaskReturned():
            return on_returned(ctx, batch, envelope)
        case ev.TaskCompleted():
            return on_completed(ctx, batch, envelope)
        case ev.TicketReopened():
            return rehandle(ctx, batch, envelope)
        case ev.ConsultationRequested() | ev.SlaReminderSent() | ev.TicketEscalated():
            return forward_to_units(ctx, batch, envelope)
    return []


# ---------------------------------------------------------------------------- a batch's working state

def start_batch(ctx: Ctx, envelopes: list[Envelope[Any]]) -> ActBatch:
    """Load the tickets of these events, with their tasks, in one query per table."""
    batch = ActBatch(ctx.session.connection())
    batch.load((e.ticket_id for e in envelopes), [t for e in envelopes if (t := getattr(e.data, "task_id", None))])
    return batch


def finish_batch(ctx: Ctx, batch: ActBatch) -> None:
    """Write what the batch added and changed, one statement per table and kind of change."""
    batch.write()


BATCH: Batched[ActDeps, ActBatch] = Batched(start=start_batch, apply=_apply, finish=finish_batch)


# ---------------------------------------------------------------------------- the rules

def _ticket(batch: ActBatch, ticket_id: str) -> TicketRow:
    row = batch.ticket(ticket_id)
    if row is None:
        raise NotYet(f"act has no classified ticket {ticket_id} yet")
    return row


def _open_tasks(batch: ActBatch, ticket_id: str) -> list[TaskRow]:
    return [t for t in batch.tasks_of(ticket_id) if t.status in domain.OPEN_TASK_STATES]


def on_classified(ctx: Ctx, batch: ActBatch, envelope: Envelope[Any]) -> list[Emit]:
    c: ev.TicketClassified = envelope.data
    row = batch.ticket(envelope.ticket_id)
    if row is None:
        row = TicketRow(ticket_id=envelope.ticket_id, classified_json="")
        batch.add_ticket(row)
    row.classified_json = c.model_dump_json()
    row.status = "waiting"
    if c.needs_consultation:
        return []  # consult convenes the parties; we dispatch on its plan or the supervisor's decision
    return dispatch(ctx, batch, envelope, c.routing)


def dispatch(ctx: Ctx, batch: ActBatch, cause: Envelope[Any], routing: ev.Routing, *, final: bool = False,
             resolution_due: datetime | None = None) -> list[Emit]:
    row = _ticket(batch, cause.ticket_id)
    c = row.classified()
    for task in _open_tasks(batch, row.ticket_id):
        task.status = domain.TaskStatus.withdrawn  # a new plan replaces whatever was still open
    row.dispatches += 1
    row.lead, row.co_units, row.final, row.status = routing.lead, ",".join(routing.co_units), final, "dispatched"
    units = domain.assignments(routing)
    out = []
    for i, (unit, role) in enumerate(units):
        tid = domain.task_id(row.ticket_id, unit, row.dispatches)
        batch.add_task(TaskRow(task_id=tid, ticket_id=row.ticket_id, unit=unit, role=role.value, round=row.round,
                               dispatch_no=row.dispatches, final=final))
        assigned = ev.TaskAssigned(task_id=tid, unit=unit, role=role, round=row.round, final=final, category=c.category,
                                   limits=c.limits, resolution_due=resolution_due,
                                   joint_with=tuple(u for u, _ in units if u != unit), ticket=c.ticket)
        env = cause.caused(assigned, source=ctx.source, index=i, id_extra=tid)
        out += [Emit(ACT.name, env), to_unit(ctx, unit, env)]
    return out


def _task(batch: ActBatch, task_id: str) -> TaskRow:
    task = batch.task(task_id)
    if task is None:
        raise NotYet(f"unknown task {task_id}")
    return task


def _reported_task(batch: ActBatch, envelope: Envelope[Any]) -> TaskRow:
    """The task a unit's report is about, once it is known to be that unit's (else the report changes nothing
    and is dead-lettered: anyone who can write to the unit-reports topic could claim to be any unit)."""
    report = envelope.data
    task = _task(batch, report.task_id)
    refusal = report_refusal(type(report).__name__, task.task_id, task.unit, report.unit)
    if refusal is not None:
        raise Rejected(refusal)
    return task


def set_task_state(batch: ActBatch, envelope: Envelope[Any], state: str) -> list[Emit]:
    task = _reported_task(batch, envelope)
    if task.status in domain.OPEN_TASK_STATES:
        task.status = state
    return []


def decide_extension(ctx: Ctx, batch: ActBatch, envelope: Envelope[Any]) -> list[Emit]:
    r: ev.ExtensionRequested = envelope.data
    task = _reported_task(batch, envelope)
    approved, reason = domain.extension_decision(task.extensions, settings_as(ctx, ActSettings).max_extensions, task.final)
    task.extensions += int(approved)
    decided = envelope.caused(ev.ExtensionDecided(task_id=r.task_id, unit=r.unit, approved=approved, extra=r.extra,
                                                  reason=reason), source=ctx.source)
    return [Emit(ACT.name, decided), to_unit(ctx, r.unit, decided)]


def on_returned(ctx: Ctx, batch: ActBatch, envelope: Envelope[Any]) -> list[Emit]:
    r: ev.TaskReturned = envelope.data
    task = _reported_task(batch, envelope)
    if task.status not in domain.OPEN_TASK_STATES:
        return []
    if task.final:
        rejected = envelope.caused(ev.ReturnRejected(task_id=r.task_id, unit=r.unit,
                                                     reason="assigned by a supervisor's final decision: it may not be returned"),
                                   source=ctx.source)
        return [Emit(ACT.name, rejected), to_unit(ctx, r.unit, rejected)]
    if r.escalate_to is not None:
        return escalate(ctx, batch, envelope, task)
    task.status = domain.TaskStatus.returned
    if task.role == ev.Role.co.value:
        return _maybe_handled(ctx, batch, envelope, task.ticket_id)  # the lead carries on without this co-unit
    row = _ticket(batch, task.ticket_id)
    for other in _open_tasks(batch, row.ticket_id):
        other.status = domain.TaskStatus.withdrawn
    row.returns += 1
    excluded = [u for u in row.excluded.split(",") if u] + [r.unit]
    row.excluded, row.status = ",".join(dict.fromkeys(excluded)), "rerouting"
    c = row.classified()
    reroute = ev.RerouteRequested(category=c.category, excluded_units=tuple(dict.fromkeys(excluded)), returns=row.returns,
                                  reason=r.reason, suggested_unit=r.suggested_unit, ticket=c.ticket)
    return [Emit(ACT.name, envelope.caused(reroute, source=ctx.source))]


def escalate(ctx: Ctx, batch: ActBatch, envelope: Envelope[Any], task: TaskRow) -> list[Emit]:
    """An area unit sent the matter up (上报): the whole ticket goes to triage again, which routes it to the area
    of the level asked for. The escalating unit is excluded like a returning one, but an escalation is not a
    dispute over ownership, so the return count (which convenes consultation) is left alone."""
    r: ev.TaskReturned = envelope.data
    row = _ticket(batch, task.ticket_id)
    c = row.classified()
    refusal = escalation_refusal(_lead_level(c, task), r.escalate_to or "") if task.role == ev.Role.lead.value else (
        "only the lead unit escalates a task")
    if refusal is not None:
        raise Rejected(f"TaskReturned {r.task_id} from {r.unit}: {refusal}")
    task.status = domain.TaskStatus.returned
    for other in _open_tasks(batch, row.ticket_id):
        other.status = domain.TaskStatus.withdrawn
    excluded = tuple(dict.fromkeys([u for u in row.excluded.split(",") if u] + [r.unit]))
    row.excluded, row.status = ",".join(excluded), "rerouting"
    # `returns` is at least 1 on the wire: the escalating unit gave the task up once, though it is not counted.
    reroute = ev.RerouteRequested(category=c.category, excluded_units=excluded, returns=max(row.returns, 1),
                                  reason=r.reason, escalate_to=r.escalate_to, ticket=c.ticket,
                                  escalation_reason=r.escalation_reason or ev.EscalationReason.help_requested)
    return [Emit(ACT.name, envelope.caused(reroute, source=ctx.source))]


def on_completed(ctx: Ctx, batch: ActBatch, envelope: Envelope[Any]) -> list[Emit]:
    task = _reported_task(batch, envelope)
    if task.status not in domain.OPEN_TASK_STATES:
        return []
    if envelope.data.resolved_on_the_spot:
        _resolve_on_the_spot(batch, envelope, task)
    task.status, task.result = domain.TaskStatus.completed, envelope.data.result
    return _maybe_handled(ctx, batch, envelope, task.ticket_id)


def _lead_level(c: ev.TicketClassified, task: TaskRow) -> str:
    """The level of the task's unit as triage routed it; unknown ("") when an agreed plan or a supervisor gave the
    task to another unit than triage's lead (act keeps no catalogue to look it up): then neither rule applies."""
    return c.routing.level.value if task.unit == c.routing.lead else ""


def _resolve_on_the_spot(batch: ActBatch, envelope: Envelope[Any], task: TaskRow) -> None:
    """A grid worker closed the matter where it was: the co-units' tasks are withdrawn (domain/grid_workers.py)."""
    c = _ticket(batch, task.ticket_id).classified()
    refusal = on_the_spot_refusal(lead_level=_lead_level(c, task), role=task.role, needs_consultation=c.needs_consultation,
                                  proactive=c.ticket.proactive_rule is not None)
    if refusal is not None:
        raise Rejected(f"TaskCompleted {task.task_id} from {task.unit} on the spot: {refusal}")
    for other in _open_tasks(batch, task.ticket_id):
        if other.task_id != task.task_id:
            other.status = domain.TaskStatus.withdrawn


def _maybe_handled(ctx: Ctx, batch: ActBatch, cause: Envelope[Any], ticket_id: str) -> list[Emit]:
    row = _ticket(batch, ticket_id)
    tasks = [t for t in batch.tasks_of(ticket_id) if t.dispatch_no == row.dispatches]
    if row.status != "dispatched" or not domain.handling_complete([(ev.Role(t.role), t.status) for t in tasks]):
        return []
    row.status = "handled"
    done = sorted((t for t in tasks if t.status == domain.TaskStatus.completed), key=lambda t: t.role != "lead")
    c = row.classified()
    on_the_spot = isinstance(cause.data, ev.TaskCompleted) and cause.data.resolved_on_the_spot
    handled = ev.TicketHandled(round=row.round, units=tuple(t.unit for t in done), results=tuple(t.result or "" for t in done),
                               category=c.category, location=c.ticket.location,
                               level=c.routing.level if row.lead == c.routing.lead else None,  # (see _lead_level)
                               resolved_on_the_spot=on_the_spot, escalated=c.escalation_reason is not None)
    return [Emit(ACT.name, cause.caused(handled, source=ctx.source))]


def rehandle(ctx: Ctx, batch: ActBatch, envelope: Envelope[Any]) -> list[Emit]:
    r: ev.TicketReopened = envelope.data
    row = _ticket(batch, envelope.ticket_id)
    row.round = r.round
    routing = ev.Routing(lead=r.units[0], co_units=tuple(r.units[1:]), level=row.classified().routing.level)
    return dispatch(ctx, batch, envelope, routing, final=row.final)


def forward_to_units(ctx: Ctx, batch: ActBatch, envelope: Envelope[Any]) -> list[Emit]:
    """act is the one writer of the units' task topics: consult's consultations and sla's notices addressed to
    units reach them through here, unchanged (the same event, with its id and source)."""
    def unit_of_task(task_id: str) -> str | None:
        task = batch.task(task_id)
        return task.unit if task is not None else None

    return [to_unit(ctx, unit, envelope) for unit in addressees(envelope.data, unit_of_task)]


def addressees(d: Any, unit_of_task: Callable[[str], str | None]) -> list[str]:
    """The units consult and sla address an event to (as they did when they wrote to the units' topics themselves)."""
    match d:
        case ev.ConsultationRequested():
            return list(d.parties)
        case ev.SlaReminderSent():
            return [d.unit]
        case ev.TicketEscalated(reason="breach"):  # the unit that let the clock run out, and its supervisor
            unit = unit_of_task(d.task_id) if d.task_id else None
            units = [unit] if unit is not None else []
            return units + ([d.to_unit] if d.to_unit and d.to_unit not in units else [])
        case ev.TicketEscalated():  # arbitration of a ping-pong: the arbiter only
            return [d.to_unit] if d.to_unit else []
    return []
