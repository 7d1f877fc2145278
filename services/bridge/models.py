"""The bridge's read model: the units' tasks and consultations, as their topics and the reports tell them."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class BridgeTask(SQLModel, table=True):
    """One unit's task (its part of one dispatch of a ticket), from its TaskAssigned and the reports on it."""

    __tablename__ = "bridge_tasks"

    task_id: str = Field(primary_key=True, description="Task id as act assigned it.")
    ticket_id: str = Field(index=True, description="Ticket.")
    unit: str = Field(index=True, description="Unit the task was assigned to.")
    role: str = Field(description="lead or co.")
    round: int = Field(description="Handling round.")
    final: bool = Field(default=False, description="Assigned by a supervisor's decision: it may not be returned.")
    category: str = Field(description="Catalogue category code.")
    status: str = Field(index=True, description="A domain.statuses.TaskStatus word.")
    dispatch_id: str = Field(description="Event that caused the assignment: tasks of one dispatch share it.")
    assigned_at: datetime = Field(description="When it was assigned.")
    sign_for_due: datetime | None = Field(default=None, description="Deadline to sign for it.")
    response_due: datetime | None = Field(default=None, description="Deadline of the first substantive response.")
    resolution_due: datetime | None = Field(default=None, description="Deadline to complete it, extensions included.")
    extensions_requested: int = Field(default=0, description="Extension requests seen.")
    extensions_decided: int = Field(default=0, description="Extension decisions seen.")
    extensions_granted: int = Field(default=0, description="Extensions approved.")
    handler: str | None = Field(default=None, description="Who signed for it.")
    last_note: str | None = Field(default=None, description="Last progress note, or the last decision on a request.")
    result: str | None = Field(default=None, description="What was done, once completed.")
    updated_at: datetime = Field(description="Time of the last event applied.")
    assigned_json: str = Field(description="The TaskAssigned envelope (JSON): the cause every report on it is built from.")


class BridgeConsultation(SQLModel, table=True):
    """A consultation the units are convened to, from its ConsultationRequested."""

    __tablename__ = "bridge_consultations"

    consultation_id: str = Field(primary_key=True, description="Consultation id.")
    ticket_id: str = Field(index=True, description="Ticket.")
    requested_at: datetime = Field(description="When the parties were convened.")
    opinions_due: datetime = Field(description="When opinions are due.")
    closed: bool = Field(default=False, description="A dispatch of its ticket followed: the question is settled.")
    requested_json: str = Field(description="The ConsultationRequested envelope (JSON): the cause of every opinion.")


class BridgeParty(SQLModel, table=True):
    """One party of a consultation and its answer, if any."""

    __tablename__ = "bridge_consultation_parties"

    consultation_id: str = Field(primary_key=True, description="Consultation.")
    unit: str = Field(primary_key=True, index=True, description="Unit convened.")
    answered: bool = Field(default=False, description="Whether its opinion has been seen.")
    agrees: bool | None = Field(default=None, description="Its answer.")
    proposed_lead: str | None = Field(default=None, description="Who it proposed should lead, when it disagreed.")
    comment: str | None = Field(default=None, description="Its free-text opinion.")
