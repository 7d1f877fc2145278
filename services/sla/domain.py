"""Pure SLA logic: the timers of each assignment, what fires at `now`, the escalation ladder, the ping-pong
detector, on-time rates and the returns index. No I/O; every function takes the time it works with.

Timers. Every task (one unit's part of one round of a ticket) has three clocks, all started when the task is
assigned (the TaskAssigned event's time): ``sign_for`` (签收), ``response`` (first substantive reply) and
``resolution`` (办结), with the limits the catalogue gave the task. What stops each clock:

- sign_for: the unit signs for the task, or reports anything that shows it has it (progress, an extension
  request, completion);
- response: the first progress report, or completion;
- resolution: completion (or, when consultation fixed a date, ``resolution_due`` instead of the limit).

A returned task (退单) sets its clocks aside ("returned"); if the return is refused (ReturnRejected) they run on
as if never stopped: the unit held the ticket all along. Closing the ticket stops whatever still runs.

A clock is a fold of its ticket's facts in event-time order (`replay`), not of the order in which they
arrive: the SLA service reads six topics, and Kafka orders a ticket's events only within one topic.

Pauses: time in consultation (协商: a ConsultationRequested until the plan is agreed or a supervisor decides)
pauses every clock of the ticket; time waiting on the resident (a progress report with
``waiting_on_resident`` until the next report) pauses that task's clocks. Both can overlap: a clock stands
still while at least one reason holds. An approved extension (延期) moves the resolution deadline; the time
stays the unit's (an extension is more time to work, not a suspension of the work).

Firing, at `now`: each reminder fraction (催办, default 50% and 80% of the limit) fires once per clock; when the
deadline passes, the clock breaches once and reaches rung 1 of the ladder (grid -> community -> street ->
district -> city). Each rung gets a window (default: the clock's own limit again) counted from the previous
deadline; when that passes too and the clock still runs, the clock reaches the next rung, up to the top. The
task escalates (督办) whenever one of its clocks reaches a rung the task has not reached yet, so every level
above is told once, at the pace of the task's fastest running clock. A unit at the top of the ladder (a city
department) escalates once, to the city's supervisor (the 12345 / 督办 office). A service that was down fires what fell due meanwhile, in order, once:
nothing is lost, even when that means a late reminder just before its breach.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from contracts import events as ev
from domain.calendar import Extension, Pause, SlaClock, SlaUnit, WorkCalendar
from domain.catalogue import Catalogue
from domain.holders import REPORT_KINDS, LedgerFact
from domain.rates import RateCounts, rate, response_counts
from domain.reports import may_report

ClockName = Literal["sign_for", "response", "resolution"]
CLOCKS: tuple[ClockName, ...] = ("sign_for", "response", "resolution")
TimerStatus = Literal["running", "done", "returned", "stopped"]
FiringKind = Literal["reminder", "breach", "escalation"]
PauseReason = Literal["consultation", "resident"]

LADDER: tuple[str, ...] = tuple(level.value for level in ev.Level)
TOP_LEVEL = ev.Level.city.value


# ---------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class SlaPolicy:
    """How timers fire: reminder fractions, the escalation ladder and each escalated level's window."""

    reminder_fractions: tuple[float, ...] = (0.5, 0.8)
    ladder: tuple[str, ...] = LADDER
    escalation_window: tuple[int, SlaUnit] | None = None  # None: the breached clock's own limit again

    def rungs_above(self, level: str | None) -> int:
        """How many escalations a unit at `level` can go through: one per level above it, and one (to the
        city's supervisor) for a unit at the top or off the ladder."""
        if level not in self.ladder:
            return 1
        return max(1, len(self.ladder) - 1 - self.ladder.index(level))

    def rung_levels(self, level: str | None, rung: int) -> tuple[str | None, str]:
        """(from level, to level) of escalation number `rung` (1 = the first) of a unit at `level`."""
        if level not in self.ladder or self.ladder.index(level) == len(self.ladder) - 1:
            return level, self.ladder[-1]
        position = self.ladder.index(level)
        return self.ladder[position + rung - 1], self.ladder[position + rung]


def parse_limit(text: str) -> tuple[int, SlaUnit]:
    """'3wd' -> (3, 'wd'); the notation of the catalogue and of settings."""
    spec = text.strip()
    for unit in ("wd", "wh", "h", "m"):
        if spec.endswith(unit) and spec[: -len(unit)].strip().isdigit():
            return int(spec[: -len(unit)]), unit
    raise ValueError(f"time limit {text!r} is not '<number><wd|wh|h|m>'")


# ---------------------------------------------------------------------------- timers


