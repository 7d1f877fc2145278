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
from services.common.batch_state import TableRows, table_of
from services.common.handler import Batched, Emit, HandlerContext, HandlerSpec, NoDeps

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
    """The status view: a batch loads its tickets' rows with one query, applies its events to them in memory and
    writes what changed with one statement per kind of change (services/common/batch_state.py)."""
    return HandlerSpec(topics=STATUS_TOPICS, event_types=STATUS_EVENT_TYPES, deps=NoDeps(), batch=STATUS_BATCH)


# The tables the status view writes (intake's app creates them with the rest of its store).
STATUS_TABLES = [TicketStatus, TriageCandidates]
STATUS_TOPICS = [TICKETS.name, TRIAGE.name, CONSULT.name, ACT.name, EVALUATE.name]
_STATUS, _CANDIDATES = table_of(TicketStatus), table_of(TriageCandidates)


@dataclass(slots=True)
class StatusRow:
    """A row of intake_ticket_status as a batch keeps it: the columns, order and defaults of `TicketStatus`
    (checked by TableRows)."""

    ticket_id: str
    status: str = Status.registered
    category: str | None = None
    lead: str | None = None
    co_units: str = ""
    master_ticket_id: str | None = None
    consultation_id: str | None = None
    round: int = 1
    text: str = ""
    district: str | None = None
    grid: str | None = None
    address: str | None = None
    lat: float | None = None
    lon: float | None = None
    outcome: str | None = None
    requested_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(slots=True)
class CandidatesRow:
    """A row of intake_triage_candidates, as `TriageCandidates`."""

    ticket_id: str
    candidates: str = "[]"
    reason: str = ""


@dataclass(frozen=True)
class StatusBatch:
    statuses: TableRows[StatusRow]
    candidates: TableRows[CandidatesRow]


def start_status_batch(ctx: Ctx, envelopes: list[Envelope[Any]]) -> StatusBatch:
    connection = ctx.session.connection()
    statuses = TableRows(connection, _STATUS, StatusRow)
    statuses.load(e.ticket_id for e in envelopes)
    # The candidates come with a ManualTriageRequested only (rare): looked up when one is (`TableRows.get`).
    return StatusBatch(statuses, TableRows(connection, _CANDIDATES, CandidatesRow))


def finish_status_batch(ctx: Ctx, batch: StatusBatch) -> None:
    batch.statuses.write()
    batch.candidates.write()


def _row(batch: StatusBatch, ticket_id: str) -> StatusRow:
    return batch.statuses.get(ticket_id) or batch.statuses.add(StatusRow(ticket_id=ticket_id))


def _registered(row: StatusRow, t: ev.RegisteredTicket) -> None:
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


def _fill_in_missing(row: StatusRow, d: Any) -> None:
    """What an event read late (older than the row, or after the close) may still tell: the category
    and the lead, when no later event set them. A ticket whose close was read before its classification
    (the evaluate topic ahead of the triage topic after a restart) must still show who led it."""
    if isinstance(d, ev.TicketClassified) and row.category is None:
        row.category = d.category
    lead = _lead_of(d)
    if lead is not None and not row.lead:
        row.lead, co_units = lead
        row.co_units = row.co_units or ",".join(co_units)


def _keep_candidates(batch: StatusBatch, ticket_id: str, d: ev.ManualTriageRequested) -> None:
    """What the classifier proposed, for the operator who decides (the queue shows it)."""
    pairs = json.dumps([[category, confidence] for category, confidence in d.candidates])
    found = batch.candidates.get(ticket_id)
    if found is None:
        batch.candidates.add(CandidatesRow(ticket_id=ticket_id, candidates=pairs, reason=d.reason))
    else:
        found.candidates, found.reason = pairs, d.reason


def update_status(ctx: Ctx, envelope: Envelope[Any]) -> Iterable[Emit]:
    """One event on its own (tests, tools): a batch of one."""
    return STATUS_BATCH.one(ctx, envelope)


def _apply_status(ctx: Ctx, batch: StatusBatch, envelope: Envelope[Any]) -> Iterable[Emit]:
    """Move the ticket's status to what this event says, unless a later event already did.

    Each topic is ordered, but this view reads six of them: after a restart it may see a ticket's
    TicketHandled (act topic) before its TicketClassified (triage topic). An event is caused after
    its cause, so event time orders them; the older event only fills in what is still missing.
    """
    d = envelope.data
    row = _row(batch, envelope.ticket_id)
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
            _keep_candidates(batch, envelope.ticket_id, d)
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


STATUS_BATCH: Batched[NoDeps, StatusBatch] = Batched(start=start_status_batch, apply=_apply_status, finish=finish_status_batch)
