"""The topic catalogue: every topic, its partitions, key, retention, the events on it, its writer and readers.

The ticket id is the key of every record, so one ticket's events stay in order on each topic.
Each unit (department, street office, community, grid) has its own task topic; its name is
derived from the unit id by `unit_task_topic`.

Every topic has ONE writer, so a reader always knows who owns what it reads: a service name, or a
party outside the hub (the units, machine channels). The one exception is the units' reports, written
by the units themselves and by the unit HTTP bridge on behalf of units that do not run the SDK: a
writer may be a tuple, each name in it a writer. The pipeline refuses to publish to a topic
another service owns (`check_writer`), and tests/unit/test_topic_owners.py checks the code and the
`readers` (the services subscribed to it) against this catalogue. A DLQ is written by the readers
of its source topic, whichever of them failed to handle a record.
"""

from __future__ import annotations

import re
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
    # The service (or outside party) that publishes to it; a tuple when several may (each named).
    writer: str | tuple[str, ...] = ""
    readers: tuple[str, ...] = ()  # the services subscribed to it

    @property
    def dlq(self) -> str:
        return self.name + DLQ_SUFFIX

    @property
    def event_types(self) -> tuple[str, ...]:
        return tuple(e.event_type for e in self.events)


# Who writes what (see the module docstring). Names are services' `service_name`s.
EXTERNAL_CHANNELS = "external machine channels"
UNITS = "units"  # the units' own systems through services/units/sdk.py, or the simulated units
BRIDGE = "bridge"  # the unit HTTP bridge, reporting on behalf of units that do not run the SDK
ARCHIVER = "archiver"  # reads every cityops topic by pattern, DLQs included

CHANNEL_INTAKE = TopicSpec(
    "cityops.intake.channel.v1",
    "Machine channels (grid patrol apps, partner systems) submit complaints here: the JSON body of "
    "POST /tickets, key = the channel's own message id. Intake validates and re-publishes.",
    events=(), writer=EXTERNAL_CHANNELS, readers=("intake", ARCHIVER),
)
INTAKE = TopicSpec("cityops.intake.v1", "The hotline's intake records (with caller contact).", (ev.TicketSubmitted,),
                   writer="intake", readers=("discover", "projections", ARCHIVER))
COMMANDS = TopicSpec(
    "cityops.intake.commands.v1",
    "Operators' and supervisors' decisions as intake received them; the step each is addressed to "
    "applies it and writes the fact on its own topic.",
    (ev.ManualTriageSubmitted, ev.SplitSubmitted, ev.SupervisorDecisionSubmitted, ev.CallbackSubmitted),
    writer="intake", readers=("discover", "triage", "consult", "evaluate", ARCHIVER),
)
RESIDENTS = TopicSpec("cityops.residents.v1", "Resident life events from city registers, for proactive rules.",
                      (ev.ResidentLifeEventRecorded,), writer="intake", readers=("discover", ARCHIVER))
TICKETS = TopicSpec(
    "cityops.tickets.v1", "Registered tickets, merges and splits (no personal data).",
    (ev.TicketRegistered, ev.TicketMerged, ev.SplitRequested, ev.TicketSplit),
    writer="discover", readers=("triage", "evaluate", "sla", "intake", "projections", ARCHIVER),
)
TRIAGE = TopicSpec(
    "cityops.triage.v1", "Classification and routing decisions, and the manual-triage queue.",
    (ev.TicketClassified, ev.ManualTriageRequested, ev.ManualTriageResolved),
    writer="triage", readers=("discover", "consult", "act", "sla", "intake", "projections", ARCHIVER),
)
CONSULT = TopicSpec(
    "cityops.consult.v1", "Consultations, agreed plans and supervisor decisions.",
    (ev.ConsultationRequested, ev.PlanAgreed, ev.SupervisorReviewRequested, ev.SupervisorDecided),
    writer="consult", readers=("act", "sla", "intake", UNITS, "projections", ARCHIVER),
)
ACT = TopicSpec(
    "cityops.act.v1", "Dispatch decisions: assignments, extension decisions, reroutes, completion of handling.",
    (ev.TaskAssigned, ev.ExtensionDecided, ev.ReturnRejected, ev.RerouteRequested, ev.TicketHandled),
    writer="act", readers=("triage", "evaluate", "sla", "intake", "projections", ARCHIVER),
)
UNIT_REPORTS = TopicSpec(
    "cityops.unit-reports.v1", "What units report back: sign-for, progress, extension requests, returns, completion, opinions.",
    (ev.TaskSignedFor, ev.ProgressReported, ev.ExtensionRequested, ev.TaskReturned, ev.TaskCompleted, ev.OpinionGiven),
    writer=(UNITS, BRIDGE), readers=("consult", "act", "evaluate", "sla", "projections", BRIDGE, ARCHIVER),
)
EVALUATE = TopicSpec(
    "cityops.evaluate.v1", "Callbacks, re-handling and closing.",
    (ev.CallbackRequested, ev.CallbackRecorded, ev.TicketReopened, ev.TicketClosed),
    writer="evaluate", readers=("discover", "act", "sla", "intake", UNITS, "projections", ARCHIVER),
)
SLA = TopicSpec(
    "cityops.sla.v1", "Reminders, breaches and escalations.",
    (ev.SlaReminderSent, ev.SlaBreached, ev.TicketEscalated),
    writer="sla", readers=("consult", "act", "evaluate", "projections", ARCHIVER),
)

