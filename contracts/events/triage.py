"""Triage (分类分流): classification and the manual-triage queue."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..envelope import Event
from .discover import RegisteredTicket
from .values import EscalationReason, Limits, Routing


class TicketClassified(Event):
    """Triage put the ticket in a catalogue category and routed it."""

    event_type = "cityops.triage.ticket.classified.v1"

    category: str = Field(description="Catalogue category code.")
    confidence: float = Field(ge=0, le=1, description="Classifier confidence (1.0 for operator choices).")
    method: Literal["operator", "model", "manual", "reroute", "rule"] = Field(description="Who decided the category.")
    catalogue_version: str = Field(description="Version of the responsibility catalogue used.")
    routing: Routing = Field(description="Lead unit, co-units and level.")
    needs_consultation: bool = Field(description="True when the parties must agree on a plan first.")
    limits: Limits = Field(description="Time limits of this category.")
    excluded_units: tuple[str, ...] = Field(default=(), description="Units excluded because they returned the task.")
    ticket: RegisteredTicket = Field(description="The ticket, for downstream steps.")
    model_version: str | None = Field(
        default=None,
        description="Version (content digest) of the classifier model that decided; None when a person or a rule did.",
    )
    consultation_reason: str | None = Field(
        default=None,
        description="Why the parties must agree (the catalogue, returns, cues in the text); None without consultation.",
    )
    escalation_reason: EscalationReason | None = Field(
        default=None, description="Set when this routing is an escalation up the area chain (上报): why.")


class ManualTriageRequested(Event):
    """The classifier is unsure: an operator must choose the category."""

    event_type = "cityops.triage.manual-triage.requested.v1"

    candidates: tuple[tuple[str, float], ...] = Field(description="Best (category, confidence) pairs.")
    reason: str = Field(description="Why it needs a person (low confidence, unknown category, no route).")
    ticket: RegisteredTicket = Field(description="The ticket to triage.")
    model_version: str | None = Field(
        default=None, description="Version (content digest) of the classifier model that was unsure."
    )


class ManualTriageResolved(Event):
    """An operator chose the category of a ticket in the manual-triage queue."""

    event_type = "cityops.triage.manual-triage.resolved.v1"

    category: str = Field(description="Category code the operator chose.")
    operator: str = Field(description="Operator id.")
