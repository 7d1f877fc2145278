from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class Consultation(SQLModel, table=True):
    __tablename__ = "consultations"

    consultation_id: str = Field(primary_key=True)
    ticket_id: str = Field(index=True)
    status: str = Field(default="open", index=True, description="open, agreed, supervisor-review, decided.")
    parties: str = Field(description="Comma-separated unit ids.")
    opinions_json: str = Field(default="{}", description="unit -> [agrees, proposed_lead].")
    opinions_due: datetime = Field(index=True)
    request_json: str = Field(description="The ConsultationRequested payload.")


class RoutedTicket(SQLModel, table=True):
    """The last routing triage gave each ticket: what arbitration starts from after a ping-pong."""

    __tablename__ = "consult_routed_tickets"

    ticket_id: str = Field(primary_key=True)
    routing_json: str = Field(description="The Routing of the last TicketClassified.")
    arbitrations: int = Field(default=0, description="Ping-pong arbitrations opened for it.")
