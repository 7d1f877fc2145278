"""The topic catalogue: every topic, its partitions, key, retention and the events on it.

The ticket id is the key of every record, so one ticket's events stay in order on each topic.
Each unit (department, street office, community, grid) has its own task topic; its name is
derived from the unit id by `unit_task_topic`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import events as ev
from .envelope import Event

DLQ_SUFFIX = ".dlq"
# The log is the truth: workflow topics keep their events for ever (issue 4 replays a year).
RETAIN_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}
DLQ_RETENTION = {"retention.ms": str(30 * 24 * 3600 * 1000)}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    description: str
    events: tuple[type[Event], ...]
    partitions: int = 3
    key: str = "ticket_id"
    config: dict[str, str] = field(default_factory=lambda: dict(RETAIN_FOREVER))

    @property
    def dlq(self) -> str:
        return self.name + DLQ_SUFFIX

    @property
    def event_types(self) -> tuple[str, ...]:
        return tuple(e.event_type for e in self.events)


CHANNEL_INTAKE = TopicSpec(
    "cityops.intake.channel.v1",
    "Machine channels (grid patrol apps, partner systems) submit complaints here: the JSON body of "
    "POST /tickets, key = the channel's own message id. Intake validates and re-publishes.",
    events=(),
)
INTAKE = TopicSpec("cityops.intake.v1", "The hotline's intake records (with caller contact).", (ev.TicketSubmitted,))
RESIDENTS = TopicSpec("cityops.residents.v1", "Resident life events from city registers, for proactive rules.",
                      (ev.ResidentLifeEventRecorded,))
TICKETS = TopicSpec(
    "cityops.tickets.v1", "Registered tickets, merges and splits (no personal data).",
    (ev.TicketRegistered, ev.TicketMerged, ev.SplitRequested, ev.TicketSplit),
)
TRIAGE = TopicSpec(
    "cityops.triage.v1", "Classification and routing decisions, and the manual-triage queue.",
    (ev.TicketClassified, ev.ManualTriageRequested, ev.ManualTriageResolved),
)
CONSULT = TopicSpec(
    "cityops.consult.v1", "Consultations, agreed plans and supervisor decisions.",
    (ev.ConsultationRequested, ev.PlanAgreed, ev.SupervisorReviewRequested, ev.SupervisorDecided),
)
ACT = TopicSpec(
    "cityops.act.v1", "Dispatch decisions: assignments, extension decisions, reroutes, completion of handling.",
    (ev.TaskAssigned, ev.ExtensionDecided, ev.ReturnRejected, ev.RerouteRequested, ev.TicketHandled),
)
UNIT_REPORTS = TopicSpec(
    "cityops.unit-reports.v1", "What units report back: sign-for, progress, extension requests, returns, completion, opinions.",
    (ev.TaskSignedFor, ev.ProgressReported, ev.ExtensionRequested, ev.TaskReturned, ev.TaskCompleted, ev.OpinionGiven),
)
EVALUATE = TopicSpec(
    "cityops.evaluate.v1", "Callbacks, re-handling and closing.",
    (ev.CallbackRequested, ev.CallbackRecorded, ev.TicketReopened, ev.TicketClosed),
)
SLA = TopicSpec(
    "cityops.sla.v1", "Reminders, breaches and escalations.",
    (ev.SlaReminderSent, ev.SlaBreached, ev.TicketEscalated),
)

WORKFLOW_TOPICS: tuple[TopicSpec, ...] = (CHANNEL_INTAKE, INTAKE, RESIDENTS, TICKETS, TRIAGE, CONSULT, ACT, UNIT_REPORTS,
                                          EVALUATE, SLA)
# What each unit finds on its own task topic.
UNIT_TOPIC_EVENTS: tuple[type[Event], ...] = (ev.TaskAssigned, ev.ConsultationRequested, ev.ExtensionDecided,
                                       ev.ReturnRejected, ev.SlaReminderSent, ev.TicketEscalated)


def unit_task_topic(unit_id: str) -> str:
    return f"cityops.unit.{unit_id}.tasks.v1"


def unit_topic_spec(unit_id: str) -> TopicSpec:
    return TopicSpec(unit_task_topic(unit_id), f"Tasks and notices for unit {unit_id}.", UNIT_TOPIC_EVENTS, partitions=1)


def all_topics(unit_ids: list[str] | tuple[str, ...] = ()) -> list[TopicSpec]:
    """Every topic a deployment needs, the unit task topics included (each with its DLQ)."""
    specs = list(WORKFLOW_TOPICS) + [unit_topic_spec(u) for u in unit_ids]
    dlqs = [TopicSpec(s.dlq, f"Dead letters of {s.name}: records that could not be decoded or handled.", (),
                      partitions=1, config=dict(DLQ_RETENTION)) for s in specs]
    return specs + dlqs


def topic_for_event(event_type: str) -> str:
    for spec in WORKFLOW_TOPICS:
        if event_type in spec.event_types:
            return spec.name
    raise LookupError(f"no workflow topic carries {event_type}")
