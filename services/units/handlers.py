"""Simulated units (and, optionally, callback operators and a supervisor) on top of the SDK's reports."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlmodel import select

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.registry import model_for
from contracts.topics import CONSULT, EVALUATE, UNIT_REPORTS
from services.common.pipeline import Emit, HandlerContext

from . import domain, sdk
from .models import PendingAction

EVENT_TYPES = [m.event_type for m in (ev.TaskAssigned, ev.ConsultationRequested, ev.ReturnRejected,
                                      ev.CallbackRequested, ev.SupervisorReviewRequested)]


def handle(ctx: HandlerContext, envelope: Envelope[Any]) -> Iterable[Emit]:
    units: set[str] = ctx.extras["units"]
    d = envelope.data
    match d:
        case ev.TaskAssigned() if d.unit in units:
            for i, a in enumerate(domain.plan_task(d, ctx.settings)):
                _schedule(ctx, envelope, d.unit, a, i)
        case ev.ConsultationRequested():
            for unit in sorted(set(d.parties) & units):
                _schedule(ctx, envelope, unit, domain.plan_opinion(d, unit, ctx.settings), 0)
        case ev.ReturnRejected() if d.unit in units:
            _schedule(ctx, envelope, d.unit, domain.PlannedAction("complete-rejected", ctx.settings.work_delay_s,
                                                                  {"result": "handled after the return was refused (simulated)"}), 0)
        case ev.CallbackRequested() if ctx.settings.callbacks:
            _schedule(ctx, envelope, "hotline", domain.plan_callback(d, envelope.ticket_id, ctx.settings), 0)
        case ev.SupervisorReviewRequested() if ctx.settings.supervisor:
            _schedule(ctx, envelope, "supervisor", domain.plan_decision(d), 0)
    return ()


def _schedule(ctx: HandlerContext, cause: Envelope[Any], unit: str, action: domain.PlannedAction, index: int) -> None:
    action_id = f"{cause.id}:{unit}:{index}"
    if ctx.session.get(PendingAction, action_id) is None:
        ctx.session.add(PendingAction(action_id=action_id, due_at=ctx.now() + timedelta(seconds=action.delay_s),
                                      kind=action.kind, unit=unit, cause_json=cause.model_dump_json(), cause_type=cause.type,
                                      detail_json=json.dumps(action.detail)))


def send_due(ctx: HandlerContext) -> list[Emit]:
    """Tick: send every simulated action whose time has come."""
    due = ctx.session.exec(select(PendingAction).where(PendingAction.due_at <= ctx.now()).order_by(PendingAction.due_at)
                           .limit(2000)).all()
    out = []
    for row in due:
        cause = Envelope[model_for(row.cause_type)].model_validate_json(row.cause_json)  # type: ignore[misc]
        out.append(_action_event(row, cause, json.loads(row.detail_json), ctx))
        ctx.session.delete(row)
    return out


def _action_event(row: PendingAction, cause: Envelope[Any], detail: dict[str, Any], ctx: HandlerContext) -> Emit:
    u = row.unit
    match row.kind:
        case "sign-for":
            return Emit(UNIT_REPORTS.name, sdk.sign_for(cause, u))
        case "progress":
            return Emit(UNIT_REPORTS.name, sdk.progress(cause, u, detail["note"]))
        case "extension":
            return Emit(UNIT_REPORTS.name, sdk.request_extension(cause, u, detail["amount"], detail["unit"], detail["reason"]))
        case "return":
            return Emit(UNIT_REPORTS.name, sdk.return_task(cause, u, detail["reason"]))
        case "complete" | "complete-rejected":
            return Emit(UNIT_REPORTS.name, sdk.complete(cause, u, detail["result"]) if row.kind == "complete"
                        else sdk.report(cause, ev.TaskCompleted(task_id=cause.data.task_id, unit=u, result=detail["result"]), u))
        case "opinion":
            return Emit(UNIT_REPORTS.name, sdk.opinion(cause, u, detail["agrees"], comment="simulated opinion"))
        case "callback":
            data = ev.CallbackRecorded(round=detail["round"], resolved=detail["resolved"], satisfaction=detail["satisfaction"],
                                       operator="simulated-callback")
            return Emit(EVALUATE.name, cause.caused(data, source="/cityops/hotline-sim"))
        case "decision":
            data = ev.SupervisorDecided(consultation_id=detail["consultation_id"], supervisor="simulated-supervisor",
                                        routing=ev.Routing(lead=detail["lead"], co_units=tuple(detail["co_units"]),
                                                           level=detail["level"]))
            return Emit(CONSULT.name, cause.caused(data, source="/cityops/supervisor-sim"))
    raise ValueError(f"unknown simulated action {row.kind}")
