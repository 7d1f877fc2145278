"""triage: classify and route registered tickets; manual decisions; reroutes after a return."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.topics import ACT, TICKETS, TRIAGE
from services.common.pipeline import Emit, HandlerContext

from . import domain
from .models import TriageTicket

TOPICS = [TICKETS.name, TRIAGE.name, ACT.name]
EVENT_TYPES = [ev.TicketRegistered.event_type, ev.TicketSplit.event_type, ev.ManualTriageResolved.event_type,
               ev.RerouteRequested.event_type]


def handle(ctx: HandlerContext, envelope: Envelope[Any]) -> Iterable[Emit]:
    match envelope.data:
        case ev.TicketRegistered(master_ticket_id=None) | ev.TicketSplit():
            return triage(ctx, envelope, envelope.data.ticket)
        case ev.ManualTriageResolved():
            return resolve_manually(ctx, envelope)
        case ev.RerouteRequested():
            return reroute(ctx, envelope)
    return ()  # a registered repeat: its master carries the work


def _store(ctx: HandlerContext, ticket_id: str, ticket: ev.RegisteredTicket, category: str | None, status: str) -> None:
    row = ctx.session.get(TriageTicket, ticket_id) or TriageTicket(ticket_id=ticket_id, registered_json=ticket.model_dump_json())
    row.category, row.status = category, status
    ctx.session.add(row)


def triage(ctx: HandlerContext, envelope: Envelope[Any], ticket: ev.RegisteredTicket) -> list[Emit]:
    catalogue, classifier = ctx.extras["catalogue"], ctx.extras["classifier"]
    choice = domain.choose_category(ticket, classifier, catalogue, ctx.settings.min_confidence)
    if choice.category is None:
        _store(ctx, envelope.ticket_id, ticket, None, "manual-triage")
        data: Any = ev.ManualTriageRequested(candidates=choice.candidates, reason=choice.reason, ticket=ticket)
    else:
        _store(ctx, envelope.ticket_id, ticket, choice.category, "classified")
        data = domain.classified(ticket, choice.category, choice.confidence, choice.method, catalogue)
    return [Emit(TRIAGE.name, envelope.caused(data, source=ctx.source))]


def resolve_manually(ctx: HandlerContext, envelope: Envelope[Any]) -> list[Emit]:
    row = ctx.session.get(TriageTicket, envelope.ticket_id)
    if row is None or row.status != "manual-triage":
        raise ValueError(f"ticket {envelope.ticket_id} is not waiting for manual triage")
    ticket = ev.RegisteredTicket.model_validate_json(row.registered_json)
    row.category, row.status = envelope.data.category, "classified"
    data = domain.classified(ticket, envelope.data.category, 1.0, "manual", ctx.extras["catalogue"])
    return [Emit(TRIAGE.name, envelope.caused(data, source=ctx.source))]


def reroute(ctx: HandlerContext, envelope: Envelope[Any]) -> list[Emit]:
    r: ev.RerouteRequested = envelope.data
    consult = r.returns >= ctx.settings.consult_after_returns
    data = domain.classified(r.ticket, r.category, 1.0, "reroute", ctx.extras["catalogue"],
                             excluding=tuple(r.excluded_units), force_consultation=consult)
    return [Emit(TRIAGE.name, envelope.caused(data, source=ctx.source))]
