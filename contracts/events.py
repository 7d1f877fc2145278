"""The event catalogue of the five-step workflow, version 1.

Every payload is frozen, describes each field, and is registered under its CloudEvents type
`cityops.<area>.<subject>.<past-verb>.v1`. Within v1 models only grow: new fields are optional
(tests/contract/test_schemas.py compares each one with its frozen JSON Schema in contracts/schemas/).

Privacy by projection: only `TicketSubmitted` (the hotline's own intake record) carries the
caller's name and phone. Every later event carries `CallerRef`: a masked phone and a pseudonym.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .envelope import Event


# ---------------------------------------------------------------- shared value objects

class Channel(StrEnum):
    phone = "phone"
    web = "web"
    app = "app"
    grid_patrol = "grid-patrol"
    open311 = "open311"
    proactive = "proactive"
    import_ = "import"


class Urgency(StrEnum):
    normal = "normal"
    urgent = "urgent"
    emergency = "emergency"


class Level(StrEnum):
    grid = "grid"
    community = "community"
    street = "street"
    district = "district"
    city = "city"


class Satisfaction(StrEnum):
    satisfied = "satisfied"
    basically_satisfied = "basically-satisfied"
    unsatisfied = "unsatisfied"


class Role(StrEnum):
    lead = "lead"
    co = "co"


class ValueObject(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Location(ValueObject):
    """Where the problem is: an administrative path and/or a coordinate."""

    district: str | None = Field(default=None, description="District id from the catalogue's areas, e.g. district-east.")
    street: str | None = Field(default=None, description="Street office id, e.g. street-east-1.")
    community: str | None = Field(default=None, description="Community id, e.g. community-east-1-a.")
    grid: str | None = Field(default=None, description="Grid id, e.g. grid-east-1-a-1.")
    address: str | None = Field(default=None, description="Free-text address as the caller gave it.")
    lat: float | None = Field(default=None, ge=-90, le=90, description="Latitude (WGS84).")
    lon: float | None = Field(default=None, ge=-180, le=180, description="Longitude (WGS84).")


class Caller(ValueObject):
    """The caller as the hotline records them: personal data, kept in the intake record only."""

    name: str | None = Field(default=None, max_length=100, description="Caller's name; may be withheld.")
    phone: str | None = Field(default=None, max_length=32, pattern=r"^\+?[0-9 \-]{3,32}$", description="Caller's phone number.")


class CallerRef(ValueObject):
    """What units, open data and logs see of a caller."""

    pseudonym: str | None = Field(default=None, description="Stable keyed hash of the phone: links repeat callers without revealing them.")
    masked_phone: str | None = Field(default=None, description="Phone with the middle digits masked, e.g. 138****5678.")
    anonymous: bool = Field(default=False, description="True when the caller gave no contact details.")


class TimeLimitSpec(ValueObject):
    """A time limit from the catalogue: an amount in working days, working hours, hours or minutes."""

    amount: int = Field(ge=0, description="How many units of time.")
    unit: Literal["wd", "wh", "h", "m"] = Field(description="wd working days, wh working hours, h natural hours, m natural minutes.")


class Limits(ValueObject):
    """The clocks of one assignment (separate response and resolution clocks)."""

    sign_for: TimeLimitSpec = Field(description="Limit for the unit to sign for the task.")
    response: TimeLimitSpec = Field(description="Limit for the first substantive response.")
    resolution: TimeLimitSpec = Field(description="Limit for completing the task.")


class Routing(ValueObject):
    """Who handles a ticket."""

    lead: str = Field(description="Unit id of the lead unit (主办).")
    co_units: tuple[str, ...] = Field(default=(), description="Unit ids of the co-handling units (协办).")
    level: Level = Field(description="Administrative level the ticket is handled at.")


# ---------------------------------------------------------------- discover (需求发现)

class TicketSubmitted(Event):
    """A complaint or request reached the hotline (the hotline's own intake record)."""

    event_type = "cityops.intake.ticket.submitted.v1"
    topic_area = "intake"

    channel: Channel = Field(description="How the request arrived.")
    text: str = Field(min_length=1, max_length=5000, description="The request in the caller's words (Chinese or English).")
    caller: Caller = Field(default_factory=Caller, description="Caller's contact details; personal data, never forwarded.")
    location: Location = Field(default_factory=Location, description="Where the problem is.")
    category: str | None = Field(default=None, description="Category code chosen by the operator; wins over the classifier.")
    urgency: Urgency = Field(default=Urgency.normal, description="Urgency as judged at intake.")
    language: str | None = Field(default=None, description="BCP-47 language of text if known (zh, en).")
    submitted_at: datetime = Field(description="When the resident submitted it (original time for imported records).")
    external_id: str | None = Field(default=None, description="Id in the originating system (Open311 token, imported record id).")
    idempotency_key: str | None = Field(default=None, description="Client's key; a retried submit with the same key is the same ticket.")


class ResidentLifeEventRecorded(Event):
    """A fact about a resident from a city register, input to proactive ('policy finds the person') rules."""

    event_type = "cityops.residents.life-event.recorded.v1"
    topic_area = "residents"

    resident_ref: str = Field(description="Pseudonymous resident id from the register.")
    kind: Literal["birthday", "newborn", "unemployed", "disability-registered"] = Field(description="What happened.")
    age: int | None = Field(default=None, ge=0, le=150, description="Age reached, for birthdays.")
    occurred_on: datetime = Field(description="When it happened.")
    location: Location = Field(default_factory=Location, description="Where the resident lives.")


class RegisteredTicket(ValueObject):
    """The part of a ticket every later step needs, without personal data."""

    channel: Channel = Field(description="How the request arrived.")
    text: str = Field(description="The request text.")
    caller: CallerRef = Field(description="Masked caller.")
    location: Location = Field(description="Where the problem is.")
    category: str | None = Field(default=None, description="Operator's category, if chosen.")
    urgency: Urgency = Field(description="Urgency.")
    submitted_at: datetime = Field(description="When the resident submitted it.")
    proactive_rule: str | None = Field(default=None, description="Id of the proactive rule that raised it, if any.")


class TicketRegistered(Event):
    """The hotline registered a ticket (工单)."""

    event_type = "cityops.discover.ticket.registered.v1"
    topic_area = "tickets"

    ticket: RegisteredTicket = Field(description="The registered ticket.")
    master_ticket_id: str | None = Field(default=None, description="Set when this repeats an open ticket and is merged into it (a TicketMerged follows).")


class TicketMerged(Event):
    """A repeat complaint was merged into its master ticket (并单) instead of being dispatched again."""

    event_type = "cityops.discover.ticket.merged.v1"
    topic_area = "tickets"

    master_ticket_id: str = Field(description="The open ticket this one repeats.")
    similarity: float = Field(ge=0, le=1, description="Text similarity that triggered the merge.")
    reason: str = Field(description="Why it was judged a repeat (same place, category, window).")


class SplitRequested(Event):
    """An operator asked to undo a merge."""

    event_type = "cityops.discover.split.requested.v1"
    topic_area = "tickets"

    requested_by: str = Field(description="Operator id.")
    reason: str = Field(description="Why the tickets are not the same problem.")


class TicketSplit(Event):
    """A merge was undone: the ticket goes through triage on its own."""

    event_type = "cityops.discover.ticket.split.v1"
    topic_area = "tickets"

    former_master_ticket_id: str = Field(description="The master it had been merged into.")
    ticket: RegisteredTicket = Field(description="The ticket as registered, for triage.")
    reason: str = Field(description="Operator's reason.")


# ---------------------------------------------------------------- triage (分类分流)

class TicketClassified(Event):
    """Triage put the ticket in a catalogue category and routed it."""

    event_type = "cityops.triage.ticket.classified.v1"
    topic_area = "triage"

    category: str = Field(description="Catalogue category code.")
    confidence: float = Field(ge=0, le=1, description="Classifier confidence (1.0 for operator choices).")
    method: Literal["operator", "model", "manual", "reroute", "rule"] = Field(description="Who decided the category.")
    catalogue_version: str = Field(description="Version of the responsibility catalogue used.")
    routing: Routing = Field(description="Lead unit, co-units and level.")
    needs_consultation: bool = Field(description="True when the parties must agree on a plan first.")
    limits: Limits = Field(description="Time limits of this category.")
    excluded_units: tuple[str, ...] = Field(default=(), description="Units excluded because they returned the task.")
    ticket: RegisteredTicket = Field(description="The ticket, for downstream steps.")


class ManualTriageRequested(Event):
    """The classifier is unsure: an operator must choose the category."""

    event_type = "cityops.triage.manual-triage.requested.v1"
    topic_area = "triage"

    candidates: tuple[tuple[str, float], ...] = Field(description="Best (category, confidence) pairs.")
    reason: str = Field(description="Why it needs a person (low confidence, unknown category, no route).")
    ticket: RegisteredTicket = Field(description="The ticket to triage.")


class ManualTriageResolved(Event):
    """An operator chose the category of a ticket in the manual-triage queue."""

    event_type = "cityops.triage.manual-triage.resolved.v1"
    topic_area = "triage"

    category: str = Field(description="Category code the operator chose.")
    operator: str = Field(description="Operator id.")


# ---------------------------------------------------------------- consult (协商设计)

class ConsultationRequested(Event):
    """The parties are convened to agree who leads, who helps, and by when."""

    event_type = "cityops.consult.consultation.requested.v1"
    topic_area = "consult"

    consultation_id: str = Field(description="Id of this consultation.")
    parties: tuple[str, ...] = Field(description="Unit ids invited.")
    proposed: Routing = Field(description="The plan put to the parties.")
    reason: str = Field(description="Why consultation is needed.")
    opinions_due: datetime = Field(description="When opinions are due; after it a supervisor decides.")
    category: str = Field(description="Catalogue category code.")
    limits: Limits = Field(description="Time limits the plan will carry.")
    ticket: RegisteredTicket = Field(description="The ticket.")


class OpinionGiven(Event):
    """A party's answer to a consultation."""

    event_type = "cityops.consult.opinion.given.v1"
    topic_area = "unit-reports"

    consultation_id: str = Field(description="Consultation answered.")
    unit: str = Field(description="Unit id answering.")
    agrees: bool = Field(description="True when the unit accepts the proposed plan.")
    proposed_lead: str | None = Field(default=None, description="The unit this one thinks should lead, when it disagrees.")
    comment: str = Field(default="", description="Free-text opinion.")


class PlanAgreed(Event):
    """The parties agreed a plan."""

    event_type = "cityops.consult.plan.agreed.v1"
    topic_area = "consult"

    consultation_id: str = Field(description="Consultation concluded.")
    routing: Routing = Field(description="Agreed lead and co-units.")
    deadline: datetime = Field(description="Agreed completion deadline.")
    category: str = Field(description="Catalogue category code.")
    limits: Limits = Field(description="Time limits.")
    ticket: RegisteredTicket = Field(description="The ticket.")


class SupervisorReviewRequested(Event):
    """The parties did not agree in time: a supervisor must decide."""

    event_type = "cityops.consult.supervisor-review.requested.v1"
    topic_area = "consult"

    consultation_id: str = Field(description="Consultation that failed.")
    reason: str = Field(description="Disagreement or missing opinions.")
    opinions: tuple[tuple[str, bool, str | None], ...] = Field(description="(unit, agrees, proposed lead) per opinion received.")
    proposed: Routing = Field(description="The plan that was put to the parties.")


class SupervisorDecided(Event):
    """A supervisor decided who leads; the lead may not return the ticket again."""

    event_type = "cityops.consult.supervisor.decided.v1"
    topic_area = "consult"

    consultation_id: str | None = Field(default=None, description="Consultation decided, if any.")
    supervisor: str = Field(description="Supervisor id.")
    routing: Routing = Field(description="Decided lead and co-units.")
    note: str = Field(default="", description="Reasoning.")


# ---------------------------------------------------------------- act (联动实施)

class TaskAssigned(Event):
    """A unit was given a task on its own topic."""

    event_type = "cityops.act.task.assigned.v1"
    topic_area = "act"

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
    topic_area = "unit-reports"

    task_id: str = Field(description="Task signed for.")
    unit: str = Field(description="Unit id.")
    handler: str | None = Field(default=None, description="Person or team who will handle it.")


class ProgressReported(Event):
    """The unit reported progress."""

    event_type = "cityops.act.progress.reported.v1"
    topic_area = "unit-reports"

    task_id: str = Field(description="Task.")
    unit: str = Field(description="Unit id.")
    note: str = Field(description="What was done.")
    waiting_on_resident: bool = Field(default=False, description="True while the unit waits on the resident (clock paused).")


class ExtensionRequested(Event):
    """The unit asked for more time (延期)."""

    event_type = "cityops.act.extension.requested.v1"
    topic_area = "unit-reports"

    task_id: str = Field(description="Task.")
    unit: str = Field(description="Unit id.")
    extra: TimeLimitSpec = Field(description="Extra time asked for.")
    reason: str = Field(description="Why.")


class ExtensionDecided(Event):
    """The hotline decided an extension request."""

    event_type = "cityops.act.extension.decided.v1"
    topic_area = "act"

    task_id: str = Field(description="Task.")
    unit: str = Field(description="Unit id.")
    approved: bool = Field(description="Whether it was approved.")
    extra: TimeLimitSpec = Field(description="Extra time granted (or asked, when refused).")
    reason: str = Field(description="Why.")


class TaskReturned(Event):
    """The unit returned the task (退单) as not its own."""

    event_type = "cityops.act.task.returned.v1"
    topic_area = "unit-reports"

    task_id: str = Field(description="Task.")
    unit: str = Field(description="Unit id.")
    reason: str = Field(min_length=1, description="Why it is not this unit's.")
    suggested_unit: str | None = Field(default=None, description="Unit it believes is responsible.")


class ReturnRejected(Event):
    """A return was refused: the task was assigned final by a supervisor."""

    event_type = "cityops.act.return.rejected.v1"
    topic_area = "act"

    task_id: str = Field(description="Task.")
    unit: str = Field(description="Unit id.")
    reason: str = Field(description="Why it was refused.")


class RerouteRequested(Event):
    """A return was accepted: triage must route the ticket again without the returning units."""

    event_type = "cityops.act.reroute.requested.v1"
    topic_area = "act"

    category: str = Field(description="Category the ticket had.")
    excluded_units: tuple[str, ...] = Field(description="Units that returned it.")
    returns: int = Field(ge=1, description="How many times this ticket has been returned.")
    reason: str = Field(description="The last return's reason.")
    suggested_unit: str | None = Field(default=None, description="Unit the returning unit pointed to.")
    ticket: RegisteredTicket = Field(description="The ticket.")


class TaskCompleted(Event):
    """The unit finished its part (办结)."""

    event_type = "cityops.act.task.completed.v1"
    topic_area = "unit-reports"

    task_id: str = Field(description="Task.")
    unit: str = Field(description="Unit id.")
    result: str = Field(min_length=1, description="What was done.")


class TicketHandled(Event):
    """The lead and every co-unit completed: the ticket is ready for the callback."""

    event_type = "cityops.act.ticket.handled.v1"
    topic_area = "act"

    round: int = Field(ge=1, description="Handling round that completed.")
    units: tuple[str, ...] = Field(description="Units that completed (lead first).")
    results: tuple[str, ...] = Field(description="Their results, in the same order.")
    category: str = Field(description="Catalogue category code.")
    location: Location = Field(description="Where the problem was (for rates per grid and district).")


# ---------------------------------------------------------------- evaluate (多项评估)

class CallbackRequested(Event):
    """The hotline must call the resident back (回访)."""

    event_type = "cityops.evaluate.callback.requested.v1"
    topic_area = "evaluate"

    round: int = Field(ge=1, description="Handling round being evaluated.")
    caller: CallerRef = Field(description="Masked caller (the hotline looks up the number itself).")
    units: tuple[str, ...] = Field(description="Units that handled it.")


class CallbackRecorded(Event):
    """The resident's verdict at callback."""

    event_type = "cityops.evaluate.callback.recorded.v1"
    topic_area = "evaluate"

    round: int = Field(ge=1, description="Handling round evaluated.")
    resolved: bool = Field(description="Resident says the problem is solved.")
    satisfaction: Satisfaction = Field(description="Satisfied / basically satisfied / unsatisfied.")
    operator: str = Field(default="hotline", description="Who made the call.")
    comment: str = Field(default="", description="Resident's words.")
    reasonable_demand: bool = Field(default=True, description="False when the demand was judged unreasonable (excluded from satisfaction ranking).")


class TicketReopened(Event):
    """Unresolved or unsatisfied: the ticket is handled again (重办)."""

    event_type = "cityops.evaluate.ticket.reopened.v1"
    topic_area = "evaluate"

    round: int = Field(ge=2, description="The new handling round.")
    reason: str = Field(description="Why it was reopened.")
    units: tuple[str, ...] = Field(description="Units to handle it again (lead first).")


class TicketClosed(Event):
    """The ticket's loop is closed."""

    event_type = "cityops.evaluate.ticket.closed.v1"
    topic_area = "evaluate"

    outcome: Literal["resolved", "unresolved", "answered-directly", "referred", "merged"] = Field(description="How it ended.")
    satisfaction: Satisfaction | None = Field(default=None, description="Last callback's satisfaction, if any.")
    rounds: int = Field(ge=0, description="Handling rounds it took.")
    master_ticket_id: str | None = Field(default=None, description="For merged tickets: the master whose closing closed it.")


# ---------------------------------------------------------------- SLA clocks (时限)

class SlaReminderSent(Event):
    """A clock passed a reminder fraction of its limit (催办)."""

    event_type = "cityops.sla.reminder.sent.v1"
    topic_area = "sla"

    task_id: str = Field(description="Task whose clock it is.")
    unit: str = Field(description="Unit reminded.")
    clock: Literal["sign_for", "response", "resolution"] = Field(description="Which clock.")
    fraction: float = Field(gt=0, le=1, description="Fraction of the limit used.")
    deadline: datetime = Field(description="The clock's deadline.")


class SlaBreached(Event):
    """A clock ran out."""

    event_type = "cityops.sla.deadline.breached.v1"
    topic_area = "sla"

    task_id: str = Field(description="Task.")
    unit: str = Field(description="Unit that held the clock.")
    clock: Literal["sign_for", "response", "resolution"] = Field(description="Which clock.")
    deadline: datetime = Field(description="The deadline passed.")


class TicketEscalated(Event):
    """A ticket was escalated (督办) to the level above, or to arbitration."""

    event_type = "cityops.sla.ticket.escalated.v1"
    topic_area = "sla"

    from_level: Level | None = Field(default=None, description="Level it was at.")
    to_level: Level | None = Field(default=None, description="Level it goes to.")
    to_unit: str | None = Field(default=None, description="Unit that now supervises it.")
    reason: Literal["breach", "ping-pong", "help-requested"] = Field(description="Why.")
    task_id: str | None = Field(default=None, description="Task concerned.")


# ---------------------------------------------------------------- intake commands (坐席与督导的决定)
#
# What a person decided at the hotline (an operator, a supervisor, a callback operator), as intake
# received it over HTTP. Intake is the only writer of these, on cityops.intake.commands.v1; the step a
# command is addressed to applies it and writes the resulting fact on its own topic (the fact carries
# the same fields), so a step topic has one writer and every reader of the facts is unchanged.

class ManualTriageSubmitted(Event):
    """Command to triage: an operator chose the category of a ticket in the manual-triage queue."""

    event_type = "cityops.intake.manual-triage.submitted.v1"
    topic_area = "commands"

    category: str = Field(description="Category code the operator chose.")
    operator: str = Field(description="Operator id.")


class SplitSubmitted(Event):
    """Command to discover: an operator asked to undo a merge."""

    event_type = "cityops.intake.split.submitted.v1"
    topic_area = "commands"

    requested_by: str = Field(description="Operator id.")
    reason: str = Field(description="Why the tickets are not the same problem.")


class SupervisorDecisionSubmitted(Event):
    """Command to consult: a supervisor decided who leads; the lead may not return the ticket again."""

    event_type = "cityops.intake.supervisor-decision.submitted.v1"
    topic_area = "commands"

    consultation_id: str | None = Field(default=None, description="Consultation decided, if any.")
    supervisor: str = Field(description="Supervisor id.")
    routing: Routing = Field(description="Decided lead and co-units.")
    note: str = Field(default="", description="Reasoning.")


class CallbackSubmitted(Event):
    """Command to evaluate: the resident's verdict at callback, as the callback operator entered it."""

    event_type = "cityops.intake.callback.submitted.v1"
    topic_area = "commands"

    round: int = Field(ge=1, description="Handling round evaluated.")
    resolved: bool = Field(description="Resident says the problem is solved.")
    satisfaction: Satisfaction = Field(description="Satisfied / basically satisfied / unsatisfied.")
    operator: str = Field(default="hotline", description="Who made the call.")
    comment: str = Field(default="", description="Resident's words.")
    reasonable_demand: bool = Field(default=True, description="False when the demand was judged unreasonable (excluded from satisfaction ranking).")


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
