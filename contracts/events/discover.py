"""Discover (需求发现): intake records, resident life events, registered, merged and split tickets."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from ..envelope import Event
from .values import (
    Caller,
    CallerRef,
    Channel,
    Location,
    SealedCaller,
    Urgency,
    ValueObject,
)


class TicketSubmitted(Event):
    """A complaint or request reached the hotline (the hotline's own intake record)."""

    event_type = "cityops.intake.ticket.submitted.v1"

    channel: Channel = Field(description="How the request arrived.")
    text: str = Field(min_length=1, max_length=5000, description="The request in the caller's words (Chinese or English).")
    caller: Caller = Field(default_factory=Caller, description=(
        "Caller's contact details in the clear: only in records written before intake sealed them "
        "(sealed_caller); empty since. Personal data, never forwarded."))
    location: Location = Field(default_factory=Location, description="Where the problem is.")
    category: str | None = Field(default=None, description="Category code chosen by the operator; wins over the classifier.")
    sealed_caller: SealedCaller | None = Field(
        default=None, description="Caller's name and phone encrypted with that caller's data key; only intake can open it.")
    caller_ref: CallerRef | None = Field(
        default=None,
        description="Masked phone and keyed pseudonym, made by intake (older records: discover makes them from caller).")
    urgency: Urgency = Field(default=Urgency.normal, description="Urgency as judged at intake.")
    language: str | None = Field(default=None, description="BCP-47 language of text if known (zh, en).")
    submitted_at: datetime = Field(description="When the resident submitted it (original time for imported records).")
    external_id: str | None = Field(default=None, description="Id in the originating system (Open311 token, imported record id).")
    idempotency_key: str | None = Field(
        default=None, description="Client's key; a retried submit with the same key is the same ticket.")
    reported_by: str | None = Field(
        default=None, description="Grid worker id (roster) who found it on patrol (channel grid-patrol); no personal data.")


class ResidentLifeEventRecorded(Event):
    """A fact about a resident from a city register, input to proactive ('policy finds the person') rules."""

    event_type = "cityops.residents.life-event.recorded.v1"

    resident_ref: str = Field(description="Pseudonymous resident id from the register.")
    kind: Literal["birthday", "newborn", "unemployed", "disability-registered"] = Field(description="What happened.")
    age: int | None = Field(default=None, ge=0, le=150, description="Age reached, for birthdays.")
    occurred_on: datetime = Field(description="When it happened.")
    location: Location = Field(default_factory=Location, description="Where the resident lives.")


class RegisteredTicket(ValueObject):
    """The part of a ticket every later step needs, without personal data."""

    channel: Channel = Field(description="How the request arrived.")
    text: str = Field(description="The request text.")
    caller: CallerRef = Field(description="Masked caller.")
    location: Location = Field(description="Where the problem is.")
    category: str | None = Field(default=None, description="Operator's category, if chosen.")
    urgency: Urgency = Field(description="Urgency.")
    submitted_at: datetime = Field(description="When the resident submitted it.")
    proactive_rule: str | None = Field(default=None, description="Id of the proactive rule that raised it, if any.")
    external_id: str | None = Field(
        default=None, description="Id in the originating system (Open311 token, imported record id), as submitted.")
    reported_by: str | None = Field(default=None, description="Grid worker id who found it on patrol, if any.")


class TicketRegistered(Event):
    """The hotline registered a ticket (工单)."""

    event_type = "cityops.discover.ticket.registered.v1"

    ticket: RegisteredTicket = Field(description="The registered ticket.")
    master_ticket_id: str | None = Field(
        default=None, description="Set when this repeats an open ticket and is merged into it (a TicketMerged follows).")


class TicketMerged(Event):
    """A repeat complaint was merged into its master ticket (并单) instead of being dispatched again."""

    event_type = "cityops.discover.ticket.merged.v1"

    master_ticket_id: str = Field(description="The open ticket this one repeats.")
    similarity: float = Field(ge=0, le=1, description="Text similarity that triggered the merge.")
    reason: str = Field(description="Why it was judged a repeat (same place, category, window).")


class SplitRequested(Event):
    """An operator asked to undo a merge."""

    event_type = "cityops.discover.split.requested.v1"

    requested_by: str = Field(description="Operator id.")
    reason: str = Field(description="Why the tickets are not the same problem.")


class TicketSplit(Event):
    """A merge was undone: the ticket goes through triage on its own."""

    event_type = "cityops.discover.ticket.split.v1"

    former_master_ticket_id: str = Field(description="The master it had been merged into.")
    ticket: RegisteredTicket = Field(description="The ticket as registered, for triage.")
    reason: str = Field(description="Operator's reason.")
