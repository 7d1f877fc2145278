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
