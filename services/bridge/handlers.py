"""The bridge's consumers: the units' task topics and the unit reports, folded into its read model.

The read model only follows: it emits nothing. A report is read back from the reports topic whoever sent it
(the bridge, the SDK, the simulated units), so the bridge shows what the units really reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.topics import AREA_TASKS, UNIT_REPORTS
from domain.calendar import WorkCalendar
from domain.statuses import TaskStatus
from services.common.batch_state import table_of
from services.common.handler import Emit, HandlerContext, HandlerSpec, NotYet
from services.common.logs import get_logger

from . import domain
from .models import BridgeConsultation, BridgeParty, BridgeTask

log = get_logger(__name__)

REPORTS = (ev.TaskSignedFor, ev.ProgressReported, ev.ExtensionRequested, ev.TaskReturned, ev.TaskCompleted)
EVENT_TYPES = [m.event_type for m in (ev.TaskAssigned, ev.ConsultationRequested, ev.ExtensionDecided, ev.ReturnRejected,
                                      ev.SlaReminderSent, *REPORTS, ev.OpinionGiven)]
TABLES = [table_of(BridgeTask), table_of(BridgeConsultation), table_of(BridgeParty)]


@dataclass(frozen=True)
class BridgeDeps:
    """The units whose tasks the bridge follows, the task topics that carry them (each with the units whose
    records are ours there: `Catalogue.task_topics_of`), and the calendar their deadlines are counted on."""

    units: frozenset[str]
    calendar: WorkCalendar
    task_topics: Mapping[str, frozenset[str]]


Ctx = HandlerContext[BridgeDeps]


def topics(task_topics: Mapping[str, frozenset[str]]) -> list[str]:
    return [*task_topics, UNIT_REPORTS.name]


def spec(deps: BridgeDeps) -> HandlerSpec[BridgeDeps]:
    """The units' task topics and the reports; on the shared area topic only our units' records, chosen by key
    before decoding (grid workers' apps and the console then see their own grid's through the API)."""
    keys = {t: units for t, units in deps.task_topics.items() if t == AREA_TASKS.name}
    return HandlerSpec(topics=topics(deps.task_topics), event_types=EVENT_TYPES, deps=deps, handle=handle, keys_by_topic=keys)


def handle(ctx: Ctx, envelope: Envelope[Any]) -> Iterable[Emit]:
    d = envelope.data
    match d:
        case ev.TaskAssigned():
            on_assigned(ctx, envelope)
        case ev.ConsultationRequested():
            on_consultation(ctx, envelope)
        case ev.OpinionGiven():
            on_opinion(ctx, d)
        case ev.ExtensionDecided() | ev.ReturnRejected() | ev.SlaReminderSent():
            on_notice(ctx, envelope)
        case _ if isinstance(d, REPORTS):
            on_report(ctx, envelope)
    return ()


# ---------------------------------------------------------------------------- the units' task topics

def on_assigned(ctx: Ctx, envelope: Envelope[Any]) -> None:
    d: ev.TaskAssigned = envelope.data
    at = domain.as_utc(envelope.time)
    due = domain.deadlines(ctx.deps.calendar, d, envelope.time)
    task = BridgeTask(task_id=d.task_id, ticket_id=envelope.ticket_id, unit=d.unit, role=str(d.role), round=d.round,
                      final=d.final, category=d.category, status=TaskStatus.assigned,
                      dispatch_id=envelope.causation_id or envelope.id, assigned_at=at, updated_at=at,
                      assigned_json=envelope.model_dump_json(), sign_for_due=domain.utc_or_none(due.sign_for),
                      response_due=domain.utc_or_none(due.response), resolution_due=domain.utc_or_none(due.resolution))
    for other in _tasks_of(ctx, envelope.ticket_id):
        if other.dispatch_id == task.dispatch_id or other.task_id == task.task_id:
            continue
        if domain.superseded(other.assigned_at, at) and other.status in domain.OPEN_STATES:
            other.status, other.updated_at = TaskStatus.withdrawn, at
        elif domain.superseded(at, other.assigned_at):
            task.status = TaskStatus.withdrawn  # read after the dispatch that replaced it
    if ctx.session.get(BridgeTask, d.task_id) is None:
        ctx.session.add(task)
    for consultation in _consultations_of(ctx, envelope.ticket_id):
        if consultation.requested_at < at:
            consultation.closed = True  # a dispatch follows the plan (or the supervisor's decision)


def on_consultation(ctx: Ctx, envelope: Envelope[Any]) -> None:
    """One row per consultation: act forwards the same event (same id) to each party's topic, and the pipeline
    applies an event id once."""
    d: ev.ConsultationRequested = envelope.data
    if ctx.session.get(BridgeConsultation, d.consultation_id) is not None:
        return
    at = domain.as_utc(envelope.time)
    dispatched_after = any(t.assigned_at > at for t in _tasks_of(ctx, envelope.ticket_id))
    ctx.session.add(BridgeConsultation(consultation_id=d.consultation_id, ticket_id=envelope.ticket_id, requested_at=at,
                                       opinions_due=domain.as_utc(d.opinions_due), closed=dispatched_after,
                                       requested_json=envelope.model_dump_json()))
    for unit in dict.fromkeys(d.parties):
        ctx.session.add(BridgeParty(consultation_id=d.consultation_id, unit=unit))


def on_notice(ctx: Ctx, envelope: Envelope[Any]) -> None:
    """What act and sla tell a unit about its task: an extension decided, a return refused, a clock's deadline."""
    d = envelope.data
    task = _task(ctx, d.task_id)
    match d:
        case ev.ExtensionDecided():
            task.extensions_decided += 1
            if d.approved:
                task.extensions_granted += 1
                if task.resolution_due is not None:
                    later = domain.nominal_deadline(ctx.deps.calendar, task.resolution_due, d.extra)
                    task.resolution_due = domain.utc_or_none(later)
            task.last_note = f"extension {'approved' if d.approved else 'refused'}: {d.reason}"
        case ev.ReturnRejected():
            task.last_note = f"return refused: {d.reason}"
        case ev.SlaReminderSent():
            setattr(task, f"{d.clock}_due", domain.as_utc(d.deadline))  # sla's clock knows the pauses


