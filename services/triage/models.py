from __future__ import annotations

from sqlmodel import Field, SQLModel


class TriageTicket(SQLModel, table=True):
    """Tickets triage has seen: what a manual decision or a reroute needs to route them again."""

    __tablename__ = "triage_tickets"

    ticket_id: str = Field(primary_key=True)
    registered_json: str = Field(description="The RegisteredTicket.")
    category: str | None = Field(default=None, description="Current category.")
    status: str = Field(default="new", description="classified, manual-triage.")
