"""act: dispatch to units' topics, follow their reports, decide extensions and returns, detect completion."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlmodel import select

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.topics import ACT, CONSULT, EVALUATE, TRIAGE, UNIT_REPORTS, unit_task_topic
from services.common.pipeline import Emit, HandlerContext, NotYet

from . import domain
from .models import ActTicket, Task

TOPICS = [TRIAGE.name, CONSULT.name, UNIT_REPORTS.name, EVALUATE.name]
EVENT_TYPES = [m.event_type for m in (ev.TicketClassified, ev.PlanAgreed, ev.SupervisorDecided, ev.TaskSignedFor,
                                      ev.ProgressReported, ev.ExtensionRequested, ev.TaskReturned, ev.TaskCompleted,
                                      ev.TicketReopened)]


def handle(ctx: HandlerContext, envelope: Envelope[Any]) -> Iterable[Emit]:
    match envelope.data:
        case ev.TicketClassified():
            return on_classified(ctx, envelope)
        case ev.PlanAgreed():
            return dispatch(ctx, envelope, envelope.data.routing, resolution_due=envelope.data.deadline)
        case ev.SupervisorDecided():
            return dispatch(ctx, envelope, envelope.data.routing, final=True)
        case ev.TaskSignedFor():
            return set_task_state(ctx, envelope, "signed-for")
        case ev.ProgressReported():
            return set_task_state(ctx, envelope, "in-progress")
        case ev.ExtensionRequested():
            return decide_extension(ctx, envelope)
        case ev.TaskReturned():
            return on_returned(ctx, envelope)
        case ev.TaskCompleted():
            return on_completed(ctx, envelope)
        case ev.TicketReopened():
            return rehandle(ctx, envelope)
    return ()


def _ticket(ctx: HandlerContext, ticket_id: str) -> ActTicket:
    row = ctx.session.get(ActTicket, ticket_id)
    if row is None:
        raise NotYet(f"act has no classified ticket {ticket_id} yet")
    return row


def _open_tasks(ctx: HandlerContext, ticket_id: str) -> list[Task]:
    return list(ctx.session.exec(select(Task).where(Task.ticket_id == ticket_id, Task.status.in_(domain.OPEN_TASK_STATES))).all())


def on_classified(ctx: HandlerContext, envelope: Envelope[Any]) -> list[Emit]:
    c: ev.TicketClassified = envelope.data
    row = ctx.session.get(ActTicket, envelope.ticket_id) or ActTicket(ticket_id=envelope.ticket_id, classified_json="")
    row.classified_json = c.model_dump_json()
    row.status = "waiting"
    ctx.session.add(row)
    if c.needs_consultation:
        return []  # consult convenes the parties; we dispatch on its plan or the supervisor's decision
    return dispatch(ctx, envelope, c.routing)


def dispatch(ctx: HandlerContext, cause: Envelope[Any], routing: ev.Routing, *, final: bool = False,
             resolution_due: datetime | None = None) -> list[Emit]:
    row = _ticket(ctx, cause.ticket_id)
    c = ev.TicketClassified.model_validate_json(row.classified_json)
    for task in _open_tasks(ctx, row.ticket_id):
        task.status = "withdrawn"  # a new plan replaces whatever was still open
    row.dispatches += 1
    row.lead, row.co_units, row.final, row.status = routing.lead, ",".join(routing.co_units), final, "dispatched"
    units = domain.assignments(routing)
    out = []
    for i, (unit, role) in enumerate(units):
        tid = domain.task_id(row.ticket_id, unit, row.dispatches)
        ctx.session.add(Task(task_id=tid, ticket_id=row.ticket_id, unit=unit, role=role.value, round=row.round,
                             dispatch_no=row.dispatches, final=final))
        assigned = ev.TaskAssigned(task_id=tid, unit=unit, role=role, round=row.round, final=final, category=c.category,
                                   limits=c.limits, resolution_due=resolution_due,
                                   joint_with=tuple(u for u, _ in units if u != unit), ticket=c.ticket)
        env = cause.caused(assigned, source=ctx.source, index=i, id_extra=tid)
        out += [Emit(ACT.name, env), Emit(unit_task_topic(unit), env)]
    return out


def _task(ctx: HandlerContext, task_id: str) -> Task:
    task = ctx.session.get(Task, task_id)
    if task is None:
        raise NotYet(f"unknown task {task_id}")
    return task


def set_task_state(ctx: HandlerContext, envelope: Envelope[Any], state: str) -> list[Emit]:
    task = _task(ctx, envelope.data.task_id)
    if task.status in ("assigned", "signed-for", "in-progress"):
        task.status = state
    return []


def decide_extension(ctx: HandlerContext, envelope: Envelope[Any]) -> list[Emit]:
    r: ev.ExtensionRequested = envelope.data
    task = _task(ctx, r.task_id)
    approved, reason = domain.extension_decision(task.extensions, ctx.settings.max_extensions, task.final)
    task.extensions += int(approved)
    decided = envelope.caused(ev.ExtensionDecided(task_id=r.task_id, unit=r.unit, approved=approved, extra=r.extra,
                                                  reason=reason), source=ctx.source)
    return [Emit(ACT.name, decided), Emit(unit_task_topic(r.unit), decided)]


def on_returned(ctx: HandlerContext, envelope: Envelope[Any]) -> list[Emit]:
    r: ev.TaskReturned = envelope.data
    task = _task(ctx, r.task_id)
    if task.status not in domain.OPEN_TASK_STATES:
        return []
    if task.final:
        rejected = envelope.caused(ev.ReturnRejected(task_id=r.task_id, unit=r.unit,
                                                     reason="assigned by a supervisor's final decision: it may not be returned"),
                                   source=ctx.source)
        return [Emit(ACT.name, rejected), Emit(unit_task_topic(r.unit), rejected)]
    task.status = "returned"
    if task.role == ev.Role.co.value:
        return _maybe_handled(ctx, envelope, task.ticket_id)  # the lead carries on without this co-unit
    row = _ticket(ctx, task.ticket_id)
    for other in _open_tasks(ctx, row.ticket_id):
        other.status = "withdrawn"
    row.returns += 1
    excluded = [u for u in row.excluded.split(",") if u] + [r.unit]
    row.excluded, row.status = ",".join(dict.fromkeys(excluded)), "rerouting"
    c = ev.TicketClassified.model_validate_json(row.classified_json)
    reroute = ev.RerouteRequested(category=c.category, excluded_units=tuple(dict.fromkeys(excluded)), returns=row.returns,
                                  reason=r.reason, suggested_unit=r.suggested_unit, ticket=c.ticket)
    return [Emit(ACT.name, envelope.caused(reroute, source=ctx.source))]


def on_completed(ctx: HandlerContext, envelope: Envelope[Any]) -> list[Emit]:
    task = _task(ctx, envelope.data.task_id)
    if task.status not in domain.OPEN_TASK_STATES:
        return []
    task.status, task.result = "completed", envelope.data.result
    return _maybe_handled(ctx, envelope, task.ticket_id)


def _maybe_handled(ctx: HandlerContext, cause: Envelope[Any], ticket_id: str) -> list[Emit]:
    row = _ticket(ctx, ticket_id)
    tasks = list(ctx.session.exec(select(Task).where(Task.ticket_id == ticket_id, Task.dispatch_no == row.dispatches)).all())
    ctx.session.flush()
    if row.status != "dispatched" or not domain.handling_complete([(ev.Role(t.role), t.status) for t in tasks]):
        return []
    row.status = "handled"
    done = sorted((t for t in tasks if t.status == "completed"), key=lambda t: t.role != "lead")
    c = ev.TicketClassified.model_validate_json(row.classified_json)
    handled = ev.TicketHandled(round=row.round, units=tuple(t.unit for t in done), results=tuple(t.result or "" for t in done),
                               category=c.category, location=c.ticket.location)
    return [Emit(ACT.name, cause.caused(handled, source=ctx.source))]


def rehandle(ctx: HandlerContext, envelope: Envelope[Any]) -> list[Emit]:
    r: ev.TicketReopened = envelope.data
    row = _ticket(ctx, envelope.ticket_id)
    row.round = r.round
    routing = ev.Routing(lead=r.units[0], co_units=tuple(r.units[1:]),
                         level=ev.TicketClassified.model_validate_json(row.classified_json).routing.level)
    return dispatch(ctx, envelope, routing, final=row.final)
