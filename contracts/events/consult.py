"""Consult (协商设计): consultations, opinions, agreed plans and supervisor decisions."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from ..envelope import Event
from .discover import RegisteredTicket
from .values import Limits, Routing


class ConsultationRequested(Event):
    """The parties are convened to agree who leads, who helps, and by when."""

    event_type = "cityops.consult.consultation.requested.v1"

    consultation_id: str = Field(description="Id of this consultation.")
    parties: tuple[str, ...] = Field(description="Unit ids invited.")
    proposed: Routing = Field(description="The plan put to the parties.")
    reason: str = Field(description="Why consultation is needed.")
    opinions_due: datetime = Field(description="When opinions are due; after it a supervisor decides.")
    category: str = Field(description="Catalogue category code.")
    limits: Limits = Field(description="Time limits the plan will carry.")
    ticket: RegisteredTicket = Field(description="The ticket.")


class OpinionGiven(Event):
    """A party's answer to a consultation."""

    event_type = "cityops.consult.opinion.given.v1"

    consultation_id: str = Field(description="Consultation answered.")
    unit: str = Field(description="Unit id answering.")
    agrees: bool = Field(description="True when the unit accepts the proposed plan.")
    proposed_lead: str | None = Field(default=None, description="The unit this one thinks should lead, when it disagrees.")
    comment: str = Field(default="", description="Free-text opinion.")


class PlanAgreed(Event):
    """The parties agreed a plan."""

    event_type = "cityops.consult.plan.agreed.v1"

    consultation_id: str = Field(description="Consultation concluded.")
    routing: Routing = Field(description="Agreed lead and co-units.")
    deadline: datetime = Field(description="Agreed completion deadline.")
    category: str = Field(description="Catalogue category code.")
    limits: Limits = Field(description="Time limits.")
    ticket: RegisteredTicket = Field(description="The ticket.")


class SupervisorReviewRequested(Event):
    """The parties did not agree in time: a supervisor must decide."""

    event_type = "cityops.consult.supervisor-review.requested.v1"

    consultation_id: str = Field(description="Consultation that failed.")
    reason: str = Field(description="Disagreement or missing opinions.")
    opinions: tuple[tuple[str, bool, str | None], ...] = Field(description="(unit, agrees, proposed lead) per opinion received.")
    proposed: Routing = Field(description="The plan that was put to the parties.")


class SupervisorDecided(Event):
    """A supervisor decided who leads; the lead may not return the ticket again."""

    event_type = "cityops.consult.supervisor.decided.v1"

    consultation_id: str | None = Field(default=None, description="Consultation decided, if any.")
    supervisor: str = Field(description="Supervisor id.")
    routing: Routing = Field(description="Decided lead and co-units.")
    note: str = Field(default="", description="Reasoning.")
