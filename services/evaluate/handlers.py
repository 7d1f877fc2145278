"""evaluate: call the resident back, close or re-handle, keep the rates current."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlmodel import select

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.topics import ACT, COMMANDS, EVALUATE, SLA, TICKETS, UNIT_REPORTS
from domain import rates
from domain.calendar import CalendarCoverageError
from domain.reports import may_report, report_refusal
from services.common.commands import fact_of_command
from services.common.handler import (
    Batched,
    Emit,
    HandlerContext,
    HandlerSpec,
    NoDeps,
    NotYet,
    Rejected,
    settings_as,
)
from services.common.logs import get_logger

from . import domain
from .batch import EvalBatch, Task, Ticket
from .models import LowestLevelRates, Rates
from .settings import EvaluateSettings

# sla's breaches give the response verdict of a task never signed for (domain.rates).
TOPICS = [TICKETS.name, ACT.name, UNIT_REPORTS.name, COMMANDS.name, SLA.name]
EVENT_TYPES = [m.event_type for m in (ev.TicketRegistered, ev.TicketMerged, ev.TicketSplit, ev.TaskAssigned,
                                      ev.TaskSignedFor, ev.SlaBreached, ev.TicketHandled, ev.CallbackSubmitted)]


Ctx = HandlerContext[NoDeps]
log = get_logger(__name__)


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
            return close_if_master_closed(ctx, batch, envelope, _ensure(ctx, batch, envelope.ticket_id, d.ticket,
                                                                        d.master_ticket_id))
        case ev.TicketMerged():
            row = _ticket(ctx, batch, envelope.ticket_id)
            row.master_ticket_id = d.master_ticket_id
            return close_if_master_closed(ctx, batch, envelope, row)
        case ev.TicketSplit():
            _ensure(ctx, batch, envelope.ticket_id, d.ticket, None).master_ticket_id = None
        case ev.TaskAssigned():
            _count(batch, "unit", d.unit, assigned=1)
            task = _task_of_unit(batch, d.task_id, d.unit)
            task.assigned, task.sign_for_due = True, _sign_for_due(ctx, envelope)
            _judge_response(batch, task)
        case ev.TaskSignedFor():
            _signed_for(batch, envelope)
        case ev.SlaBreached() if d.clock == "sign_for":
            task = _task_of_unit(batch, d.task_id, d.unit)
            task.breached = True
            _judge_response(batch, task)
        case ev.TicketHandled():
            return request_callback(ctx, batch, envelope)
        case ev.CallbackSubmitted():
            return on_callback(ctx, batch, envelope)
    return ()


# ---------------------------------------------------------------------------- a batch's working state

def start_batch(ctx: Ctx, envelopes: list[Envelope[Any]]) -> EvalBatch:
    """Load the batch's tickets and tasks with one query each, instead of a lookup per event."""
    task_ids = [e.data.task_id for e in envelopes if isinstance(e.data, ev.TaskAssigned | ev.TaskSignedFor | ev.SlaBreached)]
    return EvalBatch.load(ctx.session, (e.ticket_id for e in envelopes), task_ids)


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


def _sign_for_due(ctx: HandlerContext, envelope: Envelope[Any]) -> datetime | None:
    """When the task's sign-for limit ends, on the calendar sla counts on (None: a year without holiday
    data under a strict calendar; then only sla's breach can judge it)."""
    limit = envelope.data.limits.sign_for
    try:
        return settings_as(ctx, EvaluateSettings).work_calendar().add(envelope.time, limit.amount, limit.unit).astimezone(UTC)
    except CalendarCoverageError:
        return None


def _unit_known(task: Task) -> bool:
    """Whether the row's unit is the task's: given by its assignment, or by sla's breach (sla names the unit
    of the assignment it timed), not only by a sign-for that claims it."""
    return task.assigned or task.breached


def _signed_for(batch: EvalBatch, envelope: Envelope[Any]) -> None:
    """Only the task's unit may sign for it (`domain.reports`): a sign-for from another unit changes nothing and
    is dead-lettered. One read before the assignment is kept without being counted (evaluate does not park, see
    `_judge_response`); the assignment then counts it, or drops it if it was another unit's (`_task_of_unit`)."""
    d: ev.TaskSignedFor = envelope.data
    task = batch.tasks.get(d.task_id)
    if task is not None and _unit_known(task):
        if refusal := report_refusal("TaskSignedFor", d.task_id, task.unit, d.unit):
            raise Rejected(refusal)
        _count(batch, "unit", d.unit, signed_for=1)
    elif task is not None and task.signed_for_at is not None and not may_report(task.unit, d.unit):
        # Two units claim the task before its assignment is read: only the assignment can tell which one is
        # right. Rare (one of them is forged), so parking this one costs nothing in the usual case.
        raise NotYet(f"task {d.task_id} was signed for by {task.unit} and {d.unit} before its assignment was read")
    task = task or batch.task(d.task_id, d.unit)
    task.signed_for_at = task.signed_for_at or envelope.time
    _judge_response(batch, task)


