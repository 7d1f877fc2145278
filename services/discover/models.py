from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class KnownTicket(SQLModel, table=True):
    """Tickets discover has registered: the candidates for repeat detection, and merge state."""

    __tablename__ = "discover_tickets"

    ticket_id: str = Field(primary_key=True)
    place_key: str | None = Field(default=None, index=True, description="Grid or coordinate cell, for repeat lookup.")
    text: str = Field(description="Request text.")
    category: str | None = Field(default=None, description="Operator's or triage's category.")
    lat: float | None = None
    lon: float | None = None
    submitted_at: datetime = Field(index=True)
    open: bool = Field(default=True, index=True, description="False once closed: closed tickets take no repeats.")
    master_ticket_id: str | None = Field(default=None, description="Set while merged into another ticket.")
    registered_json: str = Field(description="The RegisteredTicket, for a later split.")
