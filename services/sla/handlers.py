"""sla: keep the timers and the ledger from the workflow's events; fire reminders, breaches and escalations.

`handle` applies one workflow event (event time = when it happened); `sweep` is the tick: it fires what is
due at `ctx.now()`. Both run inside the pipeline's batch transaction, so a timer's fired marks commit with
the outbox rows of the events they produced.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from contracts import events as ev
from contracts.envelope import Envelope, derive_event_id
from contracts.topics import (
    ACT,
    CONSULT,
    EVALUATE,
    SLA,
    TICKETS,
    TRIAGE,
    UNIT_REPORTS,
)
from domain.calendar import WorkCalendar
from domain.catalogue import Catalogue
from domain.holders import LedgerFact, fact_from
from domain.reports import report_claim, report_refusal
from services.common.batch_state import TableRows
from services.common.handler import Batched, Emit, HandlerContext, HandlerSpec, Rejected, Tick
from services.common.logs import get_logger

from . import domain
from .models import (
    TICKETS_TABLE,
    SlaTaskRow,
    SlaTimerRow,
    TicketRow,
    fact_values,
    facts_of_tickets,
    new_timer_values,
    store_timer,
    timer_rows_of_tickets,
    to_timer,
    write_batch,
)
from .settings import SlaSettings

log = get_logger(__name__)

TOPICS = [TICKETS.name, TRIAGE.name, CONSULT.name, ACT.name, UNIT_REPORTS.name, EVALUATE.name]
HANDLED = (
    ev.TicketRegistered, ev.TicketMerged, ev.TicketSplit, ev.TicketClassified, ev.ManualTriageRequested,
    ev.ConsultationRequested, ev.PlanAgreed, ev.SupervisorReviewRequested, ev.SupervisorDecided,
    ev.TaskAssigned, ev.TaskSignedFor, ev.ProgressReported, ev.ExtensionRequested, ev.ExtensionDecided,
    ev.TaskReturned, ev.ReturnRejected, ev.RerouteRequested, ev.TaskCompleted, ev.TicketHandled,
    ev.CallbackRequested, ev.CallbackRecorded, ev.TicketReopened, ev.TicketClosed,
)
EVENT_TYPES = [cls.event_type for cls in HANDLED]


@dataclass(frozen=True)
class SlaRuntime:
    """What the handlers compute with (`ctx.deps`): the working-day calendar, the firing policy, the catalogue
    (or None), and the service's settings, typed."""

    calendar: WorkCalendar
    policy: domain.SlaPolicy
    settings: SlaSettings
    catalogue: Catalogue | None = None


Ctx = HandlerContext[SlaRuntime]


def spec(runtime: SlaRuntime) -> HandlerSpec[SlaRuntime]:
    """What the pipeline runs: each batch's events on its tickets' facts and clocks (`BATCH`), the sweep every tick_s."""
    return HandlerSpec(topics=TOPICS, event_types=EVENT_TYPES, deps=runtime, batch=BATCH,
                       ticks=[Tick(sweep, runtime.settings.tick_s)])


def build_runtime(settings: SlaSettings, catalogue: Catalogue | None = None) -> SlaRuntime:
    calendar = settings.work_calendar()
    window = domain.parse_limit(settings.escalation_window) if settings.escalation_window else None
    policy = domain.SlaPolicy(reminder_fractions=settings.reminder_fractions,
                              ladder=tuple(level.value for level in settings.ladder), escalation_window=window)
    return SlaRuntime(calendar=calendar, policy=policy, settings=settings, catalogue=catalogue)


# ---------------------------------------------------------------------------- event handling

# Facts that change a clock: the task's own, and the ticket-wide ones (consultation, closing).
TIMER_FACTS = frozenset({"signed-for", "progress", "extension-requested", "extension-decided", "completed",
                         "returned", "return-rejected"}) | domain.TICKET_WIDE_FACTS


def handle(ctx: Ctx, envelope: Envelope[Any]) -> Iterable[Emit]:
    """One event on its own (tests, tools): a batch of one."""
    return BATCH.one(ctx, envelope)


