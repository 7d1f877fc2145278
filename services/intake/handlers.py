"""Intake's consumers: the machine channel (plain JSON → intake record) and the status view."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.topics import ACT, CHANNEL_INTAKE, CONSULT, EVALUATE, INTAKE, TICKETS, TRIAGE
from domain.statuses import TicketStatus as Status
from services.common.handler import Emit, HandlerContext, HandlerSpec, NoDeps, Prefetch

from .domain import sealed_submission
from .keystore import seal_caller
from .models import TicketStatus, TriageCandidates

Ctx = HandlerContext[NoDeps]


@dataclass(frozen=True)
class ChannelDeps:
    """The secret the key store finds callers by and makes pseudonyms with."""

    pseudonym_key: str


def forward_channel_submission(ctx: HandlerContext[ChannelDeps], envelope: Envelope[Any]) -> Iterable[Emit]:
    """The submission, its caller sealed in the batch's own transaction (key store and outbox commit together)."""
    secret = ctx.deps.pseudonym_key
    yield Emit(INTAKE.name, sealed_submission(envelope, lambda caller, ticket_id: seal_caller(ctx.session, secret, caller, ticket_id)))


def channel_spec(deps: ChannelDeps) -> HandlerSpec[ChannelDeps]:
    """The machine channel: every record of it is a submission (plain JSON, no CloudEvents headers)."""
    return HandlerSpec(topics=[CHANNEL_INTAKE.name], event_types=None, deps=deps, handle=forward_channel_submission)


def status_spec() -> HandlerSpec[NoDeps]:
    """The status view: every status event looks its ticket's row up by id, so the batch's rows are loaded
    with one query (the prefetch)."""
    return HandlerSpec(topics=STATUS_TOPICS, event_types=STATUS_EVENT_TYPES, deps=NoDeps(), handle=update_status,
                       prefetch=[Prefetch(TicketStatus, lambda e: e.ticket_id)])


STATUS_TOPICS = [TICKETS.name, TRIAGE.name, CONSULT.name, ACT.name, EVALUATE.name]


def _row(ctx: Ctx, ticket_id: str) -> TicketStatus:
    row = ctx.rows.get(TicketStatus, ticket_id)
    if row is None:
        row = TicketStatus(ticket_id=ticket_id, status=Status.registered)
        ctx.rows.add(row)
    return row


def _registered(row: TicketStatus, t: ev.RegisteredTicket) -> None:
    row.text, row.requested_at = t.text, t.submitted_at
    row.district, row.grid, row.address = t.location.district, t.location.grid, t.location.address
    row.lat, row.lon = t.location.lat, t.location.lon


def _naive_utc(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def _lead_of(d: Any) -> tuple[str, tuple[str, ...]] | None:
    """(lead, co-units) an event states: a routing decision, or the lead's own task."""
    if isinstance(d, ev.TicketClassified | ev.PlanAgreed | ev.SupervisorDecided):
        return d.routing.lead, tuple(d.routing.co_units)
    if isinstance(d, ev.TaskAssigned) and d.role == ev.Role.lead:
        return d.unit, ()
    return None


def _fill_in_missing(row: TicketStatus, d: Any) -> None:
    """What an event read late (older than the row, or after the close) may still tell: the category
    and the lead, when no later event set them. A ticket whose close was read before its classification
    (the evaluate topic ahead of the triage topic after a restart) must still show who led it."""
    if isinstance(d, ev.TicketClassified) and row.category is None:
        row.category = d.category
    lead = _lead_of(d)
    if lead is not None and not row.lead:
        row.lead, co_units = lead
        row.co_units = row.co_units or ",".join(co_units)


def _keep_candidates(ctx: Ctx, ticket_id: str, d: ev.ManualTriageRequested) -> None:
    """What the classifier proposed, for the operator who decides (the queue shows it)."""
    pairs = json.dumps([[category, confidence] for category, confidence in d.candidates])
    found = ctx.rows.get(TriageCandidates, ticket_id)
    if found is None:
        ctx.rows.add(TriageCandidates(ticket_id=ticket_id, candidates=pairs, reason=d.reason))
    else:
        found.candidates, found.reason = pairs, d.reason


def update_status(ctx: Ctx, envelope: Envelope[Any]) -> Iterable[Emit]:
    """Move the ticket's status to what this event says, unless a later event already did.

    Each topic is ordered, but this view reads six of them: after a restart it may see a ticket's
    TicketHandled (act topic) before its TicketClassified (triage topic). An event is caused after
    its cause, so event time orders them; the older event only fills in what is still missing.
    """
    d = envelope.data
    row = _row(ctx, envelope.ticket_id)
    if isinstance(d, ev.TicketRegistered | ev.ManualTriageRequested) and not row.text:
        _registered(row, d.ticket)
    if row.status == Status.closed or (row.updated_at is not None and _naive_utc(envelope.time) < _naive_utc(row.updated_at)):
        _fill_in_missing(row, d)
        return ()
    match d:
        case ev.TicketRegistered():
            row.status = Status.merged if d.master_ticket_id else Status.registered
            row.master_ticket_id = d.master_ticket_id
        case ev.TicketMerged():
            row.status, row.master_ticket_id = Status.merged, d.master_ticket_id
        case ev.TicketSplit():
            row.status, row.master_ticket_id = Status.registered, None
        case ev.ManualTriageRequested():
            row.status = Status.manual_triage
            _keep_candidates(ctx, envelope.ticket_id, d)
        case ev.TicketClassified():
            row.category, row.lead, row.co_units = d.category, d.routing.lead, ",".join(d.routing.co_units)
            row.status = Status.consulting if d.needs_consultation else Status.dispatched
        case ev.ConsultationRequested():
            row.status, row.consultation_id = Status.consulting, d.consultation_id
        case ev.SupervisorReviewRequested():
            row.status = Status.supervisor_review
        case ev.PlanAgreed() | ev.SupervisorDecided():
            row.lead, row.co_units, row.status = d.routing.lead, ",".join(d.routing.co_units), Status.dispatched
        case ev.TaskAssigned():
            row.round = d.round
            if d.role == ev.Role.lead:
                row.lead = d.unit  # who was actually given the lead task
        case ev.RerouteRequested():
            row.status = Status.rerouting
        case ev.TicketHandled():
            row.status = Status.handled
        case ev.TicketReopened():
            row.status, row.round = Status.reopened, d.round
        case ev.TicketClosed():
            row.status, row.outcome = Status.closed, d.outcome
    if not isinstance(d, ev.TaskAssigned):
        # An assignment changes no status: were it to stamp the row, the classification or plan that caused
        # it, when read after it (another topic), would count as older and its status and lead be lost.
        row.updated_at = envelope.time
    return ()


STATUS_EVENT_TYPES = [m.event_type for m in (
    ev.TicketRegistered, ev.TicketMerged, ev.TicketSplit, ev.ManualTriageRequested, ev.TicketClassified,
    ev.ConsultationRequested, ev.SupervisorReviewRequested, ev.PlanAgreed, ev.SupervisorDecided,
    ev.TaskAssigned, ev.RerouteRequested, ev.TicketHandled, ev.TicketReopened, ev.TicketClosed)]
