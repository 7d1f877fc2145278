"""The rows the fold produces: a ticket's state, its tasks, and what the fold hands to the store."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

from domain.statuses import TaskStatus, TicketStatus

from .facts import Fact, as_utc, db_time

# ---------------------------------------------------------------------------------------------- state

@dataclass
class TicketState:
    """Mirrors `models.ProjTicket` field for field (aware datetimes; `store` makes them naive)."""

    ticket_id: str
    status: TicketStatus = TicketStatus.submitted
    channel: str | None = None
    proactive_rule: str | None = None
    external_id: str | None = None
    text: str | None = None
    urgency: str | None = None
    category: str | None = None
    catalogue_version: str | None = None
    classified_by: str | None = None
    district: str | None = None
    street: str | None = None
    community: str | None = None
    grid: str | None = None
    lead_unit: str | None = None
    co_units: str = ""
    level: str | None = None
    round: int = 0
    final: bool = False
    master_ticket_id: str | None = None
    limits: str | None = None
    sign_for_due: datetime | None = None
    response_due: datetime | None = None
    resolution_due: datetime | None = None
    overdue: bool = False
    breaches: int = 0
    reminders: int = 0
    escalations: int = 0
    escalated_to: str | None = None
    reported_by: str | None = None
    handled_level: str | None = None
    on_the_spot: bool = False
    escalated_up: bool = False
    returns: int = 0
    reroutes: int = 0
    reopens: int = 0
    extensions: int = 0
    outcome: str | None = None
    resolved: bool | None = None
    satisfaction: str | None = None
    reasonable_demand: bool | None = None
    submitted_at: datetime | None = None
    registered_at: datetime | None = None
    classified_at: datetime | None = None
    dispatched_at: datetime | None = None
    signed_for_at: datetime | None = None
    handled_at: datetime | None = None
    closed_at: datetime | None = None
    last_event_at: datetime | None = None
    events: int = 0


@dataclass
class TaskState:
    """Mirrors `models.ProjTask` (plus the status a rejected return goes back to)."""

    task_id: str
    ticket_id: str
    unit: str
    role: str
    round: int
    final: bool = False
    category: str | None = None
    status: TaskStatus = TaskStatus.assigned
    open: bool = True
    dispatch_id: str | None = None
    assigned_at: datetime | None = None
    signed_for_at: datetime | None = None
    first_progress_at: datetime | None = None
    completed_at: datetime | None = None
    ended_at: datetime | None = None
    limits: str | None = None
    sign_for_due: datetime | None = None
    response_due: datetime | None = None
    resolution_due: datetime | None = None
    breached: str = ""
    reminders: int = 0
    returns: int = 0
    extensions_requested: int = 0
    extensions_granted: int = 0
    status_before_return: TaskStatus = field(default=TaskStatus.assigned, repr=False)

    def end(self, status: TaskStatus, at: datetime) -> None:
        self.status, self.open, self.ended_at = status, False, at

    def set_due(self, clock: str, deadline: datetime) -> None:
        setattr(self, f"{clock}_due", as_utc(deadline))

    def breach(self, clock: str) -> None:
        if clock not in self.breached.split(","):
            self.breached = ",".join(sorted(filter(None, [*self.breached.split(","), clock])))


@dataclass(frozen=True)
class Callback:
    round: int
    resolved: bool
    satisfaction: str
    reasonable: bool


@dataclass
class Folded:
    """Everything the projections keep about one ticket, computed from its events."""

    ticket: TicketState
    tasks: list[TaskState]
    metrics: dict[tuple[str, str], dict[str, int]]
    facts: list[Fact]
    handled_at_by_round: dict[int, datetime] = field(default_factory=dict)


# The columns of each row, listed once: `dataclasses.fields` per row was a tenth of a refold.
_TICKET_COLUMNS = tuple(f.name for f in fields(TicketState))
_TASK_COLUMNS = tuple(f.name for f in fields(TaskState) if f.name != "status_before_return")


def ticket_row(state: TicketState) -> dict[str, Any]:
    values = vars(state)
    return {name: _db_value(values[name]) for name in _TICKET_COLUMNS}


def task_row(state: TaskState) -> dict[str, Any]:
    values = vars(state)
    return {name: _db_value(values[name]) for name in _TASK_COLUMNS}


def _db_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return db_time(value)
    if isinstance(value, StrEnum):
        return value.value  # a plain str: what the store, the checksum and a rebuild compare
    return value