def _apply(ctx: Ctx, batch: SlaBatch, envelope: Envelope[Any]) -> list[Emit]:
    """Record the event as a fact of its ticket, keep the ticket's details, and mark the clocks it touches for
    a replay (done once per clock at the end of the batch, see `finish_batch`)."""
    _refuse_another_unit_s_report(batch, envelope)
    fact = fact_from(envelope)
    batch.add_fact(envelope, fact)
    data = envelope.data
    if isinstance(data, ev.TicketRegistered | ev.TicketSplit | ev.TicketClassified):
        _remember_ticket(ctx, batch, envelope)
    elif isinstance(data, ev.TaskAssigned):
        _start_clocks(ctx, batch, envelope)
    if fact.kind in TIMER_FACTS:
        batch.replay_later(envelope.ticket_id, None if fact.kind in domain.TICKET_WIDE_FACTS else fact.task_id)
    if fact.kind in ("returned", "assigned"):
        return _ping_pong(ctx, batch, envelope, fact)
    return []


def _refuse_another_unit_s_report(batch: SlaBatch, envelope: Envelope[Any]) -> None:
    """A unit's report on a task whose clocks run here must come from the task's unit (`domain.reports`), else
    it changes nothing and is dead-lettered. One read before its assignment is kept, and the clocks, the ledger
    and the ping-pong count leave it out once the assignment shows it was another unit's (sla does not park)."""
    claim = report_claim(envelope.data)
    if claim is None:
        return
    task_id, unit = claim
    assigned_to = batch.unit_of(envelope.ticket_id, task_id)
    if assigned_to is not None and (refusal := report_refusal(type(envelope.data).__name__, task_id, assigned_to, unit)):
        raise Rejected(refusal)


# ---------------------------------------------------------------------------- a batch's working state

@dataclass
class _Clock:
    """One timer as a batch sees it: its clock, and the row's columns a replay does not change."""

    timer: domain.Timer
    next_due_at: datetime | None
    cause_id: str
    correlation_id: str
    location: dict
    stored: bool  # a row exists (written with an UPDATE) or is new in this batch (an INSERT)


@dataclass
class SlaBatch:
    """What the batch's events touch, loaded with one query per table (`start_batch`), changed in memory,
    written with one statement per table (`finish_batch`). Replaying a clock is a pure function of its facts,
    so one replay per clock at the end of the batch equals a replay after each of its events."""

    facts: dict[str, list[LedgerFact]]
    clocks: dict[str, list[_Clock]]
    tickets: TableRows[TicketRow]
    new_facts: list[dict[str, Any]] = field(default_factory=list)
    new_tasks: list[dict[str, Any]] = field(default_factory=list)
    to_replay: dict[str, set[str | None]] = field(default_factory=lambda: defaultdict(set))

    def add_fact(self, envelope: Envelope[Any], fact: LedgerFact) -> None:
        self.facts.setdefault(envelope.ticket_id, []).append(fact)
        self.new_facts.append(fact_values(envelope.id, envelope.ticket_id, fact))

    def unit_of(self, ticket_id: str, task_id: str) -> str | None:
        """The unit a task of this batch's tickets was assigned to (its clocks say), None before its assignment."""
        return next((c.timer.unit for c in self.clocks.get(ticket_id, ()) if c.timer.task_id == task_id), None)

    def replay_later(self, ticket_id: str, task_id: str | None) -> None:
        """Mark one task's clocks (None: every task of the ticket) for the replay at the end of the batch."""
        self.to_replay[ticket_id].add(task_id)


def start_batch(ctx: Ctx, envelopes: list[Envelope[Any]]) -> SlaBatch:
    tickets = sorted({e.ticket_id for e in envelopes})
    clocks: dict[str, list[_Clock]] = defaultdict(list)
    for row in timer_rows_of_tickets(ctx.session, tickets):
        clocks[row.ticket_id].append(_Clock(to_timer(row), row.next_due_at, row.cause_id, row.correlation_id,
                                            row.location, stored=True))
    ticket_rows = TableRows(ctx.session.connection(), TICKETS_TABLE, TicketRow)
    ticket_rows.load(tickets)
    return SlaBatch(facts=facts_of_tickets(ctx.session, tickets), clocks=clocks, tickets=ticket_rows)