@dataclass(frozen=True)
class Timer:
    """One clock of one task, with what it has already fired."""

    task_id: str
    clock: ClockName
    ticket_id: str
    unit: str
    level: str | None  # the unit's level on the ladder, None when unknown
    limit: int
    limit_unit: SlaUnit
    started_at: datetime
    pauses: tuple[Pause, ...] = ()
    extensions: tuple[Extension, ...] = ()
    pause_reasons: frozenset[str] = frozenset()
    status: TimerStatus = "running"
    finished_at: datetime | None = None
    on_time: bool | None = None
    fired: tuple[float, ...] = ()
    breach_deadline: datetime | None = None
    rung: int = 0

    @property
    def paused(self) -> bool:
        return bool(self.pause_reasons)

    def sla_clock(self, calendar: WorkCalendar) -> SlaClock:
        return SlaClock(self.limit, self.limit_unit, self.started_at, self.pauses, self.extensions, calendar=calendar)

    def last_event_at(self) -> datetime:
        if not self.pauses:
            return self.started_at
        last = self.pauses[-1]
        return last.ended_at or last.started_at


def timers_for_task(*, task_id: str, ticket_id: str, unit: str, level: str | None, limits: ev.Limits,
                    assigned_at: datetime, resolution_due: datetime | None = None) -> list[Timer]:
    """The three clocks of a newly assigned task. A resolution date fixed by consultation replaces the
    resolution limit: it becomes a clock of the natural minutes up to that date (so pauses move it too)."""
    specs: dict[ClockName, tuple[int, SlaUnit]] = {
        "sign_for": (limits.sign_for.amount, limits.sign_for.unit),
        "response": (limits.response.amount, limits.response.unit),
        "resolution": (limits.resolution.amount, limits.resolution.unit),
    }
    if resolution_due is not None:
        minutes = math.ceil((resolution_due - assigned_at).total_seconds() / 60)
        specs["resolution"] = (max(0, minutes), "m")
    return [Timer(task_id=task_id, clock=clock, ticket_id=ticket_id, unit=unit, level=level, limit=amount,
                  limit_unit=limit_unit, started_at=assigned_at) for clock, (amount, limit_unit) in specs.items()]


def _not_before_last_event(timer: Timer, at: datetime) -> datetime:
    # Services stamp events with their own clocks; a report stamped a hair before the previous event on
    # this clock happened, as far as the clock can tell, at that event.
    return max(at, timer.last_event_at())


def pause(timer: Timer, reason: PauseReason, at: datetime) -> Timer:
    """Stop the clock for `reason` (it may already stand still for another one)."""
    if timer.status != "running" or reason in timer.pause_reasons:
        return timer
    pauses = timer.pauses
    if not timer.paused:
        pauses = (*pauses, Pause(started_at=_not_before_last_event(timer, at)))
    return dataclasses.replace(timer, pauses=pauses, pause_reasons=timer.pause_reasons | {reason})


def resume(timer: Timer, reason: PauseReason, at: datetime) -> Timer:
    """Lift `reason`; the clock runs again once no reason holds."""
    if reason not in timer.pause_reasons:
        return timer
    reasons = timer.pause_reasons - {reason}
    pauses = timer.pauses
    if not reasons:
        closed = dataclasses.replace(pauses[-1], ended_at=_not_before_last_event(timer, at))
        pauses = (*pauses[:-1], closed)
    return dataclasses.replace(timer, pauses=pauses, pause_reasons=frozenset(reasons))


def extend(timer: Timer, amount: int, unit: SlaUnit) -> Timer:
    """An approved extension moves the deadline (the time stays the unit's)."""
    if timer.status != "running":
        return timer
    return dataclasses.replace(timer, extensions=(*timer.extensions, Extension(amount, unit)))


def finish(timer: Timer, at: datetime, calendar: WorkCalendar) -> Timer:
    """The clock's goal was reached at `at`: on time when `at` is not after the deadline as known then."""
    if timer.status != "running":
        return timer
    at = _not_before_last_event(timer, at)
    for reason in sorted(timer.pause_reasons):
        timer = resume(timer, reason, at)  # type: ignore[arg-type]  # pause_reasons holds only PauseReason values
    on_time = at <= timer.sla_clock(calendar).deadline_at(at)
    return dataclasses.replace(timer, status="done", finished_at=at, on_time=on_time)


def set_aside(timer: Timer, status: Literal["returned", "stopped"], at: datetime) -> Timer:
    """Stop a running clock without a verdict (task returned, ticket closed)."""
    if timer.status != "running":
        return timer
    return dataclasses.replace(timer, status=status, finished_at=at)


