"""The topic catalogue: every topic, its partitions, key, retention, the events on it, its writer and readers.

The ticket id is the key of every workflow record, so one ticket's events stay in order on each topic.
A unit's tasks and notices arrive on a task topic chosen by `unit_task_topic(unit_id, level)`: a
department, a district branch, a district operations centre and the hotline each have their own
(`own_task_topic`); the area units (street offices, communities, grids: 17,264 of them in the large city)
share one keyed topic, `AREA_TASKS`, so the topic count does not grow with the map (docs/city-scale.md,
"Topic layout"). Records on a task topic are keyed by the unit id: one unit's tasks stay in order, and a
reader skips other units' records by key, without decoding them.

Every topic has ONE writer, so a reader always knows who owns what it reads: a service name, or a
party outside the hub (the units, machine channels). Two topics name several writers, and only those:
the audit topic, which each HTTP door of the hub (intake, the units' bridge) writes for the calls it
received, and the units' reports, written by the units themselves and by the unit HTTP bridge on behalf
of units that do not run the SDK. The pipeline refuses to publish to a topic another service owns
(`check_writer`), and tests/unit/test_topic_owners.py checks the code and the
`readers` (the services subscribed to it) against this catalogue. A DLQ is written by the readers
of its source topic, whichever of them failed to handle a record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import events as ev
from .envelope import Event

DLQ_SUFFIX = ".dlq"
# The log is the truth: workflow topics keep their events for ever (issue 4 replays a year).
RETAIN_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}
DLQ_RETENTION = {"retention.ms": str(30 * 24 * 3600 * 1000)}
# The machine channel carries callers' names and phones in plain JSON from outside: kept one day, so an
# erasure is complete there (and in its DLQ) a day later at most. Nothing archives it (docs/privacy.md).
PLAIN_PERSONAL_DATA_RETENTION = {"retention.ms": str(24 * 3600 * 1000)}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    description: str
    events: tuple[type[Event], ...]
    partitions: int = 3
    key: str = "ticket_id"
    config: dict[str, str] = field(default_factory=lambda: dict(RETAIN_FOREVER))
    # The one service (or outside party) that publishes to it; a tuple when several may (the audit topic,
    # which each HTTP door writes for its own calls; the units' reports, also sent by the unit HTTP bridge).
    writer: str | tuple[str, ...] = ""
    readers: tuple[str, ...] = ()  # the services subscribed to it

    @property
    def writers(self) -> tuple[str, ...]:
        return (self.writer,) if isinstance(self.writer, str) else self.writer

    @property
    def writer_label(self) -> str:
        """The writer(s) as the catalogue table shows them."""
        return ", ".join(self.writers)

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
CONSOLE = "console"  # the console's live feed: shows lifecycle events, never dead-letters one
# Readers that never write a DLQ: the archiver stores records undecoded, the console only shows them.
NO_DEAD_LETTERS = (ARCHIVER, CONSOLE)

CHANNEL_INTAKE = TopicSpec(
    "cityops.intake.channel.v1",
    "Machine channels (grid patrol apps, partner systems) submit complaints here: the JSON body of "
    "POST /tickets, key = the channel's own message id. Intake validates, seals the caller and re-publishes. "
    "Plain personal data: kept one day, not archived.",
    events=(), writer=EXTERNAL_CHANNELS, readers=("intake",), config=dict(PLAIN_PERSONAL_DATA_RETENTION),
)
INTAKE = TopicSpec("cityops.intake.v1", "The hotline's intake records (caller's contact sealed with their own key).",
                   (ev.TicketSubmitted,),
                   writer="intake", readers=("discover", ARCHIVER))
COMMANDS = TopicSpec(
    "cityops.intake.commands.v1",
    "Operators' and supervisors' decisions as intake received them; the step each is addressed to "
    "applies it and writes the fact on its own topic.",
    (ev.ManualTriageSubmitted, ev.SplitSubmitted, ev.SupervisorDecisionSubmitted, ev.CallbackSubmitted),
    writer="intake", readers=("discover", "triage", "consult", "evaluate", ARCHIVER),
)
RESIDENTS = TopicSpec("cityops.residents.v1", "Resident life events from city registers, for proactive rules.",
                      (ev.ResidentLifeEventRecorded,), writer="intake", readers=("discover", ARCHIVER))
# The city's population register, fed by `cityops residents import` (the registry party): the latest base
# record per resident (compacted, key = resident id), heat/cold wave alerts and the proactive scan requests.
REGISTRY = "registry"
RESIDENTS_BASE = TopicSpec(
    "cityops.residents.base.v1",
    "Residents' base records (surname only, no ID number), weather alerts and proactive scan requests; "
    "compacted, key = resident id (an alert's or a scan's own id).",
    (ev.ResidentBaseRecorded, ev.WeatherAlertIssued, ev.ProactiveScanRequested), key="resident_id",
    config={"cleanup.policy": "compact", "retention.ms": "-1"}, writer=REGISTRY, readers=("discover", ARCHIVER),
)
TICKETS = TopicSpec(
    "cityops.tickets.v1", "Registered tickets, merges and splits (no personal data).",
    (ev.TicketRegistered, ev.TicketMerged, ev.SplitRequested, ev.TicketSplit),
    writer="discover", readers=("triage", "evaluate", "sla", "intake", "projections", CONSOLE, ARCHIVER),
)
TRIAGE = TopicSpec(
    "cityops.triage.v1", "Classification and routing decisions, and the manual-triage queue.",
    (ev.TicketClassified, ev.ManualTriageRequested, ev.ManualTriageResolved),
    writer="triage", readers=("discover", "consult", "act", "sla", "intake", "projections", CONSOLE, ARCHIVER),
)
CONSULT = TopicSpec(
    "cityops.consult.v1", "Consultations, agreed plans and supervisor decisions.",
    (ev.ConsultationRequested, ev.PlanAgreed, ev.SupervisorReviewRequested, ev.SupervisorDecided),
    writer="consult", readers=("act", "sla", "intake", UNITS, "projections", CONSOLE, ARCHIVER),
)
ACT = TopicSpec(
    "cityops.act.v1", "Dispatch decisions: assignments, extension decisions, reroutes, completion of handling.",
    (ev.TaskAssigned, ev.ExtensionDecided, ev.ReturnRejected, ev.RerouteRequested, ev.TicketHandled),
    writer="act", readers=("triage", "evaluate", "sla", "intake", "projections", CONSOLE, ARCHIVER),
)
UNIT_REPORTS = TopicSpec(
    "cityops.unit-reports.v1", "What units report back: sign-for, progress, extension requests, returns, completion, opinions.",
    (ev.TaskSignedFor, ev.ProgressReported, ev.ExtensionRequested, ev.TaskReturned, ev.TaskCompleted, ev.OpinionGiven),
    writer=(UNITS, BRIDGE), readers=("consult", "act", "evaluate", "sla", "projections", BRIDGE, CONSOLE, ARCHIVER),
)
EVALUATE = TopicSpec(
    "cityops.evaluate.v1", "Callbacks, re-handling and closing.",
    (ev.CallbackRequested, ev.CallbackRecorded, ev.TicketReopened, ev.TicketClosed),
    writer="evaluate", readers=("discover", "act", "sla", "intake", UNITS, "projections", CONSOLE, ARCHIVER),
)
SLA = TopicSpec(
    "cityops.sla.v1", "Reminders, breaches and escalations.",
    (ev.SlaReminderSent, ev.SlaBreached, ev.TicketEscalated),
    writer="sla", readers=("consult", "act", "evaluate", "projections", CONSOLE, ARCHIVER),
)

WORKFLOW_TOPICS: tuple[TopicSpec, ...] = (CHANNEL_INTAKE, INTAKE, COMMANDS, RESIDENTS, RESIDENTS_BASE, TICKETS, TRIAGE, CONSULT,
                                          ACT, UNIT_REPORTS, EVALUATE, SLA)

AUDIT = TopicSpec(
    "cityops.audit.v1",
    "The audit trail: every state-changing HTTP call to a door of the hub (refused ones included): who, "
    "when, what, from where; no bodies, no personal data. Key: the caller's subject.",
    (ev.AuditRecorded,), key="subject", writer=("intake", BRIDGE), readers=(ARCHIVER,),
)
# What each unit finds on its task topic.
UNIT_TOPIC_EVENTS: tuple[type[Event], ...] = (ev.TaskAssigned, ev.ConsultationRequested, ev.ExtensionDecided,
                                       ev.ReturnRejected, ev.SlaReminderSent, ev.TicketEscalated)
# act writes every unit task topic: its own dispatch decisions, and the consultations and SLA notices
# consult and sla address to a unit, which it forwards unchanged (same event, same id).
UNIT_TASK_WRITER = "act"
# The unit levels that share AREA_TASKS. District operations centres keep their own topic: there are
# 14 of them, and they arbitrate disputes between departments, whose topics they sit beside.
AREA_UNIT_LEVELS = frozenset({"street", "community", "grid"})
# 12 partitions: 8 consumers (bridge replicas, simulated units) can share the load with room to grow, the
# broker carries 12 more partition logs rather than 17,264, and one unit's key always lands on one of them.
AREA_TASKS = TopicSpec(
    "cityops.area.tasks.v1",
    "Tasks and notices for every area unit (street office, community, grid), key = the unit id. Grid "
    "workers' apps and the console reach theirs through the unit HTTP bridge, which filters by key.",
    UNIT_TOPIC_EVENTS, partitions=12, key="unit_id", writer=UNIT_TASK_WRITER, readers=(UNITS, BRIDGE, ARCHIVER),
)


# Every topic of the catalogue that is not per unit: the workflow, the shared area task topic, then the
# audit trail (neither is workflow: no step reads them and the projections do not fold them).
CATALOGUE_TOPICS: tuple[TopicSpec, ...] = (*WORKFLOW_TOPICS, AREA_TASKS, AUDIT)


def is_area_level(level: str | None) -> bool:
    """Whether a unit of this level takes its tasks from the shared AREA_TASKS topic."""
    return level in AREA_UNIT_LEVELS


def own_task_topic(unit_id: str) -> str:
    """The task topic of a unit that has one of its own (not an area unit: see `unit_task_topic`)."""
    return f"cityops.unit.{unit_id}.tasks.v1"


def unit_task_topic(unit_id: str, level: str | None) -> str:
    """Where the tasks and notices of unit `unit_id` (of this catalogue level) are published. A unit of no
    known level (None: the catalogue does not list it) gets its own topic, as a department does."""
    return AREA_TASKS.name if is_area_level(level) else own_task_topic(unit_id)


_UNIT_TOPIC = re.compile(r"^cityops\.unit\.[^.]+\.tasks\.v1$")


def unit_topic_spec(unit_id: str) -> TopicSpec:
    """The own task topic of a department, district branch or centre, or the hotline (never an area unit's)."""
    return TopicSpec(own_task_topic(unit_id), f"Tasks and notices for unit {unit_id}.", UNIT_TOPIC_EVENTS, partitions=1,
                     key="unit_id", writer=UNIT_TASK_WRITER, readers=(UNITS, BRIDGE, ARCHIVER))


def _retention_ms(config: dict[str, str]) -> int:
    value = int(config.get("retention.ms", "-1"))
    return value if value >= 0 else 2**62


def dlq_spec(source: TopicSpec) -> TopicSpec:
    """A topic's DLQ keeps records 30 days, or less when its source keeps them less (the copies of plain
    personal data must go when the originals go); it is archived when its source is."""
    readers = [r for r in source.readers if r not in NO_DEAD_LETTERS]
    shorter = _retention_ms(source.config) < _retention_ms(DLQ_RETENTION)
    return TopicSpec(source.dlq, f"Dead letters of {source.name}: records that could not be decoded or handled.", (),
                     partitions=1, config=dict(source.config if shorter else DLQ_RETENTION),
                     writer=f"the readers of {source.name}" + (f" ({', '.join(readers)})" if readers else ""),
                     readers=(ARCHIVER,) if ARCHIVER in source.readers else ())


def all_topics(own_topic_units: Iterable[str] = ()) -> list[TopicSpec]:
    """Every topic a deployment needs (each with its DLQ): the catalogue's, the shared area task topic among
    them, and one task topic per unit in `own_topic_units` (`Catalogue.own_topic_units()`: never area units)."""
    specs = list(CATALOGUE_TOPICS) + [unit_topic_spec(u) for u in own_topic_units]
    return specs + [dlq_spec(s) for s in specs]


@dataclass(frozen=True)
class TopicCount:
    """How many topics of one kind a deployment has, and their partitions together."""

    kind: str
    topics: int
    partitions: int


def topic_counts(own_topic_units: Iterable[str]) -> list[TopicCount]:
    """The deployment's topics by kind (`cityops topics --count`): workflow, audit, the shared area task topic,
    the units' own task topics, the DLQs; then the total."""
    own = [unit_topic_spec(u) for u in own_topic_units]
    kinds: list[tuple[str, list[TopicSpec]]] = [
        ("workflow", list(WORKFLOW_TOPICS)), ("audit", [AUDIT]), ("shared area task topic", [AREA_TASKS]),
        ("own unit task topics (departments, branches, district centres, hotline)", own),
    ]
    kinds.append(("DLQs (one per topic above)", [dlq_spec(spec) for _, specs in kinds for spec in specs]))
    counts = [TopicCount(kind, len(specs), sum(s.partitions for s in specs)) for kind, specs in kinds]
    return [*counts, TopicCount("total", sum(c.topics for c in counts), sum(c.partitions for c in counts))]


_WRITERS: dict[str, tuple[str, ...]] = {spec.name: spec.writers for spec in CATALOGUE_TOPICS}


def writers_of(topic: str) -> tuple[str, ...]:
    """Who may publish to `topic` (service names or an outside party); none named for a DLQ (the readers of
    its source topic) and for a topic outside the catalogue (a test's own topic)."""
    if topic.endswith(DLQ_SUFFIX):
        return ()
    if topic in _WRITERS:
        return _WRITERS[topic]
    if _UNIT_TOPIC.match(topic):
        return (UNIT_TASK_WRITER,)
    return ()


def writer_of(topic: str) -> str | None:
    """The writer(s) of `topic` as one label (see `writers_of`); None when the catalogue names none."""
    return ", ".join(writers_of(topic)) or None


class NotTheWriter(PermissionError):
    """A service tried to publish to a topic the catalogue gives to another writer."""


def check_writer(service: str, topic: str) -> None:
    """Refuse a publish by `service` to a topic it does not own (DLQs and topics outside the catalogue excepted)."""
    writers = writers_of(topic)
    if writers and service not in writers:
        only = "only writer is" if len(writers) == 1 else "only writers are"
        raise NotTheWriter(f"{service} may not publish to {topic}: its {only} {', '.join(writers)} (contracts/topics.py)")


def topic_for_event(event_type: str) -> str:
    for spec in CATALOGUE_TOPICS:
        if event_type in spec.event_types:
            return spec.name
    raise LookupError(f"no catalogue topic carries {event_type}")


def catalogue_markdown() -> str:
    """The topic catalogue as a Markdown table (`cityops topics --markdown`; docs/architecture.md holds a copy
    a test keeps current): one row per catalogue topic (the shared area task topic included), one for the
    own task topics of the other units, one for the DLQs."""
    def row(name: str, writer: str, readers: tuple[str, ...], events: str, partitions: int) -> str:
        return f"| {name} | {writer} | {', '.join(readers)} | {events} | {partitions} |"

    lines = ["| topic | writer | readers | events | partitions |", "|---|---|---|---|---|"]
    for spec in CATALOGUE_TOPICS:
        events = ", ".join(e.__name__ for e in spec.events) or "complaints as plain JSON (the body of POST /tickets)"
        lines.append(row(f"`{spec.name}`", spec.writer_label, spec.readers, events, spec.partitions))
    unit = unit_topic_spec("<unit>")
    lines.append(row(f"`{unit.name}` (one per department, district branch or centre, and the hotline)",
                     unit.writer_label, unit.readers,
                     ", ".join(e.__name__ for e in unit.events), unit.partitions))
    dlq = dlq_spec(SLA)
    lines.append(row("`<topic>.dlq` (one per topic above)", "the readers of `<topic>` (whichever failed)", dlq.readers,
                     "records that could not be decoded or handled, with their error", dlq.partitions))
    return "\n".join(lines) + "\n"
