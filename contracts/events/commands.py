"""Intake commands (坐席与督导的决定): what a person decided at the hotline.

An operator, a supervisor or a callback operator decided something, and intake received it over
HTTP. Intake is the only writer of these, on cityops.intake.commands.v1; the step a command is
addressed to applies it and writes the resulting fact on its own topic (the fact carries the same
fields), so each step topic has one writer and every reader of the facts is unchanged.
"""

from __future__ import annotations

from pydantic import Field

from ..envelope import Event
from .consult import SupervisorDecided
from .discover import SplitRequested
from .evaluate import CallbackRecorded
from .triage import ManualTriageResolved
from .values import Routing, Satisfaction


class ManualTriageSubmitted(Event):
    """Command to triage: an operator chose the category of a ticket in the manual-triage queue."""

    event_type = "cityops.intake.manual-triage.submitted.v1"

    category: str = Field(description="Category code the operator chose.")
    operator: str = Field(description="Operator id.")


class SplitSubmitted(Event):
    """Command to discover: an operator asked to undo a merge."""

    event_type = "cityops.intake.split.submitted.v1"

    requested_by: str = Field(description="Operator id.")
    reason: str = Field(description="Why the tickets are not the same problem.")


class SupervisorDecisionSubmitted(Event):
    """Command to consult: a supervisor decided who leads; the lead may not return the ticket again."""

    event_type = "cityops.intake.supervisor-decision.submitted.v1"

    consultation_id: str | None = Field(default=None, description="Consultation decided, if any.")
    supervisor: str = Field(description="Supervisor id.")
    routing: Routing = Field(description="Decided lead and co-units.")
    note: str = Field(default="", description="Reasoning.")


class CallbackSubmitted(Event):
    """Command to evaluate: the resident's verdict at callback, as the callback operator entered it."""

    event_type = "cityops.intake.callback.submitted.v1"

    round: int = Field(ge=1, description="Handling round evaluated.")
    resolved: bool = Field(description="Resident says the problem is solved.")
    satisfaction: Satisfaction = Field(description="Satisfied / basically satisfied / unsatisfied.")
    operator: str = Field(default="hotline", description="Who made the call.")
    comment: str = Field(default="", description="Resident's words.")
    reasonable_demand: bool = Field(
        default=True, description="False when the demand was judged unreasonable (excluded from satisfaction ranking).")


# The fact each command becomes once its step has applied it (same fields, on the step's own topic).
COMMAND_FACTS: dict[type[Event], type[Event]] = {
    ManualTriageSubmitted: ManualTriageResolved,
    SplitSubmitted: SplitRequested,
    SupervisorDecisionSubmitted: SupervisorDecided,
    CallbackSubmitted: CallbackRecorded,
}


def fact_of(command: Event) -> Event:
    """The fact a step writes when it applies an intake command."""
    return COMMAND_FACTS[type(command)].model_validate(command.model_dump())