def _task_of_unit(batch: EvalBatch, task_id: str, unit: str) -> Task:
    """The task's row once its unit is known for sure (from its assignment or sla's breach): a sign-for read
    earlier is counted now if it was that unit's, and dropped if it was another's."""
    task = batch.task(task_id, unit)
    if not _unit_known(task) and task.signed_for_at is not None:
        if may_report(unit, task.unit):
            _count(batch, "unit", unit, signed_for=1)
        else:
            log.warning("report_dropped", task_id=task_id, reason=report_refusal("TaskSignedFor", task_id, unit, task.unit))
            task.signed_for_at = None
    task.unit = unit
    return task


def _judge_response(batch: EvalBatch, task: Task) -> None:
    """Count a task in the response rate once, as soon as what was read decides it: sla's breach (not
    responded), or the sign-for once the assignment gave its deadline (responded if within it). The three
    events come from three topics, so any of them may be read first; nothing waits (parks) for another."""
    if task.judged:
        return
    if task.breached:
        verdict = rates.response_counts(signed_for=False, sign_for_breached=True)
    elif task.signed_for_at is not None and task.assigned:
        late = task.sign_for_due is not None and task.signed_for_at > task.sign_for_due
        verdict = rates.response_counts(signed_for=True, sign_for_breached=late)
    else:
        return
    task.judged = True
    _count(batch, "unit", task.unit, response_n=verdict.response_n, responded=verdict.responded)


def _count(batch: EvalBatch, scope: str, key: str | None, **increments: int) -> None:
    if key:
        batch.count(scope, key, increments)


def request_callback(ctx: Ctx, batch: EvalBatch, envelope: Envelope[Any]) -> list[Emit]:
    h: ev.TicketHandled = envelope.data
    row = _ticket(ctx, batch, envelope.ticket_id)
    row.round, row.units, row.status = h.round, ",".join(h.units), "awaiting-callback"
    batch.set_level(row.ticket_id, h.level.value if h.level is not None else None, h.escalated, h.resolved_on_the_spot)
    caller = ev.CallerRef.model_validate_json(row.caller_json)
    data = ev.CallbackRequested(round=h.round, caller=caller, units=h.units)
    return [Emit(EVALUATE.name, envelope.caused(data, source=ctx.source))]


def _scopes(row: Ticket) -> list[tuple[str, str | None]]:
    return [("unit", u) for u in row.units.split(",") if u] + [("grid", row.grid), ("district", row.district)]


def on_callback(ctx: Ctx, batch: EvalBatch, command: Envelope[Any]) -> list[Emit]:
    """The callback operator's entry (intake's command): the fact CallbackRecorded, then re-handling or closing."""
    submitted: ev.CallbackSubmitted = command.data
    row = _ticket(ctx, batch, command.ticket_id)
    if row.master_ticket_id is not None:
        return on_repeat_callback(ctx, batch, command, row)
    if row.status != "awaiting-callback" or submitted.round != row.round:
        raise ValueError(f"ticket {row.ticket_id} is not awaiting a callback for round {submitted.round} (status {row.status}, round {row.round})")
    envelope = fact_of_command(ctx, command)
    c: ev.CallbackRecorded = envelope.data  # the fact
    decision = domain.after_callback(c, settings_as(ctx, EvaluateSettings).max_rounds)
    verdict = rates.callback_counts(resolved=c.resolved, satisfaction=c.satisfaction, reasonable_demand=c.reasonable_demand)
    for scope, key in _scopes(row):
        _count(batch, scope, key, callbacks=verdict.callbacks, resolved=verdict.resolved, satisfied=verdict.satisfied,
               rated=verdict.rated, reopened=int(decision == "reopen"))
    if decision == "reopen":
        row.status = "open"
        data: Any = ev.TicketReopened(round=c.round + 1, units=tuple(row.units.split(",")),
                                      reason="unresolved" if not c.resolved else "resident unsatisfied")
        return [Emit(EVALUATE.name, envelope), Emit(EVALUATE.name, envelope.caused(data, source=ctx.source))]
    return [Emit(EVALUATE.name, envelope)] + close(ctx, batch, envelope, row, "resolved" if decision == "close" else "unresolved",
                                                   c.satisfaction)


