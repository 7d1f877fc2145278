"""evaluate: call the resident back, close or re-handle, keep the rates current."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlmodel import select

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.topics import ACT, EVALUATE, TICKETS, UNIT_REPORTS
from services.common.handler import (
    Batched,
    Emit,
    HandlerContext,
    HandlerSpec,
    NoDeps,
    NotYet,
)

from . import domain
from .batch import EvalBatch, Ticket
from .models import Rates

TOPICS = [TICKETS.name, ACT.name, UNIT_REPORTS.name, EVALUATE.name]
EVENT_TYPES = [m.event_type for m in (ev.TicketRegistered, ev.TicketMerged, ev.TicketSplit, ev.TaskAssigned,
                                      ev.TaskSignedFor, ev.TicketHandled, ev.CallbackRecorded)]


Ctx = HandlerContext[NoDeps]


def spec() -> HandlerSpec[NoDeps]:
    """What the pipeline runs: each batch's events applied to its tickets and rates (`BATCH`)."""
    return HandlerSpec(topics=TOPICS, event_types=EVENT_TYPES, deps=NoDeps(), batch=BATCH)


def handle(ctx: Ctx, envelope: Envelope[Any]) -> Iterable[Emit]:
    """One event on its own (tests, tools): a batch of one."""
    return BATCH.one(ctx, envelope)


def _apply(ctx: Ctx, batch: EvalBatch, envelope: Envelope[Any]) -> Iterable[Emit]:
    d = envelope.data
    match d:
        case ev.TicketRegistered():
            _ensure(ctx, batch, envelope.ticket_id, d.ticket, d.master_ticket_id)
        case ev.TicketMerged():
            _ticket(ctx, batch, envelope.ticket_id).master_ticket_id = d.master_ticket_id
        case ev.TicketSplit():
            _ensure(ctx, batch, envelope.ticket_id, d.ticket, None).master_ticket_id = None
        case ev.TaskAssigned():
            _count(batch, "unit", d.unit, assigned=1)
        case ev.TaskSignedFor():
            _count(batch, "unit", d.unit, signed_for=1)
        case ev.TicketHandled():
            return request_callback(ctx, batch, envelope)
        case ev.CallbackRecorded():
            return on_callback(ctx, batch, envelope)
    return ()


# ---------------------------------------------------------------------------- a batch's working state

def start_batch(ctx: Ctx, envelopes: list[Envelope[Any]]) -> EvalBatch:
    """Load the batch's tickets with one query, instead of a lookup per event."""
    return EvalBatch.load(ctx.session, (e.ticket_id for e in envelopes))


def finish_batch(ctx: Ctx, batch: EvalBatch) -> None:
    """Write what the batch changed: one statement per table and kind."""
    batch.write()


BATCH: Batched[NoDeps, EvalBatch] = Batched(start=start_batch, apply=_apply, finish=finish_batch)


def _ensure(ctx: Ctx, batch: EvalBatch, ticket_id: str, t: ev.RegisteredTicket, master: str | None) -> Ticket:
    row = batch.ticket(ticket_id)
    if row is None:
        row = batch.add_ticket(Ticket(ticket_id=ticket_id, caller_json=t.caller.model_dump_json(), district=t.location.district,
                                      grid=t.location.grid, master_ticket_id=master))
    return row


def _ticket(ctx: Ctx, batch: EvalBatch, ticket_id: str) -> Ticket:
    row = batch.ticket(ticket_id)
    if row is None:
        raise NotYet(f"evaluate has not seen ticket {ticket_id} registered yet")
    return row


def _count(batch: EvalBatch, scope: str, key: str | None, **increments: int) -> None:
    if key:
        batch.count(scope, key, increments)


def request_callback(ctx: Ctx, batch: EvalBatch, envelope: Envelope[Any]) -> list[Emit]:
    h: ev.TicketHandled = envelope.data
    row = _ticket(ctx, batch, envelope.ticket_id)
    row.round, row.units, row.status = h.round, ",".join(h.units), "awaiting-callback"
    caller = ev.CallerRef.model_validate_json(row.caller_json)
    data = ev.CallbackRequested(round=h.round, caller=caller, units=h.units)
    return [Emit(EVALUATE.name, envelope.caused(data, source=ctx.source))]


def _scopes(row: Ticket) -> list[tuple[str, str | None]]:
    return [("unit", u) for u in row.units.split(",") if u] + [("grid", row.grid), ("district", row.district)]


def on_callback(ctx: Ctx, batch: EvalBatch, envelope: Envelope[Any]) -> list[Emit]:
    c: ev.CallbackRecorded = envelope.data
    row = _ticket(ctx, batch, envelope.ticket_id)
    if row.status != "awaiting-callback" or c.round != row.round:
        raise ValueError(f"ticket {row.ticket_id} is not awaiting a callback for round {c.round} (status {row.status}, round {row.round})")
    decision = domain.after_callback(c, ctx.settings.max_rounds)
    satisfied = int(c.satisfaction != ev.Satisfaction.unsatisfied and c.reasonable_demand)
    for scope, key in _scopes(row):
        _count(batch, scope, key, callbacks=1, resolved=int(c.resolved), satisfied=satisfied, rated=int(c.reasonable_demand),
               reopened=int(decision == "reopen"))
    if decision == "reopen":
        row.status = "open"
        data: Any = ev.TicketReopened(round=c.round + 1, units=tuple(row.units.split(",")),
                                      reason="unresolved" if not c.resolved else "resident unsatisfied")
        return [Emit(EVALUATE.name, envelope.caused(data, source=ctx.source))]
    return close(ctx, batch, envelope, row, "resolved" if decision == "close" else "unresolved", c.satisfaction)


def close(ctx: Ctx, batch: EvalBatch, cause: Envelope[Any], row: Ticket, outcome: str,
          satisfaction: ev.Satisfaction) -> list[Emit]:
    row.status = "closed"
    out = [Emit(EVALUATE.name, cause.caused(ev.TicketClosed(outcome=outcome, satisfaction=satisfaction, rounds=row.round),
                                            source=ctx.source))]
    children = batch.open_children(row.ticket_id) if batch.may_have_children(row.ticket_id) else []
    for i, child in enumerate(children, start=1):
        child.status = "closed"
        data = ev.TicketClosed(outcome="merged", satisfaction=satisfaction, rounds=0, master_ticket_id=row.ticket_id)
        out.append(Emit(EVALUATE.name, cause.caused(data, source=ctx.source, ticket_id=child.ticket_id, index=i)))
    return out


def rates_table(session: Any, scope: str) -> list[dict[str, Any]]:
    rows = session.exec(select(Rates).where(Rates.scope == scope).order_by(Rates.key)).all()
    return [{"key": r.key, "response_rate": domain.rate(r.signed_for, r.assigned), "resolution_rate": domain.rate(r.resolved, r.callbacks),
             "satisfaction_rate": domain.rate(r.satisfied, r.rated), "callbacks": r.callbacks, "assigned": r.assigned,
             "reopened": r.reopened} for r in rows]
