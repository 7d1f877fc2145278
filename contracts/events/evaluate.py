"""Evaluate (多项评估): callbacks, re-handling and closing."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..envelope import Event
from .values import (
    CallerRef,
    Satisfaction,
)


class CallbackRequested(Event):
    """The hotline must call the resident back (回访)."""

    event_type = "cityops.evaluate.callback.requested.v1"

    round: int = Field(ge=1, description="Handling round being evaluated.")
    caller: CallerRef = Field(description="Masked caller (the hotline looks up the number itself).")
    units: tuple[str, ...] = Field(description="Units that handled it.")


class CallbackRecorded(Event):
    """The resident's verdict at callback."""

    event_type = "cityops.evaluate.callback.recorded.v1"

    round: int = Field(ge=1, description="Handling round evaluated.")
    resolved: bool = Field(description="Resident says the problem is solved.")
    satisfaction: Satisfaction = Field(description="Satisfied / basically satisfied / unsatisfied.")
    operator: str = Field(default="hotline", description="Who made the call.")
    comment: str = Field(default="", description="Resident's words.")
    reasonable_demand: bool = Field(
        default=True, description="False when the demand was judged unreasonable (excluded from satisfaction ranking).")


class TicketReopened(Event):
    """Unresolved or unsatisfied: the ticket is handled again (重办)."""

    event_type = "cityops.evaluate.ticket.reopened.v1"

    round: int = Field(ge=2, description="The new handling round.")
    reason: str = Field(description="Why it was reopened.")
    units: tuple[str, ...] = Field(description="Units to handle it again (lead first).")


class TicketClosed(Event):
    """The ticket's loop is closed."""

    event_type = "cityops.evaluate.ticket.closed.v1"

    outcome: Literal["resolved", "unresolved", "answered-directly", "referred", "merged"] = Field(description="How it ended.")
    satisfaction: Satisfaction | None = Field(default=None, description="Last callback's satisfaction, if any.")
    rounds: int = Field(ge=0, description="Handling rounds it took.")
    master_ticket_id: str | None = Field(default=None, description="For merged tickets: the master whose closing closed it.")
