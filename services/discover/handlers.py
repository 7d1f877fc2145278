"""discover: register tickets, merge repeats (and split them again), raise proactive tickets."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlmodel import select

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.topics import COMMANDS, EVALUATE, INTAKE, RESIDENTS, TICKETS, TRIAGE
from domain.catalogue import Catalogue
from services.common.commands import fact_of_command
from services.common.handler import Emit, HandlerContext, HandlerSpec, Prefetch, settings_as

from . import domain
from .models import KnownTicket
from .settings import DiscoverSettings

TOPICS = [INTAKE.name, RESIDENTS.name, COMMANDS.name, TRIAGE.name, EVALUATE.name]
EVENT_TYPES = [ev.TicketSubmitted.event_type, ev.ResidentLifeEventRecorded.event_type, ev.SplitSubmitted.event_type,
               ev.TicketClassified.event_type, ev.TicketClosed.event_type]


@dataclass(frozen=True)
class DiscoverDeps:
    """The catalogue proactive tickets check their category against."""

    catalogue: Catalogue


Ctx = HandlerContext[DiscoverDeps]


def spec(deps: DiscoverDeps) -> HandlerSpec[DiscoverDeps]:
    """What the pipeline runs: `handle` each event; every handled event looks its ticket up by id, so the
    batch's rows are loaded with one query (the prefetch)."""
    return HandlerSpec(topics=TOPICS, event_types=EVENT_TYPES, deps=deps, handle=handle,
                       prefetch=[Prefetch(KnownTicket, lambda e: e.ticket_id)])


def handle(ctx: Ctx, envelope: Envelope[Any]) -> Iterable[Emit]:
    match envelope.data:
        case ev.TicketSubmitted():
            return register(ctx, envelope)
        case ev.ResidentLifeEventRecorded():
            return raise_proactive(ctx, envelope)
        case ev.SplitSubmitted():
            return split(ctx, envelope)
        case ev.TicketClassified():
            return remember_category(ctx, envelope)
        case ev.TicketClosed():
            return forget_closed(ctx, envelope)
    return ()


def _candidates(ctx: Ctx, key: str | None, exclude: str) -> list[domain.Candidate]:
    if key is None:
        return []
    rows = ctx.session.exec(select(KnownTicket).where(KnownTicket.place_key == key, KnownTicket.open == True,  # noqa: E712
                                                      KnownTicket.master_ticket_id == None)).all()  # noqa: E711
    return [domain.Candidate(r.ticket_id, r.text, r.category, r.lat, r.lon, r.submitted_at) for r in rows if r.ticket_id != exclude]


def register(ctx: Ctx, envelope: Envelope[Any]) -> list[Emit]:
    s: ev.TicketSubmitted = envelope.data
    if ctx.rows.get(KnownTicket, envelope.ticket_id) is not None:
        return []  # the same ticket submitted again under a new event id: already registered
    st = settings_as(ctx, DiscoverSettings)
    key = domain.place_key(s.location)
    match = domain.find_master(s, _candidates(ctx, key, envelope.ticket_id), window=timedelta(hours=st.merge_window_hours),
                               min_similarity=st.merge_similarity, radius_m=st.merge_radius_m)
    ticket = domain.registered_ticket(s, st.pseudonym_key)
    _remember(ctx, envelope.ticket_id, key, ticket, match.master_ticket_id if match else None)
    out = [Emit(TICKETS.name, envelope.caused(ev.TicketRegistered(ticket=ticket, master_ticket_id=match.master_ticket_id if match else None),
                                              source=ctx.source, time=envelope.time))]
    if match:
        merged = ev.TicketMerged(master_ticket_id=match.master_ticket_id, similarity=match.similarity, reason=match.reason)
        out.append(Emit(TICKETS.name, envelope.caused(merged, source=ctx.source, index=1, time=envelope.time)))
    return out


def _remember(ctx: Ctx, ticket_id: str, key: str | None, t: ev.RegisteredTicket, master: str | None) -> None:
    ctx.rows.add(KnownTicket(ticket_id=ticket_id, place_key=key, text=t.text, category=t.category, lat=t.location.lat,
                                lon=t.location.lon, submitted_at=t.submitted_at, master_ticket_id=master,
                                registered_json=t.model_dump_json()))


def split(ctx: Ctx, envelope: Envelope[Any]) -> list[Emit]:
    """An operator's split (intake's command): the fact SplitRequested, then the split if the ticket is still merged."""
    requested = fact_of_command(ctx, envelope)
    out = [Emit(TICKETS.name, requested)]
    row = ctx.rows.get(KnownTicket, envelope.ticket_id)
    if row is None or row.master_ticket_id is None:
        return out  # not merged (any more): nothing to undo
    former, row.master_ticket_id = row.master_ticket_id, None
    ticket = ev.RegisteredTicket.model_validate_json(row.registered_json)
    data = ev.TicketSplit(former_master_ticket_id=former, ticket=ticket, reason=envelope.data.reason)
    return out + [Emit(TICKETS.name, requested.caused(data, source=ctx.source))]


def remember_category(ctx: Ctx, envelope: Envelope[Any]) -> list[Emit]:
    row = ctx.rows.get(KnownTicket, envelope.ticket_id)
    if row is not None:
        row.category = envelope.data.category
    return []


def forget_closed(ctx: Ctx, envelope: Envelope[Any]) -> list[Emit]:
    row = ctx.rows.get(KnownTicket, envelope.ticket_id)
    if row is not None:
        row.open = False
    return []


def raise_proactive(ctx: Ctx, envelope: Envelope[Any]) -> list[Emit]:
    event: ev.ResidentLifeEventRecorded = envelope.data
    catalogue = ctx.deps.catalogue
    out = []
    for i, rule in enumerate(domain.matching_rules(event)):
        ticket_id = f"P-{envelope.id[:8].upper()}-{i}"
        ticket = domain.proactive_ticket(rule, event, catalogue.has_category(rule.category))
        _remember(ctx, ticket_id, None, ticket, None)
        out.append(Emit(TICKETS.name, envelope.caused(ev.TicketRegistered(ticket=ticket), source=ctx.source,
                                                      ticket_id=ticket_id, index=i)))
    return out
