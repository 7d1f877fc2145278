"""Simulated units (and, optionally, callback operators and a supervisor) on top of the SDK's reports.

The units' answers go on the unit-reports topic. The simulated callback operators' and supervisor's
decisions do not: like real ones, they go through intake's HTTP API (services/units/hotline.py), since
intake is the one writer of decisions. Here they are only planned (rows of kind HOTLINE_KINDS)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import delete, select

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.registry import model_for
from contracts.topics import UNIT_REPORTS
from services.common.batch_state import table_of
from services.common.direct_sql import insert_ignoring_stored
from services.common.handler import Batched, Emit, HandlerContext, HandlerSpec, Tick, settings_as

from . import domain, sdk
from .models import PendingAction
from .settings import UnitSettings

EVENT_TYPES = [m.event_type for m in (ev.TaskAssigned, ev.ConsultationRequested, ev.ReturnRejected,
                                      ev.CallbackRequested, ev.SupervisorReviewRequested)]
_ACTIONS = table_of(PendingAction)
# Actions of the simulated hotline staff, posted to intake's HTTP API by hotline.post_due (never emitted here).
HOTLINE_KINDS = ("callback", "decision")


@dataclass(frozen=True)
class UnitDeps:
    """The units this process answers for."""

    units: frozenset[str]


Ctx = HandlerContext[UnitDeps]


# The batch's new pending_actions rows by action id, in planning order (the store's row order).
Actions = dict[str, dict[str, Any]]


def spec(deps: UnitDeps, topics: list[str], tick_s: float,
         keys_by_topic: Mapping[str, frozenset[str]] | None = None) -> HandlerSpec[UnitDeps]:
    """What the pipeline runs: each batch's events answered (`BATCH`), the due actions sent every tick_s; on a
    shared task topic, only the records keyed by one of our units (`keys_by_topic`)."""
    return HandlerSpec(topics=topics, event_types=EVENT_TYPES, deps=deps, batch=BATCH, ticks=[Tick(send_due, tick_s)],
                       keys_by_topic=keys_by_topic or {})


def handle(ctx: Ctx, envelope: Envelope[Any]) -> Iterable[Emit]:
    """One event on its own (tests, tools): a batch of one."""
    return BATCH.one(ctx, envelope)


class _Action(NamedTuple):
    """The parts of a pending_actions row `_action_event` reads."""

    unit: str
    kind: str


def _apply(ctx: Ctx, batch: Actions, envelope: Envelope[Any]) -> list[Emit]:
    """Answer one event: what is due at once is emitted now, the rest kept for the batch's end and sent by
    the tick when due."""
    planned = _plan(ctx, envelope)
    # An action without delay goes out with this batch (through the pipeline's outbox, with the same
    # derived id the tick would give it): no pending row, no tick round trip.
    at_once = [p for p in planned if p[2].delay_s <= 0 and p[2].kind not in HOTLINE_KINDS]
    now = [(unit, action) for unit, _, action in at_once]
    _schedule(ctx, batch, envelope, [p for p in planned if p not in at_once])
    return [_action_event(_Action(unit, action.kind), envelope, action.detail, ctx) for unit, action in now]


def _plan(ctx: Ctx, envelope: Envelope[Any]) -> list[tuple[str, int, domain.PlannedAction]]:
    """What the simulated parties will do about this event: (who, index among its actions, action)."""
    units = ctx.deps.units
    d = envelope.data
    match d:
        case ev.TaskAssigned() if d.unit in units:
            return [(d.unit, i, a) for i, a in enumerate(domain.plan_task(d, ctx.settings))]
        case ev.ConsultationRequested():
            return [(unit, 0, domain.plan_opinion(d, unit, ctx.settings)) for unit in sorted(set(d.parties) & units)]
        case ev.ReturnRejected() if d.unit in units:
            return [(d.unit, 0, domain.PlannedAction("complete-rejected", settings_as(ctx, UnitSettings).work_delay_s,
                                                     {"result": "handled after the return was refused (simulated)"}))]
        case ev.CallbackRequested() if settings_as(ctx, UnitSettings).callbacks:
            return [("hotline", 0, domain.plan_callback(d, envelope.ticket_id, ctx.settings))]
        case ev.SupervisorReviewRequested() if settings_as(ctx, UnitSettings).supervisor:
            return [("supervisor", 0, domain.plan_decision(d))]
    return []


def _schedule(ctx: Ctx, batch: Actions, cause: Envelope[Any],
              planned: list[tuple[str, int, domain.PlannedAction]]) -> None:
    """Keep the planned actions as pending_actions rows of the batch; an action already planned keeps its row."""
    if not planned:
        return
    cause_json = cause.model_dump_json()  # the same for every action of this cause
    for unit, index, action in planned:
        action_id = f"{cause.id}:{unit}:{index}"
        if action_id not in batch:
            batch[action_id] = {"action_id": action_id, "due_at": ctx.now() + timedelta(seconds=action.delay_s),
                                "kind": action.kind, "unit": unit, "cause_json": cause_json, "cause_type": cause.type,
                                "detail_json": json.dumps(action.detail)}


# ---------------------------------------------------------------------------- a batch's working state

# The batch's new pending_actions rows by action id, in planning order (the store's row order). Nothing
# reads them back while the batch runs, so there is nothing to load before it, and they are written
# with one INSERT at its end instead of a lookup and an ORM object per action.
def start_batch(ctx: Ctx, envelopes: list[Envelope[Any]]) -> Actions:
    return {}


def finish_batch(ctx: Ctx, rows: Actions) -> None:
    """Insert the batch's actions with one statement; an action already stored keeps its row (the insert skips
    its key, instead of a query for the stored ones first)."""
    insert_ignoring_stored(ctx.session.connection(), _ACTIONS, list(rows.values()))


BATCH: Batched[UnitDeps, Actions] = Batched(start=start_batch, apply=_apply, finish=finish_batch)


def send_due(ctx: Ctx) -> list[Emit]:
    """Tick: send every simulated action whose time has come (read as plain rows and deleted with one
    statement: no ORM object per action)."""
    due = ctx.session.execute(select(_ACTIONS).where(_ACTIONS.c.due_at <= ctx.now(), _ACTIONS.c.kind.not_in(HOTLINE_KINDS))
                              .order_by(_ACTIONS.c.due_at).limit(2000)).all()
    out = [_action_event(row, _envelope_type(row.cause_type).model_validate_json(row.cause_json), json.loads(row.detail_json), ctx)
           for row in due]
    sent = [row.action_id for row in due]
    for i in range(0, len(sent), 500):
        ctx.session.execute(delete(_ACTIONS).where(_ACTIONS.c.action_id.in_(sent[i:i + 500])))
    return out


@cache
def _envelope_type(cause_type: str) -> type[Envelope[Any]]:
    """The envelope model of an event type (a parametrised generic is not free to look up each time)."""
    return Envelope[model_for(cause_type)]  # type: ignore[misc,return-value]  # parametrised with a class known only at run time


def _action_event(row: Any, cause: Envelope[Any], detail: dict[str, Any], ctx: Ctx) -> Emit:
    """The report, callback or decision a due pending_actions row stands for."""
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
        case "on-the-spot":
            return Emit(UNIT_REPORTS.name, sdk.resolve_on_the_spot(cause, u, detail["result"]))
        case "escalate":
            return Emit(UNIT_REPORTS.name, sdk.escalate(cause, u, detail["to_level"], detail["reason"], detail["note"]))
        case "complete" | "complete-rejected":
            return Emit(UNIT_REPORTS.name, sdk.complete(cause, u, detail["result"]) if row.kind == "complete"
                        else sdk.report(cause, ev.TaskCompleted(task_id=cause.data.task_id, unit=u, result=detail["result"]), u))
        case "opinion":
            return Emit(UNIT_REPORTS.name, sdk.opinion(cause, u, detail["agrees"], comment="simulated opinion"))
    raise ValueError(f"unknown simulated action {row.kind}")
