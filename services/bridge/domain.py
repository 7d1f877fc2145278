"""The bridge's rules: who may act for which unit, what a report does to a task, which action a task allows,
and a task's deadlines. Pure: no I/O, no clock of its own."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from contracts import events as ev
from domain.calendar import CalendarCoverageError, SlaUnit, WorkCalendar
from domain.grid_workers import escalation_refusal, on_the_spot_refusal
from domain.statuses import OPEN_TASK_STATES, TaskStatus, status_after_progress
from services.common.auth import Principal, Role

OPEN_STATES: frozenset[str] = frozenset(str(s) for s in OPEN_TASK_STATES)


class Action(StrEnum):
    """What a unit can do about its task over the bridge (the path segment of each POST)."""

    sign_for = "sign-for"
    progress = "progress"
    extension = "extension"
    return_ = "return"
    complete = "complete"
    on_the_spot = "resolve-on-the-spot"
    escalate = "escalate"


# ---------------------------------------------------------------------------- who acts for which unit

def acting_units(principal: Principal, grid_units: Iterable[str]) -> frozenset[str]:
    """The units a caller acts for: a unit user's own unit; a grid worker's grids that are grid units of the
    catalogue (a `grids` claim naming a department or a street office gives nothing: least privilege)."""
    units: set[str] = set()
    if principal.has(Role.unit) and principal.unit:
        units.add(principal.unit)
    if principal.has(Role.grid_worker):
        units.update(set(principal.grids) & set(grid_units))
    return frozenset(units)


# ---------------------------------------------------------------------------- what a report does

def status_after_report(report: ev.Event, status: str, final: bool) -> str:
    """A task's state after its unit's report, mirroring act's rules: only an open task moves; a sign-for
    moves only an assigned one (a late copy must not undo progress); a final task's return is refused by act,
    so it stays as it is."""
    if status not in OPEN_STATES:
        return status
    match report:
        case ev.TaskSignedFor():
            return TaskStatus.signed_for if status == TaskStatus.assigned else status
        case ev.ProgressReported():
            return status_after_progress(report.waiting_on_resident)
        case ev.TaskCompleted():
            return TaskStatus.completed
        case ev.TaskReturned():
            return status if final else TaskStatus.returned
    return status


def superseded(assigned_at: datetime, other_assigned_at: datetime) -> bool:
    """Whether a task of another dispatch of the same ticket, assigned at `other_assigned_at`, replaces one
    assigned at `assigned_at`: act withdraws whatever is still open when it dispatches again (after a return,
    a new plan, a reopen). The unit topics are read in no common order, so times decide, not reading order."""
    return other_assigned_at > assigned_at


# ---------------------------------------------------------------------------- what a task allows

def refusal(action: Action, status: str, *, final: bool, extension_pending: bool) -> str | None:
    """Why `action` is not possible on a task in this state (the 409's reason), or None when it is."""
    if status not in OPEN_STATES:
        return f"the task is {status}: it is no longer open"
    if action == Action.sign_for and status != TaskStatus.assigned:
        return f"the task is already {status}"
    if action == Action.extension and extension_pending:
        return "an extension request of this task is still waiting for its decision"
    if action in (Action.return_, Action.escalate) and final:
        return "the task was assigned by a supervisor's final decision: it may not be returned"
    return None


def grid_work_refusal(action: Action, assigned: ev.TaskAssigned, unit_level: str, to_level: str | None = None) -> str | None:
    """Why a unit may not resolve this task on the spot or escalate it (domain/grid_workers.py), or None. The
    bridge does not know whether the ticket's parties had to agree first: act checks that and dead-letters the
    report if so."""
    if action == Action.on_the_spot:
        return on_the_spot_refusal(lead_level=unit_level, role=assigned.role.value, needs_consultation=False,
                                   proactive=assigned.ticket.proactive_rule is not None)
    if assigned.role != ev.Role.lead:
        return "only the lead unit escalates a task"
    return escalation_refusal(unit_level, to_level or "")


def opinion_refusal(*, closed: bool, answered: bool, opinions_due: datetime, now: datetime) -> str | None:
    """Why a party may not give its opinion now (the 409's reason), or None when it may."""
    if closed:
        return "the consultation is settled: its ticket has been dispatched"
    if answered:
        return "this unit has already given its opinion"
    if now > opinions_due:
        return f"opinions were due at {opinions_due.isoformat()}: a supervisor decides now"
    return None


# ---------------------------------------------------------------------------- deadlines

def nominal_deadline(calendar: WorkCalendar, start: datetime, limit: ev.TimeLimitSpec) -> datetime | None:
    """`limit` after `start` on the working-day calendar, as sla counts it before any pause; None in a year the
    calendar refuses (strict coverage)."""
    try:
        return calendar.add(as_utc(start), limit.amount, limit.unit)
    except CalendarCoverageError:
        return None


class Deadlines(NamedTuple):
    sign_for: datetime | None
    response: datetime | None
    resolution: datetime | None


def deadlines(calendar: WorkCalendar, assigned: ev.TaskAssigned, assigned_at: datetime) -> Deadlines:
    """The three clocks of a new task: sign for, respond, resolve (an agreed completion date wins)."""
    limits = assigned.limits
    return Deadlines(nominal_deadline(calendar, assigned_at, limits.sign_for),
                     nominal_deadline(calendar, assigned_at, limits.response),
                     assigned.resolution_due or nominal_deadline(calendar, assigned_at, limits.resolution))


def as_utc(moment: datetime) -> datetime:
    """An instant as an aware UTC datetime, as the store keeps and gives it back (a naive one is taken as UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def utc_or_none(moment: datetime | None) -> datetime | None:
    return None if moment is None else as_utc(moment)


# ---------------------------------------------------------------------------- time left, for a countdown

CLOCKS: tuple[str, ...] = ("sign_for", "response", "resolution")
_NATURAL_UNITS = frozenset({"h", "m"})
_A_MINUTE = timedelta(minutes=1)


class ClockLeft(NamedTuple):
    """One clock of a task as a unit's screen counts it down: `left` is working time for wd/wh clocks (natural
    time for h/m), negative once overdue; `running` says whether it is shrinking right now, so a page between
    two refreshes counts down only then (not at night, not on a day off, not while stopped or paused)."""

    clock: str
    due: datetime | None
    unit: str
    left: timedelta | None
    stopped: bool
    running: bool


def clock_stopped(clock: str, status: str) -> bool:
    """Whether a clock has stopped for good, as sla stops it: sign-for at the sign-for, response at the first
    progress report or completion, every clock when the task is no longer open."""
    if status not in OPEN_STATES:
        return True
    if clock == "sign_for":
        return status != TaskStatus.assigned
    if clock == "response":
        return status in (TaskStatus.in_progress, TaskStatus.waiting_on_resident)
    return False


def time_left(calendar: WorkCalendar, due: datetime | None, unit: SlaUnit, now: datetime) -> timedelta | None:
    """From `now` to `due` as a clock in `unit` measures it, negative past it; None without a deadline or in a
    year the calendar does not cover."""
    if due is None:
        return None
    due, now = as_utc(due), as_utc(now)
    try:
        if due >= now:
            return calendar.elapsed_between(now, due, unit)
        return -calendar.elapsed_between(due, now, unit)
    except CalendarCoverageError:
        return None


def ticking_now(calendar: WorkCalendar, unit: SlaUnit, now: datetime) -> bool:
    """Whether a clock in `unit` advances at `now`: natural time always, working time inside working hours."""
    if unit in _NATURAL_UNITS:
        return True
    try:
        return calendar.working_time_between(as_utc(now), as_utc(now) + _A_MINUTE) > timedelta(0)
    except CalendarCoverageError:
        return False


def clocks_left(calendar: WorkCalendar, dues: Deadlines, limits: ev.Limits, status: str, now: datetime) -> list[ClockLeft]:
    """The three clocks of a task at `now`, in the order sign for, respond, resolve."""
    out = []
    for clock, due in zip(CLOCKS, dues, strict=True):
        unit = getattr(limits, clock).unit
        stopped = clock_stopped(clock, status)
        left = None if stopped else time_left(calendar, due, unit, now)
        running = left is not None and status != TaskStatus.waiting_on_resident and ticking_now(calendar, unit, now)
        out.append(ClockLeft(clock, utc_or_none(due), unit, left, stopped, running))
    return out


# ---------------------------------------------------------------------------- joint actions

class Joint(NamedTuple):
    """A joint action (联合办理) as one of its units sees it: who leads, who helps, who has reported done."""

    lead: str | None
    co_units: tuple[str, ...]
    done: tuple[str, ...]


def joint_of(parts: Iterable[tuple[str, str, str]]) -> Joint | None:
    """The joint action of one dispatch from its tasks' (unit, role, status); None for a unit acting alone."""
    rows = sorted(set(parts))
    if len(rows) < 2:
        return None
    lead = next((unit for unit, role, _ in rows if role == ev.Role.lead), None)
    return Joint(lead, tuple(unit for unit, role, _ in rows if role != ev.Role.lead),
                 tuple(unit for unit, _, status in rows if status == TaskStatus.completed))
