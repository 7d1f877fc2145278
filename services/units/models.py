from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class PendingAction(SQLModel, table=True):
    """A simulated action waiting for its time (kept in the store so a restart loses none)."""

    __tablename__ = "unit_pending_actions"

    action_id: str = Field(primary_key=True)
    due_at: datetime = Field(index=True)
    kind: str
    unit: str
    cause_json: str = Field(description="The envelope that caused it, as JSON.")
    cause_type: str
    detail_json: str = "{}"