WORKFLOW_TOPICS: tuple[TopicSpec, ...] = (CHANNEL_INTAKE, INTAKE, COMMANDS, RESIDENTS, TICKETS, TRIAGE, CONSULT, ACT,
                                          UNIT_REPORTS, EVALUATE, SLA)
# What each unit finds on its own task topic.
UNIT_TOPIC_EVENTS: tuple[type[Event], ...] = (ev.TaskAssigned, ev.ConsultationRequested, ev.ExtensionDecided,
                                       ev.ReturnRejected, ev.SlaReminderSent, ev.TicketEscalated)


def unit_task_topic(unit_id: str) -> str:
    return f"cityops.unit.{unit_id}.tasks.v1"


# act writes every unit task topic: its own dispatch decisions, and the consultations and SLA notices
# consult and sla address to a unit, which it forwards unchanged (same event, same id).
UNIT_TASK_WRITER = "act"
_UNIT_TOPIC = re.compile(r"^cityops\.unit\.[^.]+\.tasks\.v1$")


def unit_topic_spec(unit_id: str) -> TopicSpec:
    return TopicSpec(unit_task_topic(unit_id), f"Tasks and notices for unit {unit_id}.", UNIT_TOPIC_EVENTS, partitions=1,
                     writer=UNIT_TASK_WRITER, readers=(UNITS, BRIDGE, ARCHIVER))


def dlq_spec(source: TopicSpec) -> TopicSpec:
    readers = [r for r in source.readers if r != ARCHIVER]
    return TopicSpec(source.dlq, f"Dead letters of {source.name}: records that could not be decoded or handled.", (),
                     partitions=1, config=dict(DLQ_RETENTION),
                     writer=f"the readers of {source.name}" + (f" ({', '.join(readers)})" if readers else ""),
                     readers=(ARCHIVER,))


def all_topics(unit_ids: list[str] | tuple[str, ...] = ()) -> list[TopicSpec]:
    """Every topic a deployment needs, the unit task topics included (each with its DLQ)."""
    specs = list(WORKFLOW_TOPICS) + [unit_topic_spec(u) for u in unit_ids]
    return specs + [dlq_spec(s) for s in specs]


_WRITERS: dict[str, str | tuple[str, ...]] = {spec.name: spec.writer for spec in WORKFLOW_TOPICS}


def writers(writer: str | tuple[str, ...]) -> tuple[str, ...]:
    """A catalogue `writer` as the tuple of the writers it names."""
    return (writer,) if isinstance(writer, str) else writer


def writer_of(topic: str) -> str | tuple[str, ...] | None:
    """Who may publish to `topic`: a service name or an outside party; None for a DLQ (the readers of
    its source topic) and for a topic outside the catalogue (a test's own topic)."""
    if topic.endswith(DLQ_SUFFIX):
        return None
    if topic in _WRITERS:
        return _WRITERS[topic]
    if _UNIT_TOPIC.match(topic):
        return UNIT_TASK_WRITER
    return None


class NotTheWriter(PermissionError):
    """A service tried to publish to a topic the catalogue gives to another writer."""


def check_writer(service: str, topic: str) -> None:
    """Refuse a publish by `service` to a topic it does not own (DLQs and topics outside the catalogue excepted)."""
    writer = writer_of(topic)
    if writer is not None and service not in writers(writer):
        raise NotTheWriter(f"{service} may not publish to {topic}: its only writer is {' or '.join(writers(writer))} "
                           "(contracts/topics.py)")


def topic_for_event(event_type: str) -> str:
    for spec in WORKFLOW_TOPICS:
        if event_type in spec.event_types:
            return spec.name
    raise LookupError(f"no workflow topic carries {event_type}")


def catalogue_markdown() -> str:
    """The topic catalogue as a Markdown table (`cityops topics --markdown`; docs/architecture.md holds a copy
    a test keeps current): one row per workflow topic, one for the units' task topics, one for the DLQs."""
    def row(name: str, writer: str | tuple[str, ...], readers: tuple[str, ...], events: str, partitions: int) -> str:
        return f"| {name} | {', '.join(writers(writer))} | {', '.join(readers)} | {events} | {partitions} |"

    lines = ["| topic | writer | readers | events | partitions |", "|---|---|---|---|---|"]
    for spec in WORKFLOW_TOPICS:
        events = ", ".join(e.__name__ for e in spec.events) or "complaints as plain JSON (the body of POST /tickets)"
        lines.append(row(f"`{spec.name}`", spec.writer, spec.readers, events, spec.partitions))
    unit = unit_topic_spec("<unit>")
    lines.append(row(f"`{unit.name}` (one per unit)", unit.writer, unit.readers,
                     ", ".join(e.__name__ for e in unit.events), unit.partitions))
    dlq = dlq_spec(SLA)
    lines.append(row("`<topic>.dlq` (one per topic above)", "the readers of `<topic>` (whichever failed)", dlq.readers,
                     "records that could not be decoded or handled, with their error", dlq.partitions))
    return "\n".join(lines) + "\n"
