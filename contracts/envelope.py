"""The one envelope every cityops event travels in.

CloudEvents 1.0 attributes plus the three ids a supervisor needs to follow a ticket: the ticket
id (also the Kafka record key, so one ticket's events stay ordered), the correlation id (the
whole chain of events one intake started) and the causation id (the event that caused this one).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
# A fixed namespace so that ids derived from the same cause are the same on every redelivery.
_DERIVED_ID_NAMESPACE = uuid.UUID("5f0c6c3e-8f8e-4b8e-9a59-3f1d2c1e0a12")


class Event(BaseModel):
    """Base of every event payload (the CloudEvents `data`).

    Unknown fields are ignored rather than rejected so that an older consumer keeps working when
    a newer producer adds an optional field (add-only evolution within a version).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: ClassVar[str]


E = TypeVar("E", bound=Event)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_event_id() -> str:
    return str(uuid.uuid4())


def derive_event_id(cause_id: str, event_type: str, index: int = 0, extra: str = "") -> str:
    """An id that is the same each time the same cause produces the same output.

    Handlers run at least once; deriving output ids from their cause lets every consumer drop
    the copy a redelivery produces, which turns at-least-once delivery into exactly-once effects.
    """
    return str(uuid.uuid5(_DERIVED_ID_NAMESPACE, f"{cause_id}|{event_type}|{index}|{extra}"))


class Envelope(BaseModel, Generic[E]):
    """A CloudEvents 1.0 event with cityops' tracing extensions."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=new_event_id, description="CloudEvents id: unique per event; redeliveries keep it.")
    type: str = Field(description="CloudEvents type, e.g. cityops.intake.ticket.submitted.v1.")
    source: str = Field(description="CloudEvents source: the service that produced the event, e.g. /cityops/intake.")
    time: datetime = Field(default_factory=utcnow, description="When the fact happened (UTC, timezone-aware).")
    subject: str | None = Field(default=None, description="CloudEvents subject: the ticket id, or the unit for unit-wide events.")
    specversion: str = Field(default=SPEC_VERSION, description="CloudEvents spec version; always 1.0.")
    datacontenttype: str = Field(default=CONTENT_TYPE, description="Media type of data; always application/json.")
    ticket_id: str = Field(description="The ticket this event belongs to; also the Kafka record key.")
    correlation_id: str = Field(description="Id shared by every event that one intake or operator action set off.")
    causation_id: str | None = Field(default=None, description="Id of the event that caused this one; none for an origin event.")
    data: E = Field(description="The event payload; its model is fixed by `type`.")

    @classmethod
    def origin(cls, data: E, *, source: str, ticket_id: str, time: datetime | None = None,
               event_id: str | None = None) -> Envelope[E]:
        """An event that starts a chain (an intake, an operator action)."""
        eid = event_id or new_event_id()
        return cls(id=eid, type=data.event_type, source=source, time=time or utcnow(), subject=ticket_id,
                   ticket_id=ticket_id, correlation_id=eid, data=data)

    def caused(self, data: Event, *, source: str, index: int = 0, ticket_id: str | None = None,
               time: datetime | None = None, id_extra: str = "") -> Envelope[Any]:
        """An event caused by this one, with a derived (redelivery-stable) id."""
        tid = ticket_id or self.ticket_id
        return Envelope(
            id=derive_event_id(self.id, data.event_type, index, id_extra or tid),
            type=data.event_type, source=source, time=time or utcnow(), subject=tid, ticket_id=tid,
            correlation_id=self.correlation_id, causation_id=self.id, data=data,
        )