def reinstate(timer: Timer) -> Timer:
    """A refused return: the clock runs on as if it had never stopped."""
    if timer.status != "returned":
        return timer
    return dataclasses.replace(timer, status="running", finished_at=None)


# ---------------------------------------------------------------------------- replay from facts

# Facts about the ticket that touch every clock of every task of it.
TICKET_WIDE_FACTS = frozenset({"consultation-opened", "consultation-closed", "closed"})


def apply_fact(timer: Timer, fact: LedgerFact, calendar: WorkCalendar) -> Timer:
    """One fact's effect on one clock (see the module docstring for what stops which clock)."""
    match fact.kind:
        case "signed-for" | "extension-requested" if timer.clock == "sign_for":
            return finish(timer, fact.at, calendar)
        case "progress":
            if timer.clock in ("sign_for", "response"):
                return finish(timer, fact.at, calendar)
            return pause(timer, "resident", fact.at) if fact.waiting else resume(timer, "resident", fact.at)
        case "extension-decided" if timer.clock == "resolution" and fact.detail.get("approved"):
            return extend(timer, int(fact.detail["amount"]), fact.detail["unit"])
        case "completed":
            return finish(timer, fact.at, calendar)
        case "returned":
            return set_aside(timer, "returned", fact.at)
        case "return-rejected":
            return reinstate(timer)
        case "consultation-opened":
            return pause(timer, "consultation", fact.at)
        case "consultation-closed":
            return resume(timer, "consultation", fact.at)
        case "closed":
            return set_aside(timer, "stopped", fact.at)
    return timer


def replay(timer: Timer, facts: Iterable[LedgerFact], calendar: WorkCalendar) -> Timer:
    """The clock rebuilt from its assignment and every fact known about its task and ticket, in time order,
    keeping what it already fired. A service reading several topics sees a ticket's events in no reliable
    order (a sign-for may arrive before its assignment); folding by event time makes the order of arrival
    irrelevant."""
    clock = dataclasses.replace(timer, pauses=(), extensions=(), pause_reasons=frozenset(), status="running",
                                finished_at=None, on_time=None)
    for fact in sorted(facts, key=lambda f: f.at):
        if fact.kind in TICKET_WIDE_FACTS or (fact.task_id == timer.task_id and _from_its_unit(fact, timer)):
            clock = apply_fact(clock, fact, calendar)
    return clock


def _from_its_unit(fact: LedgerFact, timer: Timer) -> bool:
    """A unit's report moves the clocks of its own task only (`domain.reports`): one read before the assignment
    could not be refused when it came, and is left out here, however it is dated."""
    return fact.kind not in REPORT_KINDS or fact.unit is None or may_report(timer.unit, fact.unit)


# ---------------------------------------------------------------------------- firing


@dataclass(frozen=True)
class Firing:
    """Something a timer fires: a reminder, its breach, or one escalation."""

    kind: FiringKind
    timer: Timer
    deadline: datetime
    fraction: float | None = None
    rung: int | None = None
    from_level: str | None = None
    to_level: str | None = None

    @property
    def key(self) -> str:
        """Identifies the firing within its task: the same key is the same event, however often computed.
        An escalation belongs to the task, not to the clock that drove it: a level is told once."""
        if self.kind == "escalation":
            return f"task|escalation|{self.rung}"
        return f"{self.timer.clock}|{self.kind}|{self.fraction if self.kind == 'reminder' else ''}"


def _window(timer: Timer, policy: SlaPolicy) -> tuple[int, SlaUnit]:
    return policy.escalation_window or (timer.limit, timer.limit_unit)


def escalation_due(timer: Timer, rung: int, calendar: WorkCalendar, policy: SlaPolicy) -> datetime:
    """After which instant escalation number `rung` fires: the breached deadline for the first, then one
    window more for each further rung."""
    assert timer.breach_deadline is not None, "only a breached clock escalates"
    amount, unit = _window(timer, policy)
    due = timer.breach_deadline
    for _ in range(rung - 1):
        due = calendar.add(due, amount, unit)
    return due