def finish_batch(ctx: Ctx, batch: SlaBatch) -> None:
    """Replay every clock the batch touched, once, then write the batch's facts, tasks, tickets and clocks."""
    rt = ctx.deps
    changed: list[tuple[domain.Timer, datetime | None]] = []
    for ticket_id, tasks in batch.to_replay.items():
        facts = batch.facts.get(ticket_id, [])
        for clock in batch.clocks.get(ticket_id, ()):
            if None not in tasks and clock.timer.task_id not in tasks:
                continue
            timer = domain.replay(clock.timer, facts, rt.calendar)
            next_due = domain.next_due_at(timer, rt.calendar, rt.policy)
            if clock.stored and (timer, next_due) != (clock.timer, clock.next_due_at):
                changed.append((timer, next_due))
            clock.timer, clock.next_due_at = timer, next_due
    new_timers = [new_timer_values(c.timer, c.next_due_at, cause_id=c.cause_id, correlation_id=c.correlation_id,
                                   location=c.location)
                  for clocks in batch.clocks.values() for c in clocks if not c.stored]
    batch.tickets.write()
    write_batch(ctx.session, facts=batch.new_facts, tasks=batch.new_tasks, new_timers=new_timers,
                changed_timers=changed)


BATCH: Batched[SlaRuntime, SlaBatch] = Batched(start=start_batch, apply=_apply, finish=finish_batch)


def _ticket(ctx: Ctx, batch: SlaBatch, ticket_id: str) -> TicketRow:
    return batch.tickets.get(ticket_id) or batch.tickets.add(TicketRow(ticket_id=ticket_id))


def _remember_ticket(ctx: Ctx, batch: SlaBatch, envelope: Envelope[Any]) -> None:
    data, row = envelope.data, _ticket(ctx, batch, envelope.ticket_id)
    row.location = data.ticket.location.model_dump(exclude_none=True)
    if isinstance(data, ev.TicketClassified):
        row.level, row.category = data.routing.level.value, data.category


def _start_clocks(ctx: Ctx, batch: SlaBatch, envelope: Envelope[Any]) -> None:
    data: ev.TaskAssigned = envelope.data
    clocks = batch.clocks[envelope.ticket_id]
    if any(c.timer.task_id == data.task_id for c in clocks):
        return  # the same task announced again: its clocks already run
    rt = ctx.deps
    ticket = _ticket(ctx, batch, envelope.ticket_id)
    ticket.location = ticket.location or data.ticket.location.model_dump(exclude_none=True)
    _warn_if_uncovered(rt.calendar, envelope.time)
    level = domain.unit_level(rt.catalogue, data.unit, ticket.level)
    timers = domain.timers_for_task(task_id=data.task_id, ticket_id=envelope.ticket_id, unit=data.unit, level=level,
                                    limits=data.limits, assigned_at=envelope.time, resolution_due=data.resolution_due)
    batch.new_tasks.append({"task_id": data.task_id, "ticket_id": envelope.ticket_id, "unit": data.unit, "rung": 0})
    clocks += [_Clock(timer, None, envelope.id, envelope.correlation_id, dict(ticket.location), stored=False)
               for timer in timers]
    batch.replay_later(envelope.ticket_id, data.task_id)  # facts that arrived before the assignment


def _warn_if_uncovered(calendar: WorkCalendar, at: datetime) -> None:
    if at.year not in calendar.holidays.covered_years:
        log.warning("calendar_year_not_covered", year=at.year, effect="plain Monday-Friday week assumed")


def _ping_pong(ctx: Ctx, batch: SlaBatch, envelope: Envelope[Any], fact: LedgerFact) -> list[Emit]:
    """Arbitration when the ticket was returned too often. A return counts once its assignment is read
    (`domain.genuine_returns`), so this is asked on a return, and on an assignment read after its task's returns."""
    settings = ctx.deps.settings
    ticket = _ticket(ctx, batch, envelope.ticket_id)
    if ticket.pingpong_escalated:
        return []
    returns = domain.genuine_returns(batch.facts[envelope.ticket_id])
    own = [r.at for r in returns if r.task_id == fact.task_id]
    if not own:
        return []  # nothing newly counted: an assignment with no return yet, or a return that does not count (yet)
    times = [r.at for r in returns]
    at = envelope.time if fact.kind == "returned" else max(own)
    if not domain.is_ping_pong(times, at, settings.pingpong_max_returns, settings.pingpong_window):
        return []
    ticket.pingpong_escalated = True
    arbiter = settings.arbitration_unit
    to_level = domain.unit_level(ctx.deps.catalogue, arbiter, None)
    data = ev.TicketEscalated(from_level=ticket.level, to_level=to_level, to_unit=arbiter, reason="ping-pong",
                              task_id=envelope.data.task_id)
    escalated = envelope.caused(data, source=ctx.source, time=at)
    log.info("ticket_escalated_ping_pong", ticket_id=envelope.ticket_id, returns=len(times), arbiter=arbiter)
    return [Emit(SLA.name, escalated)]  # act forwards it to the arbiter's task topic