def on_repeat_callback(ctx: Ctx, batch: EvalBatch, command: Envelope[Any], row: Ticket) -> list[Emit]:
    """A merged repeat's caller at callback (asked when the master closed): the verdict is recorded and counted
    like any resident's, once per requested round (the round goes back to 0). It decides nothing: the master's
    handling is over; a caller whose problem was not the master's files a new complaint."""
    submitted: ev.CallbackSubmitted = command.data
    if submitted.round != row.round or row.round < 1 or row.status != "closed":
        raise ValueError(f"repeat {row.ticket_id} is not awaiting a callback for round {submitted.round} (status {row.status}, round {row.round})")
    envelope = fact_of_command(ctx, command)
    c: ev.CallbackRecorded = envelope.data
    verdict = rates.callback_counts(resolved=c.resolved, satisfaction=c.satisfaction, reasonable_demand=c.reasonable_demand)
    for scope, key in _scopes(row):
        _count(batch, scope, key, callbacks=verdict.callbacks, resolved=verdict.resolved, satisfied=verdict.satisfied,
               rated=verdict.rated)
    row.round = 0
    return [Emit(EVALUATE.name, envelope)]


def close(ctx: Ctx, batch: EvalBatch, cause: Envelope[Any], row: Ticket, outcome: str,
          satisfaction: ev.Satisfaction) -> list[Emit]:
    row.status = "closed"
    _count_lowest_level(batch, row)
    out = [Emit(EVALUATE.name, cause.caused(ev.TicketClosed(outcome=outcome, satisfaction=satisfaction, rounds=row.round),
                                            source=ctx.source))]
    children = batch.open_children(row.ticket_id) if batch.may_have_children(row.ticket_id) else []
    for i, child in enumerate(children, start=1):
        out += close_repeat(ctx, cause, child, row, satisfaction, index=i)
    return out


def _count_lowest_level(batch: EvalBatch, row: Ticket) -> None:
    """A handled ticket's contribution, once, when it closes, to the solved-at-the-lowest-level rate of its grid,
    its district and the city (domain.rates)."""
    level = batch.level(row.ticket_id)
    if level is None:
        return
    counts = rates.lowest_level_counts(level=level.level, escalated=level.escalated)
    counts["on_the_spot"] = int(level.on_the_spot)
    for scope, key in [("grid", row.grid), ("district", row.district), ("city", "all")]:
        if key:
            batch.count_lowest(scope, key, counts)


def close_repeat(ctx: Ctx, cause: Envelope[Any], child: Ticket, master: Ticket, satisfaction: ev.Satisfaction | None,
                 index: int = 0) -> list[Emit]:
    """A repeat closes with its master, and its own caller is called back: their complaint was handled too.
    Asked when the master closes, not when it is handled: a split read after the handling (another topic)
    must not leave a callback asked for a ticket that was no longer merged."""
    child.status, child.round, child.units = "closed", master.round, master.units
    request = ev.CallbackRequested(round=max(master.round, 1), caller=ev.CallerRef.model_validate_json(child.caller_json),
                                   units=tuple(u for u in master.units.split(",") if u))
    closed = ev.TicketClosed(outcome="merged", satisfaction=satisfaction, rounds=0, master_ticket_id=master.ticket_id)
    return [Emit(EVALUATE.name, cause.caused(request, source=ctx.source, ticket_id=child.ticket_id, index=index)),
            Emit(EVALUATE.name, cause.caused(closed, source=ctx.source, ticket_id=child.ticket_id, index=index))]


def close_if_master_closed(ctx: HandlerContext, batch: EvalBatch, cause: Envelope[Any], row: Ticket) -> list[Emit]:
    """A repeat whose merge is read after its master was closed (the tickets topic is not in step with the
    others; discover may also merge into a master whose closing it has not read yet) is closed at once:
    closing the master could not close a child it did not know, and nothing else would."""
    master = batch.ticket(row.master_ticket_id) if row.master_ticket_id else None
    if master is None or master.status != "closed" or row.status == "closed":
        return []
    return close_repeat(ctx, cause, row, master, None)


def lowest_level_table(session: Any, scope: str) -> list[dict[str, Any]]:
    """Per grid, district or the city: closed handled tickets, those solved at the lowest level, on the spot."""
    rows = session.exec(select(LowestLevelRates).where(LowestLevelRates.scope == scope).order_by(LowestLevelRates.key)).all()
    return [{"key": r.key, "handled_closed": r.handled_closed, "solved_lowest": r.solved_lowest, "on_the_spot": r.on_the_spot,
             "lowest_level_rate": rates.lowest_level_rate(r.model_dump())} for r in rows]


def rates_table(session: Any, scope: str) -> list[dict[str, Any]]:
    rows = session.exec(select(Rates).where(Rates.scope == scope).order_by(Rates.key)).all()
    return [{"key": r.key, **rates.three_rates(r.model_dump()), "callbacks": r.callbacks, "assigned": r.assigned,
             "signed_for": r.signed_for, "response_n": r.response_n, "reopened": r.reopened} for r in rows]
