"""Act (联动实施): assignments, unit reports, extensions, returns, reroutes and completion."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from ..envelope import Event
from .discover import RegisteredTicket
from .values import EscalationReason, Level, Limits, Location, Role, TimeLimitSpec


class TaskAssigned(Event):
    """A unit was given a task on its own topic."""

    event_type = "cityops.act.task.assigned.v1"

    task_id: str = Field(description="Task id (ticket id, unit, round).")
    unit: str = Field(description="Unit id assigned.")
    role: Role = Field(description="Lead (主办) or co-handling (协办).")
    round: int = Field(ge=1, description="Handling round: 1, then +1 per re-handling or re-dispatch.")
    final: bool = Field(default=False, description="Assigned by a supervisor: the unit may not return it.")
    category: str = Field(description="Catalogue category code.")
    limits: Limits = Field(description="Time limits of the task.")
    resolution_due: datetime | None = Field(default=None, description="Agreed completion deadline, when consultation fixed one.")
    joint_with: tuple[str, ...] = Field(default=(), description="Other units in the same joint action.")
    ticket: RegisteredTicket = Field(description="The ticket (masked caller).")


class TaskSignedFor(Event):
    """The unit signed for (签收) its task."""

    event_type = "cityops.act.task.signed-for.v1"

    task_id: str = Field(description="Task signed for.")
    unit: str = Field(description="Unit id.")
    handler: str | None = Field(default=None, description="Person or team who will handle it.")


class ProgressReported(Event):
    """The unit reported progress."""

    event_type = "cityops.act.progress.reported.v1"

    task_id: str = Field(description="Task.")
    unit: str = Field(description="Unit id.")
    note: str = Field(description="What was done.")
    waiting_on_resident: bool = Field(default=False, description="True while the unit waits on the resident (clock paused).")


class ExtensionRequested(Event):
    """The unit asked for more time (延期)."""

    event_type = "cityops.act.extension.requested.v1"

    task_id: str = Field(description="Task.")
    unit: str = Field(description="Unit id.")
    extra: TimeLimitSpec = Field(description="Extra time asked for.")
    reason: str = Field(description="Why.")


class ExtensionDecided(Event):
    """The hotline decided an extension request."""

    event_type = "cityops.act.extension.decided.v1"

    task_id: str = Field(description="Task.")
    unit: str = Field(description="Unit id.")
    approved: bool = Field(description="Whether it was approved.")
    extra: TimeLimitSpec = Field(description="Extra time granted (or asked, when refused).")
    reason: str = Field(description="Why.")


class TaskReturned(Event):
    """The unit returned the task (退单) as not its own."""

    event_type = "cityops.act.task.returned.v1"

    task_id: str = Field(description="Task.")
    unit: str = Field(description="Unit id.")
    reason: str = Field(min_length=1, description="Why it is not this unit's.")
    suggested_unit: str | None = Field(default=None, description="Unit it believes is responsible.")
    escalate_to: Level | None = Field(
        default=None, description="Set when an area unit escalates (上报) rather than returns: the level above it "
        "(community, street, district) whose area of the ticket's location takes the task.")
    escalation_reason: EscalationReason | None = Field(
        default=None, description="Why it is escalated (with escalate_to), e.g. help-requested (求助).")


class ReturnRejected(Event):
    """A return was refused: the task was assigned final by a supervisor."""

    event_type = "cityops.act.return.rejected.v1"

    task_id: str = Field(description="Task.")
    unit: str = Field(description="Unit id.")
    reason: str = Field(description="Why it was refused.")


class RerouteRequested(Event):
    """A return was accepted: triage must route the ticket again without the returning units."""

    event_type = "cityops.act.reroute.requested.v1"

    category: str = Field(description="Category the ticket had.")
    excluded_units: tuple[str, ...] = Field(description="Units that returned it.")
    returns: int = Field(ge=1, description="How many times this ticket has been returned.")
    reason: str = Field(description="The last return's reason.")
    suggested_unit: str | None = Field(default=None, description="Unit the returning unit pointed to.")
    escalate_to: Level | None = Field(
        default=None, description="An escalation, not a return: route to the area of this level of the ticket's location.")
    escalation_reason: EscalationReason | None = Field(default=None, description="Why it was escalated.")
    ticket: RegisteredTicket = Field(description="The ticket.")


class TaskCompleted(Event):
    """The unit finished its part (办结)."""

    event_type = "cityops.act.task.completed.v1"

    task_id: str = Field(description="Task.")
    unit: str = Field(description="Unit id.")
    result: str = Field(min_length=1, description="What was done.")
    resolved_on_the_spot: bool = Field(
        default=False, description="A grid worker resolved it where it was (就地解决), without further handling.")


class TicketHandled(Event):
    """The lead and every co-unit completed: the ticket is ready for the callback."""

    event_type = "cityops.act.ticket.handled.v1"

    round: int = Field(ge=1, description="Handling round that completed.")
    units: tuple[str, ...] = Field(description="Units that completed (lead first).")
    results: tuple[str, ...] = Field(description="Their results, in the same order.")
    category: str = Field(description="Catalogue category code.")
    location: Location = Field(description="Where the problem was (for rates per grid and district).")
    level: Level | None = Field(default=None, description="Level of the lead unit that handled it (None in older records).")
    resolved_on_the_spot: bool = Field(default=False, description="The grid lead resolved it on the spot.")
    escalated: bool = Field(default=False, description="It reached its handler by escalation from a lower level.")
