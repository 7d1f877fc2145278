"""Intake's consumers: the machine channel (plain JSON → intake record) and the status view."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.topics import (
    ACT,
    CHANNEL_INTAKE,
    CONSULT,
    EVALUATE,
    INTAKE,
    TICKETS,
    TRIAGE,
)
from services.common.handler import Emit, HandlerContext, HandlerSpec, NoDeps, Prefetch

from .models import TicketStatus

Ctx = HandlerContext[NoDeps]


def forward_channel_submission(ctx: Ctx, envelope: Envelope[Any]) -> Iterable[Emit]:
    yield Emit(INTAKE.name, envelope)


def channel_spec() -> HandlerSpec[NoDeps]:
    """The machine channel: every record of it is a submission (plain JSON, no CloudEvents headers)."""
    return HandlerSpec(topics=[CHANNEL_INTAKE.name], event_types=None, deps=NoDeps(), handle=forward_channel_submission)


def status_spec() -> HandlerSpec[NoDeps]:
    """The status view: every status event looks its ticket's row up by id, so the batch's rows are loaded
    with one query (the prefetch)."""
    return HandlerSpec(topics=STATUS_TOPICS, event_types=STATUS_EVENT_TYPES, deps=NoDeps(), handle=update_status,
                       prefetch=[Prefetch(TicketStatus, lambda e: e.ticket_id)])


STATUS_TOPICS = [TICKETS.name, TRIAGE.name, CONSULT.name, ACT.name, EVALUATE.name]


def _row(ctx: Ctx, ticket_id: str) -> TicketStatus:
    row = ctx.rows.get(TicketStatus, ticket_id)
    if row is None:
        row = TicketStatus(ticket_id=ticket_id, status="registered")
        ctx.rows.add(row)
    return row


def _registered(row: TicketStatus, t: ev.RegisteredTicket) -> None:
    row.text, row.requested_at = t.text, t.submitted_at
    row.district, row.grid, row.address = t.location.district, t.location.grid, t.location.address
    row.lat, row.lon = t.location.lat, t.location.lon


def _naive_utc(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


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
    if row.status == "closed" or (row.updated_at is not None and _naive_utc(envelope.time) < _naive_utc(row.updated_at)):
        if isinstance(d, ev.TicketClassified) and row.category is None:
            row.category = d.category
        return ()
    match d:
        case ev.TicketRegistered():
            row.status = "merged" if d.master_ticket_id else "registered"
            row.master_ticket_id = d.master_ticket_id
        case ev.TicketMerged():
            row.status, row.master_ticket_id = "merged", d.master_ticket_id
        case ev.TicketSplit():
            row.status, row.master_ticket_id = "registered", None
        case ev.ManualTriageRequested():
            row.status = "manual-triage"
        case ev.TicketClassified():
            row.category, row.lead, row.co_units = d.category, d.routing.lead, ",".join(d.routing.co_units)
            row.status = "consultation" if d.needs_consultation else "dispatched"
        case ev.ConsultationRequested():
            row.status, row.consultation_id = "consultation", d.consultation_id
        case ev.SupervisorReviewRequested():
            row.status = "supervisor-review"
        case ev.PlanAgreed() | ev.SupervisorDecided():
            row.lead, row.co_units, row.status = d.routing.lead, ",".join(d.routing.co_units), "dispatched"
        case ev.TaskAssigned():
            row.round = d.round
        case ev.RerouteRequested():
            row.status = "rerouting"
        case ev.TicketHandled():
            row.status = "handled"
        case ev.TicketReopened():
            row.status, row.round = "re-handling", d.round
        case ev.TicketClosed():
            row.status, row.outcome = "closed", d.outcome
    row.updated_at = envelope.time
    return ()


STATUS_EVENT_TYPES = [m.event_type for m in (
    ev.TicketRegistered, ev.TicketMerged, ev.TicketSplit, ev.ManualTriageRequested, ev.TicketClassified,
    ev.ConsultationRequested, ev.SupervisorReviewRequested, ev.PlanAgreed, ev.SupervisorDecided,
    ev.TaskAssigned, ev.RerouteRequested, ev.TicketHandled, ev.TicketReopened, ev.TicketClosed)]
