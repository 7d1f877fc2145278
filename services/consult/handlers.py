"""consult: convene, collect opinions, agree or escalate to a supervisor."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.topics import COMMANDS, CONSULT, SLA, TRIAGE, UNIT_REPORTS
from domain.calendar import WorkCalendar
from domain.reports import opinion_refusal
from services.common.commands import fact_of_command
from services.common.handler import Batched, Emit, HandlerContext, HandlerSpec, NotYet, Rejected, Tick, settings_as

from . import domain
from .settings import ConsultSettings
from .state import ConsultationRow, ConsultBatch, RoutedRow

TOPICS = [TRIAGE.name, UNIT_REPORTS.name, COMMANDS.name, SLA.name]
EVENT_TYPES = [ev.TicketClassified.event_type, ev.OpinionGiven.event_type, ev.SupervisorDecisionSubmitted.event_type,
               ev.TicketEscalated.event_type]


@dataclass(frozen=True)
class ConsultDeps:
    """The working-day calendar a plan's deadline is counted on."""

    calendar: WorkCalendar


Ctx = HandlerContext[ConsultDeps]


# Statuses a consultation can be superseded or decided from.
OPEN = frozenset({"open"})
UNDECIDED = frozenset({"open", "supervisor-review"})


def spec(deps: ConsultDeps, tick_s: float) -> HandlerSpec[ConsultDeps]:
    """What the pipeline runs: a batch loads its tickets' routings and consultations with one query per table,
    applies its events to them in memory and writes what changed with one statement per table and kind of
    change (services/common/batch_state.py); `overdue` every tick_s."""
    return HandlerSpec(topics=TOPICS, event_types=EVENT_TYPES, deps=deps, batch=BATCH, ticks=[Tick(overdue, tick_s)])


def start_batch(ctx: Ctx, envelopes: list[Envelope[Any]]) -> ConsultBatch:
    """Load the routings and consultations of these events' tickets, and the consultations opinions name."""
    batch = ConsultBatch(ctx.session.connection())
    batch.load((e.ticket_id for e in envelopes), (getattr(e.data, "consultation_id", None) for e in envelopes))
    return batch


def finish_batch(ctx: Ctx, batch: ConsultBatch) -> None:
    batch.write()


def handle(ctx: Ctx, envelope: Envelope[Any]) -> Iterable[Emit]:
    """One event on its own (tests, tools): a batch of one."""
    return BATCH.one(ctx, envelope)


def apply(ctx: Ctx, batch: ConsultBatch, envelope: Envelope[Any]) -> Iterable[Emit]:
    match envelope.data:
        case ev.TicketClassified():
            _remember_routing(batch, envelope)
            return convene(ctx, batch, envelope) if envelope.data.needs_consultation else ()
        case ev.TicketEscalated(reason="ping-pong"):
            return arbitrate(ctx, batch, envelope)
        case ev.OpinionGiven():
            return record_opinion(ctx, batch, envelope)
        case ev.SupervisorDecisionSubmitted():
            return close_decided(ctx, batch, envelope)
    return ()


def convene(ctx: Ctx, batch: ConsultBatch, envelope: Envelope[Any]) -> list[Emit]:
    c: ev.TicketClassified = envelope.data
    consultation_id = f"C-{envelope.id[:8]}"
    parties = domain.parties_for(c.routing, c.excluded_units)
    request = ev.ConsultationRequested(
        consultation_id=consultation_id, parties=parties, proposed=c.routing, category=c.category, limits=c.limits,
        reason="returned by " + ", ".join(c.excluded_units) if c.excluded_units
        else c.consultation_reason or "the catalogue requires consultation",
        opinions_due=envelope.time + timedelta(seconds=settings_as(ctx, ConsultSettings).opinion_window_s), ticket=c.ticket,
    )
    for old in batch.of_ticket(envelope.ticket_id, OPEN):
        old.status = "superseded"
    batch.consultations.add(ConsultationRow(consultation_id=consultation_id, ticket_id=envelope.ticket_id, status="open",
                                            parties=",".join(parties), opinions_json="{}",
                                            opinions_due=request.opinions_due, request_json=request.model_dump_json()))
    # act, the writer of the units' task topics, forwards it to each party.
    return [Emit(CONSULT.name, envelope.caused(request, source=ctx.source))]


def _remember_routing(batch: ConsultBatch, envelope: Envelope[Any]) -> None:
    routing_json = envelope.data.routing.model_dump_json()
    row = batch.routed.get(envelope.ticket_id)
    if row is None:
        batch.routed.add(RoutedRow(ticket_id=envelope.ticket_id, routing_json=routing_json))
    else:
        row.routing_json = routing_json


