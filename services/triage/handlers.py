"""triage: classify and route registered tickets; manual decisions; reroutes after a return."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.topics import ACT, COMMANDS, TICKETS, TRIAGE
from domain.catalogue import Catalogue
from services.common.batch_state import TableRows, table_of
from services.common.commands import fact_of_command
from services.common.handler import Batched, Emit, HandlerContext, HandlerSpec, settings_as

from . import domain
from .modelfile import WatchedModel
from .models import TriageTicket
from .settings import TriageSettings

TOPICS = [TICKETS.name, COMMANDS.name, ACT.name]
EVENT_TYPES = [ev.TicketRegistered.event_type, ev.TicketSplit.event_type, ev.ManualTriageSubmitted.event_type,
               ev.RerouteRequested.event_type]


class PrimedClassifier:
    """The classifier, answering from predictions made for a whole batch at once.

    One `predict_many` over a batch's texts costs about what one `predict` does (the vectoriser and
    the model work on a matrix), so the pipeline primes it with every text of a batch before the
    batch's transaction (`prepare_batch`); a text it was not primed with is predicted on its own.
    """

    def __init__(self, inner: Any, version: str | None = None, source: WatchedModel | None = None) -> None:
        self.inner, self.version, self.source = inner, version, source
        self._primed: dict[str, Any] = {}

    def refresh(self) -> None:
        """Take a newly published model, if there is one (between batches: a batch is classified by one model)."""
        if self.source is not None and self.source.refresh():
            self.inner, self.version, self._primed = self.source.classifier, self.source.version, {}

    def prime(self, texts: Iterable[str]) -> None:
        unique = list(dict.fromkeys(texts))
        many = getattr(self.inner, "predict_many", None)
        self._primed = dict(zip(unique, many(unique))) if (many is not None and unique) else {}

    def predict(self, text: str) -> Any:
        primed = self._primed.get(text)
        return primed if primed is not None else self.inner.predict(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass(frozen=True)
class TriageDeps:
    """The catalogue to route with and the classifier to choose a category with."""

    catalogue: Catalogue
    classifier: PrimedClassifier


Ctx = HandlerContext[TriageDeps]


def spec(deps: TriageDeps) -> HandlerSpec[TriageDeps]:
    """What the pipeline runs: classify a batch's texts at once (`prepare_batch`), load its tickets' rows with
    one query, apply its events to them in memory and write what changed with one statement per kind of change
    (services/common/batch_state.py)."""
    return HandlerSpec(topics=TOPICS, event_types=EVENT_TYPES, deps=deps, batch=TRIAGE_BATCH, prepare_batch=prepare_batch)


_TICKETS = table_of(TriageTicket)


@dataclass(slots=True)
class TicketRow:
    """A row of triage_tickets as a batch keeps it: the columns and order of `TriageTicket` (checked by TableRows)."""

    ticket_id: str
    registered_json: str
    category: str | None = None
    status: str = "new"


Tickets = TableRows[TicketRow]


def start_batch(ctx: Ctx, envelopes: list[Envelope[Any]]) -> Tickets:
    tickets = TableRows(ctx.session.connection(), _TICKETS, TicketRow)
    tickets.load(e.ticket_id for e in envelopes)
    return tickets


def finish_batch(ctx: Ctx, tickets: Tickets) -> None:
    tickets.write()


def prepare_batch(deps: TriageDeps, envelopes: list[Envelope[Any]]) -> None:
    """Called by the pipeline with a batch's events before applying them: take a newly published model, then
    classify their texts in one go."""
    deps.classifier.refresh()
    deps.classifier.prime(e.data.ticket.text for e in envelopes
                          if isinstance(e.data, ev.TicketRegistered | ev.TicketSplit) and not e.data.ticket.category)


def handle(ctx: Ctx, envelope: Envelope[Any]) -> Iterable[Emit]:
    """One event on its own (tests, tools): a batch of one."""
    return TRIAGE_BATCH.one(ctx, envelope)


def apply(ctx: Ctx, tickets: Tickets, envelope: Envelope[Any]) -> Iterable[Emit]:
    match envelope.data:
        case ev.TicketRegistered(master_ticket_id=None) | ev.TicketSplit():
            return triage(ctx, tickets, envelope, envelope.data.ticket)
        case ev.ManualTriageSubmitted():
            return resolve_manually(ctx, tickets, envelope)
        case ev.RerouteRequested():
            return reroute(ctx, envelope)
    return ()  # a registered repeat: its master carries the work


def _store(tickets: Tickets, ticket_id: str, ticket: ev.RegisteredTicket, category: str | None, status: str) -> None:
    row = tickets.get(ticket_id) or tickets.add(TicketRow(ticket_id=ticket_id, registered_json=ticket.model_dump_json()))
    row.category, row.status = category, status


def triage(ctx: Ctx, tickets: Tickets, envelope: Envelope[Any], ticket: ev.RegisteredTicket) -> list[Emit]:
    catalogue, classifier = ctx.deps.catalogue, ctx.deps.classifier
    choice = domain.choose_category(ticket, classifier, catalogue, settings_as(ctx, TriageSettings).min_confidence)
    # Only a model decision names the model: an operator's or a rule's category owes it nothing.
    version = classifier.version if choice.method == "model" else None
    if choice.category is None:
        _store(tickets, envelope.ticket_id, ticket, None, "manual-triage")
        data: Any = ev.ManualTriageRequested(candidates=choice.candidates, reason=choice.reason, ticket=ticket,
                                             model_version=version)
    else:
        _store(tickets, envelope.ticket_id, ticket, choice.category, "classified")
        data = domain.classified(ticket, choice.category, choice.confidence, choice.method, catalogue,
                                 consultation_reason=choice.consultation_reason, model_version=version)
    return [Emit(TRIAGE.name, envelope.caused(data, source=ctx.source))]


def resolve_manually(ctx: Ctx, tickets: Tickets, envelope: Envelope[Any]) -> list[Emit]:
    """An operator's choice (intake's command): the fact ManualTriageResolved, then the classification it causes."""
    row = tickets.get(envelope.ticket_id)
    if row is None or row.status != "manual-triage":
        raise ValueError(f"ticket {envelope.ticket_id} is not waiting for manual triage")
    ticket = ev.RegisteredTicket.model_validate_json(row.registered_json)
    row.category, row.status = envelope.data.category, "classified"
    resolved = fact_of_command(ctx, envelope)
    data = domain.classified(ticket, envelope.data.category, 1.0, "manual", ctx.deps.catalogue,
                             consultation_reason=domain.text_consultation_reason(ticket))
    return [Emit(TRIAGE.name, resolved), Emit(TRIAGE.name, resolved.caused(data, source=ctx.source))]


def reroute(ctx: Ctx, envelope: Envelope[Any]) -> list[Emit]:
    r: ev.RerouteRequested = envelope.data
    if r.escalate_to is not None:
        return escalate(ctx, envelope, r.escalate_to)
    consult = r.returns >= settings_as(ctx, TriageSettings).consult_after_returns
    data = domain.classified(r.ticket, r.category, 1.0, "reroute", ctx.deps.catalogue, excluding=tuple(r.excluded_units),
                             consultation_reason=f"returned {r.returns} times" if consult else None)
    return [Emit(TRIAGE.name, envelope.caused(data, source=ctx.source))]


def escalate(ctx: Ctx, envelope: Envelope[Any], to_level: ev.Level) -> list[Emit]:
    """An area unit escalated (上报): the area of the level asked for takes it, on the routing path a return
    takes (the areas below it are skipped). Not a dispute, so no consultation is convened for it."""
    r: ev.RerouteRequested = envelope.data
    below = domain.escalation_exclusions(ctx.deps.catalogue, r.ticket.location, to_level)
    excluding = tuple(dict.fromkeys((*r.excluded_units, *below)))
    data = domain.classified(r.ticket, r.category, 1.0, "reroute", ctx.deps.catalogue, excluding=excluding,
                             escalation_reason=r.escalation_reason or ev.EscalationReason.help_requested)
    return [Emit(TRIAGE.name, envelope.caused(data, source=ctx.source))]


TRIAGE_BATCH: Batched[TriageDeps, Tickets] = Batched(start=start_batch, apply=apply, finish=finish_batch)
