"""discover: register tickets, merge repeats (and split them again), raise proactive tickets."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import select

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.topics import COMMANDS, EVALUATE, INTAKE, RESIDENTS, TICKETS, TRIAGE
from domain import repeats
from domain.catalogue import Catalogue
from services.common.commands import fact_of_command
from services.common.handler import Emit, HandlerContext, HandlerSpec, Prefetch, settings_as

from . import domain
from .models import KnownTicket
from .settings import DiscoverSettings

TOPICS = [INTAKE.name, RESIDENTS.name, COMMANDS.name, TRIAGE.name, EVALUATE.name]
EVENT_TYPES = [ev.TicketSubmitted.event_type, ev.ResidentLifeEventRecorded.event_type, ev.SplitSubmitted.event_type,
               ev.TicketClassified.event_type, ev.TicketClosed.event_type]


class CategoryGuesser:
    """The classifier's confident category for complaints that come without one, guessed for a whole batch
    at once (`prepare_batch`: one `predict_many` costs about what one `predict` does)."""

    def __init__(self, classifier: Any, min_confidence: float) -> None:
        self.classifier, self.min_confidence = classifier, min_confidence
        self._primed: dict[str, str | None] = {}

    def prime(self, texts: Iterable[str]) -> None:
        unique = list(dict.fromkeys(texts))
        self._primed = dict(zip(unique, domain.confident_guesses(self.classifier, unique, self.min_confidence)))

    def guess(self, text: str) -> str | None:
        if text not in self._primed:
            self._primed[text] = domain.confident_guesses(self.classifier, [text], self.min_confidence)[0]
        return self._primed[text]


@dataclass(frozen=True)
class DiscoverDeps:
    """The catalogue proactive tickets check their category against; the text similarity repeats are judged
    with, and the category guesser (none: complaints without a category are compared on place, time and text)."""

    catalogue: Catalogue
    similarity: repeats.TextSimilarity = field(default_factory=repeats.TextSimilarity)
    guesser: CategoryGuesser | None = None


Ctx = HandlerContext[DiscoverDeps]


def spec(deps: DiscoverDeps) -> HandlerSpec[DiscoverDeps]:
    """What the pipeline runs: `handle` each event; every handled event looks its ticket up by id, so the
    batch's rows are loaded with one query (the prefetch)."""
    return HandlerSpec(topics=TOPICS, event_types=EVENT_TYPES, deps=deps, handle=handle, prepare_batch=prepare_batch,
                       prefetch=[Prefetch(KnownTicket, lambda e: e.ticket_id)])


def prepare_batch(deps: DiscoverDeps, envelopes: list[Envelope[Any]]) -> None:
    """Guess the categories of a batch's uncategorised complaints in one go, before applying them."""
    if deps.guesser is not None:
        deps.guesser.prime(e.data.text for e in envelopes if isinstance(e.data, ev.TicketSubmitted) and not e.data.category)


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


def _candidates(ctx: Ctx, key: str | None, exclude: str, around: datetime, window: timedelta) -> list[repeats.Complaint]:
    """The open masters at this place within the window (a merged ticket is never a master: its master is)."""
    if key is None:
        return []
    rows = ctx.session.exec(select(KnownTicket).where(
        KnownTicket.place_key == key, KnownTicket.open == True, KnownTicket.master_ticket_id == None,  # noqa: E711, E712
        KnownTicket.submitted_at >= around - window, KnownTicket.submitted_at <= around + window)).all()
    return [domain.complaint(r.ticket_id, r.text, r.category, ev.RegisteredTicket.model_validate_json(r.registered_json).location,
                             r.submitted_at) for r in rows if r.ticket_id != exclude]


def register(ctx: Ctx, envelope: Envelope[Any]) -> list[Emit]:
    """Register the complaint; merge it into the open ticket it repeats (domain.repeats). A complaint that comes
    without a category is compared with the classifier's confident guess, which is kept for later repeats
    (triage's category replaces it) but never published: triage alone decides the category."""
    s: ev.TicketSubmitted = envelope.data
    if ctx.rows.get(KnownTicket, envelope.ticket_id) is not None:
        return []  # the same ticket submitted again under a new event id: already registered
    st = settings_as(ctx, DiscoverSettings)
    rules = repeats.RepeatRules(window=timedelta(hours=st.merge_window_hours), min_similarity=st.merge_similarity,
                                min_similarity_same_category=st.merge_similarity_same_category, radius_m=st.merge_radius_m)
    guesser = ctx.deps.guesser
    category = s.category or (guesser.guess(s.text) if guesser is not None else None)
    key = domain.place_key(s.location)
    new = domain.complaint(envelope.ticket_id, s.text, category, s.location, s.submitted_at)
    match = repeats.find_master(new, _candidates(ctx, key, envelope.ticket_id, s.submitted_at, rules.window),
                                ctx.deps.similarity, rules)
    ticket = domain.registered_ticket(s, st.pseudonym_key)
    _remember(ctx, envelope.ticket_id, key, ticket, match.master_ticket_id if match else None, category)
    out = [Emit(TICKETS.name, envelope.caused(ev.TicketRegistered(ticket=ticket, master_ticket_id=match.master_ticket_id if match else None),
                                              source=ctx.source, time=envelope.time))]
    if match:
        merged = ev.TicketMerged(master_ticket_id=match.master_ticket_id, similarity=match.similarity, reason=match.reason)
        out.append(Emit(TICKETS.name, envelope.caused(merged, source=ctx.source, index=1, time=envelope.time)))
    return out


def _remember(ctx: Ctx, ticket_id: str, key: str | None, t: ev.RegisteredTicket, master: str | None,
              category: str | None) -> None:
    ctx.rows.add(KnownTicket(ticket_id=ticket_id, place_key=key, text=t.text, category=category, lat=t.location.lat,
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
        _remember(ctx, ticket_id, None, ticket, None, ticket.category)
        out.append(Emit(TICKETS.name, envelope.caused(ev.TicketRegistered(ticket=ticket), source=ctx.source,
                                                      ticket_id=ticket_id, index=i)))
    return out
