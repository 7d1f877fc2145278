"""What the projections know of one event (`Fact`), the lifecycle order that breaks time ties, and time helpers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contracts import events as ev
from contracts.envelope import Envelope, Event
from contracts.registry import model_for
from contracts.topics import topic_for_event

# Lifecycle order: breaks ties between events stamped with the same instant (one handler often
# emits several events with one clock reading).
_LIFECYCLE: tuple[type[Event], ...] = (
    ev.TicketSubmitted, ev.TicketRegistered, ev.TicketMerged, ev.SplitRequested, ev.TicketSplit,
    ev.ManualTriageRequested, ev.ManualTriageResolved, ev.TicketClassified, ev.ConsultationRequested,
    ev.OpinionGiven, ev.SupervisorReviewRequested, ev.SupervisorDecided, ev.PlanAgreed, ev.RerouteRequested,
    ev.TaskAssigned, ev.TaskSignedFor, ev.ProgressReported, ev.ExtensionRequested, ev.ExtensionDecided,
    ev.SlaReminderSent, ev.SlaBreached, ev.TicketEscalated, ev.TaskReturned, ev.ReturnRejected, ev.TaskCompleted,
    ev.TicketHandled, ev.CallbackRequested, ev.CallbackRecorded, ev.TicketReopened, ev.TicketClosed,
)
TYPE_RANK: dict[str, int] = {model.event_type: rank for rank, model in enumerate(_LIFECYCLE)}
PROJECTED_TYPES: tuple[str, ...] = tuple(TYPE_RANK)
KIND: dict[str, str] = {model.event_type: model.__name__ for model in _LIFECYCLE}
TOPIC: dict[str, str] = {model.event_type: topic_for_event(model.event_type) for model in _LIFECYCLE}


# ---------------------------------------------------------------------------------------------- facts

@dataclass(frozen=True)
class Fact:
    """What the fold needs of one event (an envelope, or a stored timeline row)."""

    id: str
    type: str
    time: datetime
    ticket_id: str
    data: Event
    source: str = ""
    correlation_id: str = ""
    causation_id: str | None = None

    @classmethod
    def from_envelope(cls, envelope: Envelope[Any]) -> Fact:
        return cls(envelope.id, envelope.type, as_utc(envelope.time), envelope.ticket_id, envelope.data,
                   envelope.source, envelope.correlation_id, envelope.causation_id)

    @classmethod
    def from_payload(cls, *, id: str, type: str, time: datetime, ticket_id: str, payload: str, source: str = "",
                     correlation_id: str = "", causation_id: str | None = None) -> Fact:
        data = model_for(type).model_validate_json(payload)
        return cls(id, type, as_utc(time), ticket_id, data, source, correlation_id, causation_id)

    @property
    def data_is_stored_as_is(self) -> bool:
        """Whether the timeline's payload (`stored_payload`) parses back to this very data: all but a
        submission, whose caller details are left out."""
        return not isinstance(self.data, ev.TicketSubmitted)

    @property
    def sort_key(self) -> tuple[datetime, int, str]:
        return (self.time, TYPE_RANK.get(self.type, 99), self.id)


def as_utc(moment: datetime) -> datetime:
    """Aware UTC; a naive value is read as UTC (that is how the store keeps it)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def db_time(moment: datetime | None) -> datetime | None:
    """Aware UTC: what SQLModel's UTCDateTime columns take, and give back from SQLite and PostgreSQL alike."""
    return None if moment is None else as_utc(moment)


def stored_payload(data: Event) -> str:
    """The event data as kept in the timeline: the caller's name and phone never reach a read model."""
    exclude = {"caller", "sealed_caller"} if isinstance(data, ev.TicketSubmitted) else None
    return data.model_dump_json(exclude=exclude)


def is_projected(event_type: str) -> bool:
    return event_type in TYPE_RANK


def parse_facts(rows: Sequence[Any]) -> list[Fact]:
    """Facts from stored timeline rows (objects or mappings with the timeline's columns)."""
    def get(row: Any, name: str) -> Any:
        return row[name] if isinstance(row, dict) else getattr(row, name)
    return [Fact.from_payload(id=get(r, "event_id"), type=get(r, "type"), time=get(r, "time"),
                              ticket_id=get(r, "ticket_id"), payload=get(r, "payload"), source=get(r, "source"),
                              correlation_id=get(r, "correlation_id"), causation_id=get(r, "causation_id"))
            for r in rows]
