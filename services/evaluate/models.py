from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Field, SQLModel


class EvalTicket(SQLModel, table=True):
    __tablename__ = "evaluate_tickets"

    ticket_id: str = Field(primary_key=True)
    caller_json: str = Field(default="{}", description="Masked caller (CallerRef).")
    district: str | None = None
    grid: str | None = None
    master_ticket_id: str | None = Field(default=None, index=True, description="Set while merged.")
    round: int = 0
    units: str = Field(default="", description="Units of the last handled round, lead first.")
    status: str = Field(default="open", description="open, awaiting-callback, closed.")


class EvalTask(SQLModel, table=True):
    """A task's sign-for verdict for the response rate, given once from what its assignment, its sign-for and
    sla's breach told, in whatever order they are read (three topics)."""

    __tablename__ = "evaluate_tasks"

    task_id: str = Field(primary_key=True)
    unit: str
    assigned: bool = Field(default=False, description="The assignment was read (it gives the sign-for deadline).")
    sign_for_due: datetime | None = Field(default=None, description="End of the sign-for limit on the calendar.")
    signed_for_at: datetime | None = Field(default=None, description="When the unit signed for it, if it did.")
    breached: bool = Field(default=False, description="sla reported the sign-for deadline passed.")
    judged: bool = Field(default=False, description="Counted in the response rate already.")


class Rates(SQLModel, table=True):
    """Counters per unit, grid and district: response, resolution and satisfaction rates follow from them."""

    __tablename__ = "evaluate_rates"

    scope: str = Field(primary_key=True, description="unit, grid or district.")
    key: str = Field(primary_key=True, description="The unit, grid or district id.")
    assigned: int = 0
    signed_for: int = 0
    response_n: int = Field(default=0, description="Tasks whose sign-for clock has a verdict (domain.rates).")
    responded: int = Field(default=0, description="Of those, signed for within the limit.")
    callbacks: int = 0
    resolved: int = 0
    satisfied: int = Field(default=0, description="Satisfied or basically satisfied, reasonable demands only.")
    rated: int = Field(default=0, description="Callbacks on reasonable demands (the satisfaction denominator).")
    reopened: int = 0


class EvalTicketLevel(SQLModel, table=True):
    """Where a ticket's last round was handled (TicketHandled), for the solved-at-the-lowest-level rate when it
    closes. A table of its own: a store written before it gains it without a migration."""

    __tablename__ = "evaluate_ticket_levels"

    ticket_id: str = Field(primary_key=True)
    level: str | None = Field(default=None, description="Level of the lead that handled it (None in older records).")
    escalated: bool = Field(default=False, description="It reached its handler by escalation up the area chain.")
    on_the_spot: bool = Field(default=False, description="A grid worker resolved it on the spot.")


class LowestLevelRates(SQLModel, table=True):
    """Counters per grid, district and the whole city ("city", "all"): the solved-at-the-lowest-level rate
    (domain.rates) follows from them."""

    __tablename__ = "evaluate_lowest_level"

    scope: str = Field(primary_key=True, description="grid, district or city.")
    key: str = Field(primary_key=True, description="The grid or district id; all for the city.")
    handled_closed: int = Field(default=0, description="Closed tickets that were handled.")
    solved_lowest: int = Field(default=0, description="Of those, handled by a grid or community without escalation.")
    on_the_spot: int = Field(default=0, description="Of those, resolved on the spot by a grid worker.")


def store_tables() -> list[Any]:
    """Every table of evaluate's store (the app creates them; a test's store is made of the same)."""
    return [model.__table__ for model in (EvalTicket, EvalTask, Rates, EvalTicketLevel, LowestLevelRates)]  # type: ignore[union-attr]
