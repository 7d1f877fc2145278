"""discover: register tickets, merge repeats (and split them again), raise proactive tickets."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, true
from sqlmodel import select

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.topics import COMMANDS, EVALUATE, INTAKE, RESIDENTS, RESIDENTS_BASE, TICKETS, TRIAGE
from domain import repeats
from domain.catalogue import Catalogue
from domain.residents.rules import Firing, Rule, WeatherAlert, load_rules, scan
from services.common.batch_state import TableRows, table_of
from services.common.commands import fact_of_command
from services.common.direct_sql import select_rows
from services.common.handler import Batched, Emit, HandlerContext, HandlerSpec, Tick, settings_as
from services.common.logs import get_logger

from . import domain
from .models import KnownTicket, ProactiveRaised, ProactiveScan, ResidentRow, WeatherAlertRow
from .settings import DiscoverSettings

TOPICS = [INTAKE.name, RESIDENTS.name, RESIDENTS_BASE.name, COMMANDS.name, TRIAGE.name, EVALUATE.name]
EVENT_TYPES = [ev.TicketSubmitted.event_type, ev.ResidentLifeEventRecorded.event_type, ev.SplitSubmitted.event_type,
               ev.TicketClassified.event_type, ev.TicketClosed.event_type, *RESIDENTS_BASE.event_types]


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
    rules: tuple[Rule, ...] = field(default_factory=load_rules)


Ctx = HandlerContext[DiscoverDeps]
log = get_logger(__name__)


def spec(deps: DiscoverDeps, tick_s: float = 60.0) -> HandlerSpec[DiscoverDeps]:
    """What the pipeline runs: a batch loads its tickets' rows with one query, applies its events to them in
    memory and writes what changed with one statement per kind of change (services/common/batch_state.py)."""
    return HandlerSpec(topics=TOPICS, event_types=EVENT_TYPES, deps=deps, batch=DISCOVER_BATCH,
                       prepare_batch=prepare_batch, ticks=[Tick(daily_scan, tick_s)])


_KNOWN = table_of(KnownTicket)


@dataclass(slots=True)
class KnownRow:
    """A row of discover_tickets as a batch keeps it: the columns and order of `KnownTicket` (checked by
    TableRows)."""

    ticket_id: str
    place_key: str | None
    text: str
    category: str | None
    lat: float | None
    lon: float | None
    submitted_at: datetime
    open: bool
    master_ticket_id: str | None
    registered_json: str


Tickets = TableRows[KnownRow]


def known_tickets(ctx: Ctx) -> Tickets:
    """The rows of discover_tickets a batch (or a scan) reads and changes, written by `Tickets.write`."""
    return TableRows(ctx.session.connection(), _KNOWN, KnownRow)


def start_batch(ctx: Ctx, envelopes: list[Envelope[Any]]) -> Tickets:
    tickets = known_tickets(ctx)
    tickets.load(e.ticket_id for e in envelopes if not isinstance(e.data, _NOT_ABOUT_A_TICKET))
    return tickets


def finish_batch(ctx: Ctx, tickets: Tickets) -> None:
    tickets.write()


def prepare_batch(deps: DiscoverDeps, envelopes: list[Envelope[Any]]) -> None:
    """Guess the categories of a batch's uncategorised complaints in one go, before applying them."""
    if deps.guesser is not None:
        deps.guesser.prime(e.data.text for e in envelopes if isinstance(e.data, ev.TicketSubmitted) and not e.data.category)


def handle(ctx: Ctx, envelope: Envelope[Any]) -> Iterable[Emit]:
    """One event on its own (tests, tools): a batch of one."""
    return DISCOVER_BATCH.one(ctx, envelope)


def apply(ctx: Ctx, tickets: Tickets, envelope: Envelope[Any]) -> Iterable[Emit]:
    match envelope.data:
        case ev.TicketSubmitted():
            return register(ctx, tickets, envelope)
        case ev.ResidentLifeEventRecorded():
            return raise_proactive(ctx, tickets, envelope)
        case ev.SplitSubmitted():
            return split(ctx, tickets, envelope)
        case ev.TicketClassified():
            return remember_category(tickets, envelope)
        case ev.TicketClosed():
            return forget_closed(tickets, envelope)
        case ev.ResidentBaseRecorded():
            return keep_resident(ctx, envelope)
        case ev.WeatherAlertIssued():
            return keep_alert(ctx, envelope)
        case ev.ProactiveScanRequested():
            return requested_scan(ctx, tickets, envelope)
    return ()


# Events whose envelope's ticket id is no ticket of discover's (a resident, an alert, a scan request).
_NOT_ABOUT_A_TICKET = (ev.ResidentLifeEventRecorded, ev.ResidentBaseRecorded, ev.WeatherAlertIssued,
                       ev.ProactiveScanRequested)
