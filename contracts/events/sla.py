"""SLA clocks (时限): reminders, breaches and escalations."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from ..envelope import Event
from .values import (
    Level,
)


class SlaReminderSent(Event):
    """A clock passed a reminder fraction of its limit (催办)."""

    event_type = "cityops.sla.reminder.sent.v1"

    task_id: str = Field(description="Task whose clock it is.")
    unit: str = Field(description="Unit reminded.")
    clock: Literal["sign_for", "response", "resolution"] = Field(description="Which clock.")
    fraction: float = Field(gt=0, le=1, description="Fraction of the limit used.")
    deadline: datetime = Field(description="The clock's deadline.")


class SlaBreached(Event):
    """A clock ran out."""

    event_type = "cityops.sla.deadline.breached.v1"

    task_id: str = Field(description="Task.")
    unit: str = Field(description="Unit that held the clock.")
    clock: Literal["sign_for", "response", "resolution"] = Field(description="Which clock.")
    deadline: datetime = Field(description="The deadline passed.")


class TicketEscalated(Event):
    """A ticket was escalated (督办) to the level above, or to arbitration."""

    event_type = "cityops.sla.ticket.escalated.v1"

    from_level: Level | None = Field(default=None, description="Level it was at.")
    to_level: Level | None = Field(default=None, description="Level it goes to.")
    to_unit: str | None = Field(default=None, description="Unit that now supervises it.")
    reason: Literal["breach", "ping-pong", "help-requested"] = Field(description="Why.")
    task_id: str | None = Field(default=None, description="Task concerned.")