def arbitrate(ctx: Ctx, batch: ConsultBatch, envelope: Envelope[Any]) -> list[Emit]:
    """A ticket bounced between units (退单 ping-pong) goes to a supervisor on its own: nobody owns it."""
    row = batch.routed.get(envelope.ticket_id)
    if row is None:
        raise NotYet(f"consult has not seen ticket {envelope.ticket_id} routed yet")
    row.arbitrations += 1
    for open_row in batch.of_ticket(envelope.ticket_id, OPEN):
        open_row.status = "superseded"
    review = ev.SupervisorReviewRequested(
        consultation_id=f"A-{envelope.id[:8]}", reason=f"ping-pong: returned too often ({envelope.data.task_id or 'ticket'})",
        opinions=(), proposed=ev.Routing.model_validate_json(row.routing_json))
    return [Emit(CONSULT.name, envelope.caused(review, source=ctx.source))]


def record_opinion(ctx: Ctx, batch: ConsultBatch, envelope: Envelope[Any]) -> list[Emit]:
    o: ev.OpinionGiven = envelope.data
    row = batch.consultations.get(o.consultation_id)
    if row is not None and (refusal := opinion_refusal(row.consultation_id, tuple(row.parties.split(",")), o.unit)):
        raise Rejected(refusal)  # checked whatever its status: a stranger's opinion is refused, not "late"
    if row is None or row.status != "open":
        return []  # late opinion on a closed consultation: recorded on the log, changes nothing
    opinions = json.loads(row.opinions_json)
    opinions[o.unit] = [o.agrees, o.proposed_lead]
    row.opinions_json = json.dumps(opinions)
    v = domain.verdict(tuple(row.parties.split(",")), {u: (a, p) for u, (a, p) in opinions.items()})
    if v.outcome == "agreed":
        return [_agree(ctx, envelope, row)]
    if v.outcome == "disputed":
        return [_to_supervisor(ctx, envelope, row, v.reason)]
    return []


def _agree(ctx: Ctx, cause: Envelope[Any], row: ConsultationRow) -> Emit:
    request = ev.ConsultationRequested.model_validate_json(row.request_json)
    row.status = "agreed"
    calendar = ctx.deps.calendar
    deadline = calendar.add(cause.time, request.limits.resolution.amount, request.limits.resolution.unit)
    plan = ev.PlanAgreed(consultation_id=row.consultation_id, routing=request.proposed, deadline=deadline,
                         category=request.category, limits=request.limits, ticket=request.ticket)
    return Emit(CONSULT.name, cause.caused(plan, source=ctx.source, ticket_id=row.ticket_id))


def _to_supervisor(ctx: Ctx, cause: Envelope[Any], row: ConsultationRow, reason: str) -> Emit:
    request = ev.ConsultationRequested.model_validate_json(row.request_json)
    row.status = "supervisor-review"
    opinions = tuple((u, bool(a), p) for u, (a, p) in sorted(json.loads(row.opinions_json).items()))
    review = ev.SupervisorReviewRequested(consultation_id=row.consultation_id, reason=reason, opinions=opinions,
                                          proposed=request.proposed)
    return Emit(CONSULT.name, cause.caused(review, source=ctx.source, ticket_id=row.ticket_id))


def close_decided(ctx: Ctx, batch: ConsultBatch, envelope: Envelope[Any]) -> list[Emit]:
    """A supervisor's decision (intake's command): the ticket's consultations are decided, and the fact
    SupervisorDecided, which act dispatches, is written here."""
    for row in batch.of_ticket(envelope.ticket_id, UNDECIDED):
        row.status = "decided"
    return [Emit(CONSULT.name, fact_of_command(ctx, envelope))]


def overdue(ctx: Ctx) -> list[Emit]:
    """Tick: consultations whose opinions are late go to a supervisor."""
    now = ctx.now()
    out = []
    batch = ConsultBatch(ctx.session.connection())
    for row in batch.open_and_due(now):
        request = ev.ConsultationRequested.model_validate_json(row.request_json)
        missing = [p for p in row.parties.split(",") if p not in json.loads(row.opinions_json)]
        origin: Envelope[ev.ConsultationRequested] = Envelope(id=f"timeout-{row.consultation_id}", type=request.event_type, source=ctx.source, time=now,
                          subject=row.ticket_id, ticket_id=row.ticket_id, correlation_id=row.consultation_id, data=request)
        out.append(_to_supervisor(ctx, origin, row, f"no opinion in time from {', '.join(missing)}"))
    batch.write()
    return out


BATCH: Batched[ConsultDeps, ConsultBatch] = Batched(start=start_batch, apply=apply, finish=finish_batch)