# The open masters at a place within a time window, built once (as the batch's other statements).
_OPEN_MASTERS_AT = (_KNOWN.select().where(_KNOWN.c.place_key == bindparam("place"), _KNOWN.c.open == true(),
                                         _KNOWN.c.master_ticket_id.is_(None), _KNOWN.c.submitted_at >= bindparam("start"),
                                         _KNOWN.c.submitted_at <= bindparam("end")))


def _candidates(tickets: Tickets, key: str | None, exclude: str, around: datetime,
                window: timedelta) -> list[repeats.Complaint]:
    """The open masters at this place within the window (a merged ticket is never a master: its master is),
    as the batch has them: the store's, with the batch's changes, and those registered earlier in the batch."""
    if key is None:
        return []
    start, end = around - window, around + window
    for values in select_rows(tickets.connection, _OPEN_MASTERS_AT, {"place": key, "start": start, "end": end}):
        if not tickets.known(values[0]):
            tickets.adopt(values)
    rows = sorted((r for r in tickets.values() if r.place_key == key and r.open and r.master_ticket_id is None
                   and start <= r.submitted_at <= end and r.ticket_id != exclude), key=lambda r: r.ticket_id)
    return [domain.complaint(r.ticket_id, r.text, r.category, ev.RegisteredTicket.model_validate_json(r.registered_json).location,
                             r.submitted_at) for r in rows]


def register(ctx: Ctx, tickets: Tickets, envelope: Envelope[Any]) -> list[Emit]:
    """Register the complaint; merge it into the open ticket it repeats (domain.repeats). A complaint that comes
    without a category is compared with the classifier's confident guess, which is kept for later repeats
    (triage's category replaces it) but never published: triage alone decides the category."""
    s: ev.TicketSubmitted = envelope.data
    if tickets.get(envelope.ticket_id) is not None:
        return []  # the same ticket submitted again under a new event id: already registered
    st = settings_as(ctx, DiscoverSettings)
    rules = repeats.RepeatRules(window=timedelta(hours=st.merge_window_hours), min_similarity=st.merge_similarity,
                                min_similarity_same_category=st.merge_similarity_same_category, radius_m=st.merge_radius_m)
    guesser = ctx.deps.guesser
    category = s.category or (guesser.guess(s.text) if guesser is not None else None)
    key = domain.place_key(s.location)
    new = domain.complaint(envelope.ticket_id, s.text, category, s.location, s.submitted_at)
    match = repeats.find_master(new, _candidates(tickets, key, envelope.ticket_id, s.submitted_at, rules.window),
                                ctx.deps.similarity, rules)
    ticket = domain.registered_ticket(s, st.pseudonym_key)
    _remember(tickets, envelope.ticket_id, key, ticket, match.master_ticket_id if match else None, category)
    out = [Emit(TICKETS.name, envelope.caused(ev.TicketRegistered(ticket=ticket, master_ticket_id=match.master_ticket_id if match else None),
                                              source=ctx.source, time=envelope.time))]
    if match:
        merged = ev.TicketMerged(master_ticket_id=match.master_ticket_id, similarity=match.similarity, reason=match.reason)
        out.append(Emit(TICKETS.name, envelope.caused(merged, source=ctx.source, index=1, time=envelope.time)))
    return out


def _remember(tickets: Tickets, ticket_id: str, key: str | None, t: ev.RegisteredTicket, master: str | None,
              category: str | None) -> None:
    tickets.add(KnownRow(ticket_id=ticket_id, place_key=key, text=t.text, category=category, lat=t.location.lat,
                         lon=t.location.lon, submitted_at=t.submitted_at, open=True, master_ticket_id=master,
                         registered_json=t.model_dump_json()))


def split(ctx: Ctx, tickets: Tickets, envelope: Envelope[Any]) -> list[Emit]:
    """An operator's split (intake's command): the fact SplitRequested, then the split if the ticket is still merged."""
    requested = fact_of_command(ctx, envelope)
    out = [Emit(TICKETS.name, requested)]
    row = tickets.get(envelope.ticket_id)
    if row is None or row.master_ticket_id is None:
        return out  # not merged (any more): nothing to undo
    former, row.master_ticket_id = row.master_ticket_id, None
    ticket = ev.RegisteredTicket.model_validate_json(row.registered_json)
    data = ev.TicketSplit(former_master_ticket_id=former, ticket=ticket, reason=envelope.data.reason)
    return out + [Emit(TICKETS.name, requested.caused(data, source=ctx.source))]


def remember_category(tickets: Tickets, envelope: Envelope[Any]) -> list[Emit]:
    row = tickets.get(envelope.ticket_id)
    if row is not None:
        row.category = envelope.data.category
    return []


def forget_closed(tickets: Tickets, envelope: Envelope[Any]) -> list[Emit]:
    row = tickets.get(envelope.ticket_id)
    if row is not None:
        row.open = False
    return []


# ---------------------------------------------------------------- proactive rules ("the policy finds the person")