# ---------------------------------------------------------------------------- the sweep (tick)


def sweep(ctx: Ctx) -> list[Emit]:
    """Fire every timer due at `ctx.now()` (at most `tick_batch` of them; the rest at the next tick)."""
    now = ctx.now()
    settings = ctx.deps.settings
    due = ctx.session.execute(
        select(SlaTimerRow).where(col(SlaTimerRow.status) == "running", col(SlaTimerRow.next_due_at) <= now)
        .order_by(col(SlaTimerRow.next_due_at)).limit(settings.tick_batch)
        # Several instances sharing PostgreSQL split the due timers instead of firing them twice.
        .with_for_update(skip_locked=True)).scalars().all()
    out: list[Emit] = []
    for row in due:
        try:
            timer, firings, next_due, task_rung = _fire(ctx, row, now)
            emits = [emit for firing in firings for emit in _emits_for(ctx, row, firing, now)]
        except Exception as exc:  # one corrupt timer must not stop every other timer
            log.error("timer_parked", task_id=row.task_id, clock=row.clock, error=repr(exc))
            row.next_due_at = None
            continue
        # Written only once everything is computed: a timer that fails leaves nothing half-marked.
        store_timer(row, timer, next_due)
        _set_task_rung(ctx, row.task_id, task_rung)
        out += emits
    return out


def _fire(ctx: Ctx, row: SlaTimerRow, now: datetime) -> tuple[domain.Timer, list[domain.Firing], datetime | None, int]:
    rt = ctx.deps
    timer, firings = domain.fire_due(to_timer(row), now, rt.calendar, rt.policy)
    task = ctx.session.get(SlaTaskRow, row.task_id)
    task_rung, firings = domain.task_escalations(task.rung if task else 0, firings)
    return timer, firings, domain.next_due_at(timer, rt.calendar, rt.policy), task_rung


def _set_task_rung(ctx: Ctx, task_id: str, rung: int) -> None:
    task = ctx.session.get(SlaTaskRow, task_id)
    if task is not None:
        task.rung = rung


def _emits_for(ctx: Ctx, row: SlaTimerRow, firing: domain.Firing, now: datetime) -> list[Emit]:
    timer = firing.timer
    if firing.kind == "reminder":
        data: ev.Event = ev.SlaReminderSent(task_id=timer.task_id, unit=timer.unit, clock=timer.clock,
                                            fraction=firing.fraction, deadline=firing.deadline)
        return _on_sla_topic(ctx, row, firing, data, now)  # act forwards it to the unit
    if firing.kind == "breach":
        data = ev.SlaBreached(task_id=timer.task_id, unit=timer.unit, clock=timer.clock, deadline=firing.deadline)
        return _on_sla_topic(ctx, row, firing, data, now)
    to_unit = domain.supervisor_for(ctx.deps.catalogue, timer.unit, row.location, firing.to_level,
                                    ctx.deps.settings.top_supervisor)
    data = ev.TicketEscalated(from_level=firing.from_level, to_level=firing.to_level, to_unit=to_unit,
                              reason="breach", task_id=timer.task_id)
    log.debug("ticket_escalated", ticket_id=timer.ticket_id, task_id=timer.task_id, clock=timer.clock,
             rung=firing.rung, to_level=firing.to_level, to_unit=to_unit)
    # act forwards it to the unit and to the supervising unit (act writes the units' task topics).
    return _on_sla_topic(ctx, row, firing, data, now)


def _on_sla_topic(ctx: Ctx, row: SlaTimerRow, firing: domain.Firing, data: ev.Event, now: datetime) -> list[Emit]:
    # The id derives from the assignment and the firing's key: however often a crash makes us compute this
    # firing again, it is the same event, and consumers drop the copy.
    envelope: Envelope[ev.Event] = Envelope(
        id=derive_event_id(row.cause_id, data.event_type, 0, firing.key), type=data.event_type, source=ctx.source,
        time=now, subject=row.ticket_id, ticket_id=row.ticket_id, correlation_id=row.correlation_id,
        causation_id=row.cause_id, data=data,
    )
    return [Emit(SLA.name, envelope)]