def fire_due(timer: Timer, now: datetime, calendar: WorkCalendar, policy: SlaPolicy) -> tuple[Timer, list[Firing]]:
    """What `timer` fires at `now`, in order, and the timer with those firings marked."""
    if timer.status != "running" or timer.paused:
        return timer, []
    clock = timer.sla_clock(calendar)
    deadline = clock.deadline_at(now)
    used = clock.fraction_elapsed(now)
    firings: list[Firing] = []
    newly_fired = [f for f in policy.reminder_fractions if f not in timer.fired and used >= f]
    firings += [Firing("reminder", timer, deadline, fraction=f) for f in newly_fired]
    timer = dataclasses.replace(timer, fired=tuple(sorted({*timer.fired, *newly_fired})))
    if timer.breach_deadline is None and now > deadline:
        timer = dataclasses.replace(timer, breach_deadline=deadline)
        firings.append(Firing("breach", timer, deadline))
    while (timer.breach_deadline is not None and timer.rung < policy.rungs_above(timer.level)
           and now > escalation_due(timer, timer.rung + 1, calendar, policy)):
        rung = timer.rung + 1
        from_level, to_level = policy.rung_levels(timer.level, rung)
        breached_at = timer.breach_deadline
        timer = dataclasses.replace(timer, rung=rung)
        firings.append(Firing("escalation", timer, breached_at, rung=rung,
                              from_level=from_level, to_level=to_level))
    return timer, firings


def task_escalations(task_rung: int, firings: Sequence[Firing]) -> tuple[int, list[Firing]]:
    """Keep the firings that are news for the task: every reminder and breach, and an escalation only when it
    takes the task to a rung it has not reached yet. The fastest clock sets the pace; no level is told twice
    (a silent unit misses sign-for and response together, and that is one escalation, not two)."""
    kept = []
    for firing in firings:
        if firing.kind == "escalation":
            if firing.rung is None or firing.rung <= task_rung:
                continue
            task_rung = firing.rung
        kept.append(firing)
    return task_rung, kept


def instant_of_fraction(clock: SlaClock, fraction: float, calendar: WorkCalendar) -> datetime | None:
    """When `fraction` of the allowed time is used up if the clock runs on from now (None while paused)."""
    deadline = clock.deadline
    if deadline is None:
        return None
    budget = calendar.elapsed_between(clock.started_at, clock.nominal_deadline, clock.unit)
    credited = calendar.elapsed_between(clock.started_at, deadline, clock.unit) - budget
    return calendar.shift(clock.started_at, budget * fraction + credited, clock.unit)


def next_due_at(timer: Timer, calendar: WorkCalendar, policy: SlaPolicy) -> datetime | None:
    """The earliest instant at which `timer` may fire next, so a sweep only looks at timers that are due;
    None when it cannot fire until an event changes it (paused, finished, at the top of the ladder)."""
    if timer.status != "running" or timer.paused:
        return None
    clock = timer.sla_clock(calendar)
    candidates = [instant_of_fraction(clock, f, calendar) for f in policy.reminder_fractions if f not in timer.fired]
    if timer.breach_deadline is None:
        candidates.append(clock.deadline)
    elif timer.rung < policy.rungs_above(timer.level):
        candidates.append(escalation_due(timer, timer.rung + 1, calendar, policy))
    known = [c for c in candidates if c is not None]
    return min(known) if known else None


# ---------------------------------------------------------------------------- who supervises


def supervisor_for(catalogue: Catalogue | None, unit_id: str, location: Any, level: str | None,
                   top_supervisor: str) -> str | None:
    """The unit that supervises a task of `unit_id` at `level`: the office of the area at that level above the
    unit's own area (for an area unit), else above the ticket's location; at the top, the city's supervisor.
    None when the catalogue is unknown or the location names no area at that level."""
    if level == TOP_LEVEL:
        return top_supervisor
    if catalogue is None:
        return None
    for area in _areas_above(catalogue, unit_id, location):
        if area.level == level:
            return next((u.id for u in catalogue.units if u.area == area.id), area.id)
    return None


def _areas_above(catalogue: Catalogue, unit_id: str, location: Any) -> tuple[Any, ...]:
    try:
        unit = catalogue.unit(unit_id)
    except KeyError:
        unit = None
    if unit is not None and unit.area is not None:
        return catalogue.area_chain({catalogue.area(unit.area).level: unit.area})
    return catalogue.area_chain(location)


def unit_level(catalogue: Catalogue | None, unit_id: str, ticket_level: str | None) -> str | None:
    """A unit's level: the catalogue's when it knows the unit, else the level the ticket was routed at."""
    if catalogue is not None:
        try:
            return str(catalogue.unit(unit_id).level)
        except KeyError:
            pass
    return ticket_level


# ---------------------------------------------------------------------------- ping-pong and returns index


def is_ping_pong(return_times: Iterable[datetime], at: datetime, max_returns: int, window: timedelta) -> bool:
    """Whether a ticket returned at these times has been returned more than `max_returns` times in the
    `window` ending at `at` (退单 ping-pong: nobody owns it, so arbitration must decide)."""
    return sum(1 for t in return_times if at - window < t <= at) > max_returns