# ---------------------------------------------------------------------------- the unit reports

def on_report(ctx: Ctx, envelope: Envelope[Any]) -> None:
    d = envelope.data
    if d.unit not in ctx.deps.units:
        return  # a unit this bridge does not follow: its task will never come
    task = _task(ctx, d.task_id)
    if d.unit != task.unit:
        # A unit reporting on another unit's task changes nothing, here as in act.
        log.warning("report_from_another_unit_ignored", task_id=d.task_id, task_unit=task.unit, reporting_unit=d.unit)
        return
    task.status = domain.status_after_report(d, task.status, task.final)
    task.updated_at = max(task.updated_at, domain.as_utc(envelope.time))
    match d:
        case ev.TaskSignedFor():
            task.handler = d.handler or task.handler
        case ev.ProgressReported():
            task.last_note = d.note
        case ev.ExtensionRequested():
            task.extensions_requested += 1
        case ev.TaskCompleted():
            task.result = d.result
            if d.resolved_on_the_spot and task.role == ev.Role.lead:
                _withdraw_the_rest(ctx, task)  # act withdraws the co-units' parts of a matter closed on the spot
        case ev.TaskReturned() if task.status == TaskStatus.returned and task.role == ev.Role.lead:
            _withdraw_the_rest(ctx, task)


def _withdraw_the_rest(ctx: Ctx, returned: BridgeTask) -> None:
    """A lead's accepted return or escalation sends the ticket back to triage, and a grid worker's resolution on
    the spot ends it: act withdraws every other open task of it (the co-units' too), and so does this view,
    rather than wait for the next dispatch."""
    for other in _tasks_of(ctx, returned.ticket_id):
        if other.task_id != returned.task_id and other.status in domain.OPEN_STATES:
            other.status, other.updated_at = TaskStatus.withdrawn, returned.updated_at


def on_opinion(ctx: Ctx, d: ev.OpinionGiven) -> None:
    if d.unit not in ctx.deps.units:
        return
    if ctx.session.get(BridgeConsultation, d.consultation_id) is None:
        raise NotYet(f"no consultation {d.consultation_id} yet")
    party = ctx.session.get(BridgeParty, (d.consultation_id, d.unit))
    if party is None:
        log.warning("opinion_from_a_non_party_ignored", consultation_id=d.consultation_id, unit=d.unit)
        return
    party.answered, party.agrees = True, d.agrees
    party.proposed_lead, party.comment = d.proposed_lead, d.comment or None
    ctx.session.add(party)


# ---------------------------------------------------------------------------- lookups

def _task(ctx: Ctx, task_id: str) -> BridgeTask:
    task = ctx.session.get(BridgeTask, task_id)
    if task is None:
        raise NotYet(f"no task {task_id} yet")
    ctx.session.add(task)
    return task


def _tasks_of(ctx: Ctx, ticket_id: str) -> list[BridgeTask]:
    return list(ctx.session.exec(select(BridgeTask).where(col(BridgeTask.ticket_id) == ticket_id)).all())


def _consultations_of(ctx: Ctx, ticket_id: str) -> list[BridgeConsultation]:
    return list(ctx.session.exec(select(BridgeConsultation).where(col(BridgeConsultation.ticket_id) == ticket_id,
                                                                  col(BridgeConsultation.closed).is_(False))).all())