def raise_proactive(ctx: Ctx, tickets: Tickets, envelope: Envelope[Any]) -> list[Emit]:
    """A life event: the rules it can set off, for the resident as the register knows them (or as the event says)."""
    event: ev.ResidentLifeEventRecorded = envelope.data
    row = ctx.session.get(ResidentRow, event.resident_ref)
    known = domain.resident_of(ev.ResidentBaseRecorded.model_validate_json(row.record_json)) if row else None
    fired = domain.life_event_firings(event, known, ctx.deps.rules)
    return _raise(ctx, tickets, fired, envelope.time, lambda data, tid, i: envelope.caused(
        data, source=ctx.source, ticket_id=tid, index=i, time=envelope.time))


def keep_resident(ctx: Ctx, envelope: Envelope[Any]) -> list[Emit]:
    record: ev.ResidentBaseRecorded = envelope.data
    ctx.session.merge(ResidentRow(resident_id=record.resident_id, grid_id=record.grid_id, record_json=record.model_dump_json()))
    return []


def keep_alert(ctx: Ctx, envelope: Envelope[Any]) -> list[Emit]:
    alert: ev.WeatherAlertIssued = envelope.data
    ctx.session.merge(WeatherAlertRow(alert_id=alert.alert_id, ends=alert.ends, alert_json=alert.model_dump_json()))
    return []


def requested_scan(ctx: Ctx, tickets: Tickets, envelope: Envelope[Any]) -> list[Emit]:
    """An operator's `cityops residents scan --now DAY`: the same scan as the daily one, for that day."""
    day = envelope.data.day
    return _scan(ctx, tickets, day, envelope.time, lambda data, tid, i: envelope.caused(
        data, source=ctx.source, ticket_id=tid, index=i, time=envelope.time))


def daily_scan(ctx: Ctx) -> list[Emit]:
    """The tick: once a day, at `proactive_scan_at` local time, scan every resident (runs in the pipeline's worker
    thread, never on the event loop)."""
    st = settings_as(ctx, DiscoverSettings)
    now = ctx.now()
    local = now.astimezone(ZoneInfo(st.proactive_timezone))
    if local.time() < st.proactive_scan_at or ctx.session.get(ProactiveScan, local.date()) is not None:
        return []
    tickets = known_tickets(ctx)
    out = _scan(ctx, tickets, local.date(), now, lambda data, tid, i: Envelope.origin(data, source=ctx.source,
                                                                                     ticket_id=tid, time=now))
    tickets.write()
    return out


Make = Callable[[ev.Event, str, int], Envelope[Any]]


def _scan(ctx: Ctx, tickets: Tickets, day: date, at: datetime, make: Make) -> list[Emit]:
    started = time.perf_counter()
    residents = [domain.resident_of(ev.ResidentBaseRecorded.model_validate_json(j))
                 for j in ctx.session.exec(select(ResidentRow.record_json)).all()]
    alerts = [_alert(ev.WeatherAlertIssued.model_validate_json(j))
              for j in ctx.session.exec(select(WeatherAlertRow.alert_json).where(WeatherAlertRow.ends >= day)).all()]
    raised = set(ctx.session.exec(select(ProactiveRaised.key)).all())
    out = _raise(ctx, tickets, scan(residents, ctx.deps.rules, day, raised, alerts), at, make, raised)
    seconds = time.perf_counter() - started
    ctx.session.merge(ProactiveScan(day=day, raised=len(out), seconds=round(seconds, 3)))
    log.info("proactive_scan", day=day.isoformat(), residents=len(residents), raised=len(out), seconds=round(seconds, 3))
    return out


def _alert(a: ev.WeatherAlertIssued) -> WeatherAlert:
    return WeatherAlert(a.alert_id, a.kind, a.starts, a.ends, frozenset(a.grids) if a.grids is not None else None)


def _raise(ctx: Ctx, tickets: Tickets, fired: list[Firing], at: datetime, make: Make,
           raised: set[str] | None = None) -> list[Emit]:
    """One ticket per firing whose key was never raised; the key is kept with the ticket, in the same transaction."""
    catalogue = ctx.deps.catalogue
    out: list[Emit] = []
    for firing in fired:
        key = firing.key
        if (key in raised) if raised is not None else ctx.session.get(ProactiveRaised, key) is not None:
            continue
        ticket_id = domain.proactive_ticket_id(key)
        ticket = domain.proactive_ticket(firing, catalogue.has_category(firing.rule.category), at)
        ctx.session.add(ProactiveRaised(key=key, ticket_id=ticket_id, rule_id=firing.rule.rule_id,
                                        resident_id=firing.resident.resident_id, raised_at=at))
        if raised is not None:
            raised.add(key)
        _remember(tickets, ticket_id, None, ticket, None, ticket.category)
        out.append(Emit(TICKETS.name, make(ev.TicketRegistered(ticket=ticket), ticket_id, len(out))))
    return out


DISCOVER_BATCH: Batched[DiscoverDeps, Tickets] = Batched(start=start_batch, apply=apply, finish=finish_batch)