@dataclass(frozen=True)
class ReturnsIndexRow:
    """A unit's returns (退单) and how many of them arbitration overruled, per hundred tickets it was given."""

    unit: str
    tickets: int
    returns: int
    overruled: int

    @property
    def per_hundred(self) -> float | None:
        return None if self.tickets == 0 else 100.0 * self.overruled / self.tickets


def genuine_returns(facts: Sequence[LedgerFact]) -> list[LedgerFact]:
    """The returns among one ticket's facts that count (for ping-pong and the returns index): of a task whose
    assignment is among the facts, by the unit it was assigned to (`domain.reports`), and not an escalation up the
    area chain (上报: no dispute over ownership). A return read before its
    assignment counts once the assignment is read; one by another unit, or on a task never assigned, never does."""
    assigned = {f.task_id: f.unit for f in facts if f.kind == "assigned" and f.unit}
    return [f for f in facts if f.kind == "returned" and f.task_id in assigned and f.unit is not None
            and may_report(assigned[f.task_id], f.unit) and "escalate_to" not in f.detail]


def return_verdicts(facts: Sequence[LedgerFact]) -> list[tuple[str, bool]]:
    """(unit, overruled) for every return that counts (`genuine_returns`) in one ticket's facts. A return is
    overruled when arbitration later gave the ticket back to that unit: its return of a final assignment was
    refused, or a supervisor decided it leads or co-handles after all."""
    verdicts = []
    for ret in genuine_returns(facts):
        overruled = any(
            later.at >= ret.at and (
                (later.kind == "return-rejected" and later.task_id == ret.task_id and later.unit == ret.unit)
                or (later.kind == "consultation-closed" and ret.unit in later.detail.get("units", ())))
            for later in facts)
        verdicts.append((ret.unit or "?", overruled))
    return verdicts


def returns_index(returns: Iterable[tuple[str, bool]], tickets_per_unit: Mapping[str, int]) -> list[ReturnsIndexRow]:
    """The returns index from (unit, overruled) pairs, one per return, and the tickets each unit was given;
    highest index first (a return the arbitration upheld is a fair one and costs nothing)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for unit, overruled in returns:
        counts[unit][0] += 1
        counts[unit][1] += int(overruled)
    units = set(counts) | set(tickets_per_unit)
    rows = [ReturnsIndexRow(u, tickets_per_unit.get(u, 0), counts[u][0], counts[u][1]) for u in units]
    return sorted(rows, key=lambda r: (-(r.per_hundred or 0.0), -r.returns, r.unit))


# ---------------------------------------------------------------------------- on-time rates


@dataclass(frozen=True)
class ClockRate:
    """How many clocks of one kind were judged (stopped, or overdue while running), and how many on time."""

    finished: int
    on_time: int

    @property
    def rate(self) -> float | None:
        return rate(self.on_time, self.finished)


@dataclass(frozen=True)
class UnitRates:
    """A unit's on-time rates, one per clock, on its own time only (consultation and resident pauses excluded,
    approved extensions granted)."""

    unit: str
    clocks: Mapping[str, ClockRate]
    running: int
    breached: int
    small_sample: bool


def clock_verdict(timer: Timer) -> RateCounts:
    """A clock's contribution to its on-time rate, by the rule of `domain.rates` (for the sign-for clock
    that rule is the response rate): a clock is judged once it stopped, or once its deadline passed while
    it still runs (late, whatever comes next); returned and stopped clocks have no verdict."""
    done = timer.status == "done"
    breached = (not timer.on_time) if done else (timer.status == "running" and timer.breach_deadline is not None)
    return response_counts(signed_for=done, sign_for_breached=breached)


def unit_rates(timers: Sequence[Timer], min_sample: int) -> list[UnitRates]:
    """On-time rates per unit and clock (see `clock_verdict`)."""
    by_unit: dict[str, list[Timer]] = defaultdict(list)
    for timer in timers:
        by_unit[timer.unit].append(timer)
    out = []
    for unit, own in sorted(by_unit.items()):
        clocks: dict[str, ClockRate] = {}
        for name in CLOCKS:
            verdicts = [clock_verdict(t) for t in own if t.clock == name]
            clocks[name] = ClockRate(sum(v.response_n for v in verdicts), sum(v.responded for v in verdicts))
        out.append(UnitRates(
            unit=unit, clocks=clocks,
            running=sum(1 for t in own if t.clock == "resolution" and t.status == "running"),
            breached=sum(1 for t in own if t.breach_deadline is not None),
            small_sample=clocks["resolution"].finished < min_sample,
        ))
    return out
