"""Working-day arithmetic for 12345 time limits, and a pausable SLA clock. Pure: no I/O after loading.

Units of a time limit (`SlaUnit`):

- ``wd``: working days, the unit of "N个工作日内". **Rule implemented** (the civil-law way of counting a
  period, 民法典 第201条: the day on which the period starts is not counted): the deadline is the *end of
  working hours of the Nth working day after the registration date*. A ticket registered on a working day
  (at any hour, before, during or after working hours) therefore has the rest of that day plus N full
  working days; one registered on a weekend or holiday starts counting on the next working day, which is
  day 1. Make-up weekend workdays (调休上班) count as working days; holidays do not.
  ``0 wd`` means "the same working day": the end of working hours of the registration day if it is a
  working day and its working hours have not yet ended, otherwise of the next working day.
- ``wh``: working hours, counted only inside the working periods of working days. A start outside working
  hours begins counting at the next working period. A deadline that exhausts a period exactly lands on
  that period's end (12:00, not 13:30).
- ``h`` / ``m``: natural hours / minutes, counted on the real time line (nights and holidays included).

Working hours default to 09:00–12:00 and 13:30–17:30 (7 hours), the usual office hours of Chinese
government bodies, in Asia/Shanghai; both are configurable. Every datetime passed in must be
timezone-aware (a naive one is refused with `NaiveDatetimeError`); results are in the calendar's zone.

Years the national holiday data does not cover are refused (`CalendarCoverageError`) rather than silently
treated as plain Monday–Friday, because a wrong deadline is worse than a loud one; pass
``strict_coverage=False`` to accept the plain week there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Literal, get_args
from zoneinfo import ZoneInfo

from .holidays import DayKind, HolidayCalendar, load_calendar

__all__ = [
    "DEFAULT_TIMEZONE",
    "DEFAULT_WORKING_HOURS",
    "CalendarCoverageError",
    "ClockStateError",
    "Extension",
    "NaiveDatetimeError",
    "Pause",
    "SlaClock",
    "SlaUnit",
    "WorkCalendar",
    "parse_working_hours",
]

SlaUnit = Literal["wd", "wh", "h", "m"]
_UNITS: frozenset[str] = frozenset(get_args(SlaUnit))
_WORKING_TIME_UNITS = frozenset({"wd", "wh"})

WorkingPeriod = tuple[time, time]
DEFAULT_WORKING_HOURS: tuple[WorkingPeriod, ...] = ((time(9, 0), time(12, 0)), (time(13, 30), time(17, 30)))
DEFAULT_TIMEZONE = "Asia/Shanghai"

_ONE_DAY = timedelta(days=1)
_ZERO = timedelta(0)
_SATURDAY = 5


class NaiveDatetimeError(ValueError):
    """A datetime without a timezone was given: its instant is ambiguous, so no deadline can be computed."""


class CalendarCoverageError(LookupError):
    """A date lies in a year for which no national holiday schedule is loaded."""


class ClockStateError(ValueError):
    """A clock operation does not fit the clock's state (resume while running, pause in the past...)."""


def _require_aware(value: datetime, what: str) -> None:
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise NaiveDatetimeError(
            f"{what} {value.isoformat()} has no timezone; pass an aware datetime, "
            f"e.g. datetime(..., tzinfo=ZoneInfo({DEFAULT_TIMEZONE!r}))"
        )


def _require_amount(amount: int) -> None:
    # bool is an int subclass; True as "1 working day" is always a bug upstream.
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"amount must be an int, got {amount!r}")
    if amount < 0:
        raise ValueError(f"amount must not be negative, got {amount}")


def _require_unit(unit: str) -> None:
    if unit not in _UNITS:
        raise ValueError(f"unknown unit {unit!r}; expected one of {sorted(_UNITS)}")


def parse_working_hours(text: str) -> tuple[WorkingPeriod, ...]:
    """Parse settings text such as "09:00-12:00,13:30-17:30" into working periods."""
    periods = []
    for chunk in text.split(","):
        start, _, end = chunk.strip().partition("-")
        periods.append((time.fromisoformat(start.strip()), time.fromisoformat(end.strip())))
    return tuple(periods)


def _validate_working_hours(periods: tuple[WorkingPeriod, ...]) -> None:
    if not periods:
        raise ValueError("working_hours must contain at least one period")
    for start, end in periods:
        if not start < end:
            raise ValueError(f"working period {start}-{end} must end after it starts, within one day")
    for (_, previous_end), (next_start, _) in zip(periods, periods[1:], strict=False):
        if next_start < previous_end:
            raise ValueError("working periods must be in order and must not overlap")


@dataclass(frozen=True)
class WorkCalendar:
    """Which days are working days, the working hours, and deadline arithmetic on top of them."""

    holidays: HolidayCalendar
    working_hours: tuple[WorkingPeriod, ...] = DEFAULT_WORKING_HOURS
    timezone: str = DEFAULT_TIMEZONE
    strict_coverage: bool = True
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _day_kinds: Mapping[date, DayKind] = field(init=False, repr=False, compare=False)
    _covered_years: frozenset[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _validate_working_hours(self.working_hours)
        # Derived lookups are computed once; the dataclass is frozen, hence object.__setattr__.
        object.__setattr__(self, "_zone", ZoneInfo(self.timezone))
        object.__setattr__(self, "_day_kinds", MappingProxyType(dict(self.holidays.day_kinds())))
        object.__setattr__(self, "_covered_years", self.holidays.covered_years)

    @classmethod
    def load(
        cls, path: Path | str | None = None, overrides: Iterable[Path | str] = (), **options: object
    ) -> WorkCalendar:
        """Load the national schedule (plus a city's override files) and build a calendar on it."""
        return cls(load_calendar(path, overrides), **options)  # type: ignore[arg-type]  # forwarded as given: __init__'s own parameters

    # ----- days -------------------------------------------------------------------------------------

    def is_workday(self, day: date) -> bool:
        """Whether `day` is a working day: Monday–Friday unless declared off, plus make-up weekend days.
        An aware datetime is accepted and read as its date in the calendar's timezone."""
        day = self._as_local_date(day)
        self._require_covered(day)
        kind = self._day_kinds.get(day)
        if kind is not None:
            return kind == "work"
        return day.weekday() < _SATURDAY

    def next_workday(self, day: date) -> date:
        """The first working day strictly after `day`."""
        candidate = self._as_local_date(day) + _ONE_DAY
        while not self.is_workday(candidate):
            candidate += _ONE_DAY
        return candidate

    def end_of_working_day(self, day: date) -> datetime:
        """When working hours end on `day` (the end of its last working period)."""
        return datetime.combine(day, self.working_hours[-1][1], tzinfo=self._zone)

    # ----- deadlines ----------------------------------------------------------------------------------

    def add(self, start: datetime, amount: int, unit: SlaUnit) -> datetime:
        """The deadline `amount` `unit`s after `start` (see the module docstring for each unit's rule)."""
        _require_aware(start, "start")
        _require_amount(amount)
        _require_unit(unit)
        if unit == "wd":
            return self._add_working_days(start, amount)
        if unit == "wh":
            return self.add_working_time(start, timedelta(hours=amount))
        natural = timedelta(hours=amount) if unit == "h" else timedelta(minutes=amount)
        return self._add_natural_time(start, natural)

    def add_working_time(self, start: datetime, duration: timedelta) -> datetime:
        """The instant at which `duration` of working time has passed since `start`."""
        _require_aware(start, "start")
        if duration < _ZERO:
            raise ValueError(f"duration must not be negative, got {duration}")
        moment = self._local(start)
        if duration == _ZERO:
            # Nothing to count: stay put instead of jumping to the next working period, so that a
            # deadline at 17:30 shifted by a pause that cost no working time stays at 17:30.
            return moment
        remaining = duration
        for period_start, period_end in self._working_periods(moment.date()):
            if period_end <= moment:
                continue
            counted_from = max(period_start, moment)
            available = period_end - counted_from
            if remaining <= available:
                return counted_from + remaining
            remaining -= available
        raise AssertionError("unreachable: working periods never run out")  # pragma: no cover

    def working_time_between(self, start: datetime, end: datetime) -> timedelta:
        """Working time elapsed from `start` to `end` (only time inside working periods counts)."""
        _require_aware(start, "start")
        _require_aware(end, "end")
        start, end = self._local(start), self._local(end)
        if end < start:
            raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
        total = _ZERO
        for period_start, period_end in self._working_periods(start.date(), last_day=end.date()):
            overlap = min(period_end, end) - max(period_start, start)
            if overlap > _ZERO:
                total += overlap
        return total

    def elapsed_between(self, start: datetime, end: datetime, unit: SlaUnit) -> timedelta:
        """Time from `start` to `end` as a clock in `unit` measures it: working time for wd/wh,
        natural time for h/m."""
        _require_unit(unit)
        if unit in _WORKING_TIME_UNITS:
            return self.working_time_between(start, end)
        _require_aware(start, "start")
        _require_aware(end, "end")
        if end < start:
            raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
        return end - start  # aware subtraction is on the absolute time line

    def shift(self, moment: datetime, duration: timedelta, unit: SlaUnit) -> datetime:
        """Move `moment` later by `duration` as a clock in `unit` measures time."""
        _require_unit(unit)
        if unit in _WORKING_TIME_UNITS:
            return self.add_working_time(moment, duration)
        _require_aware(moment, "moment")
        if duration < _ZERO:
            raise ValueError(f"duration must not be negative, got {duration}")
        return self._add_natural_time(moment, duration)

    def deadline_after_pause(
        self, deadline: datetime, paused_at: datetime, resumed_at: datetime, unit: SlaUnit
    ) -> datetime:
        """`deadline` moved later by the time the clock stood still, measured in the clock's unit
        (so a pause over a weekend costs a working-day clock nothing)."""
        return self.shift(deadline, self.elapsed_between(paused_at, resumed_at, unit), unit)

    def start_clock(self, limit: int, unit: SlaUnit, started_at: datetime) -> SlaClock:
        """A running SLA clock on this calendar."""
        return SlaClock(limit, unit, started_at, calendar=self)

    # ----- internals ----------------------------------------------------------------------------------

    def _add_working_days(self, start: datetime, amount: int) -> datetime:
        registered = self._local(start)
        day = registered.date()
        if amount == 0:
            # "Same working day": today if today still has working hours left, else the next one.
            if self.is_workday(day) and registered <= self.end_of_working_day(day):
                return self.end_of_working_day(day)
            return self.end_of_working_day(self.next_workday(day))
        for _ in range(amount):
            day = self.next_workday(day)  # the registration day itself is never counted
        return self.end_of_working_day(day)

    def _add_natural_time(self, start: datetime, duration: timedelta) -> datetime:
        # Add on UTC: adding to a local wall clock would be wrong across a DST change in zones that
        # have one (Asia/Shanghai has none, but the zone is configurable).
        return (start.astimezone(UTC) + duration).astimezone(self._zone)

    def _working_periods(self, first_day: date, last_day: date | None = None) -> Iterator[tuple[datetime, datetime]]:
        """The working periods of working days from `first_day` on (to `last_day`, or without end),
        as aware datetimes, in order."""
        day = first_day
        while last_day is None or day <= last_day:
            if self.is_workday(day):
                for start, end in self.working_hours:
                    yield (
                        datetime.combine(day, start, tzinfo=self._zone),
                        datetime.combine(day, end, tzinfo=self._zone),
                    )
            day += _ONE_DAY

    def _local(self, moment: datetime) -> datetime:
        _require_aware(moment, "datetime")
        return moment.astimezone(self._zone)

    def _as_local_date(self, day: date) -> date:
        if isinstance(day, datetime):
            return self._local(day).date()
        return day

    def _require_covered(self, day: date) -> None:
        if self.strict_coverage and day.year not in self._covered_years:
            raise CalendarCoverageError(
                f"no national holiday schedule loaded for {day.year} (covered: {sorted(self._covered_years)}); "
                "add that year's notice to the calendar data, or use strict_coverage=False to treat it "
                "as a plain Monday–Friday week"
            )


# ----- the SLA clock ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pause:
    """A stretch during which the clock stood still (consultation, waiting on the resident)."""

    started_at: datetime
    ended_at: datetime | None = None  # None while the clock is still paused


@dataclass(frozen=True)
class Extension:
    """An approved extension (延期), added on top of the limit in its own unit."""

    amount: int
    unit: SlaUnit


@dataclass(frozen=True)
class SlaClock:
    """An immutable SLA clock: every operation returns a new clock; nothing reads the wall clock.

    deadline = `limit` `unit`s from `started_at` (per `WorkCalendar.add`), then each approved extension
    added in its own unit, then moved later by every pause, measured in the clock's own unit (working
    time for wd/wh, natural time for h/m). A pause that starts after the clock has already run out
    credits nothing: pausing cannot revive a breached ticket.
    """

    limit: int
    unit: SlaUnit
    started_at: datetime
    pauses: tuple[Pause, ...] = ()
    extensions: tuple[Extension, ...] = ()
    calendar: WorkCalendar = field(kw_only=True, repr=False)

    def __post_init__(self) -> None:
        _require_amount(self.limit)
        _require_unit(self.unit)
        _require_aware(self.started_at, "started_at")

    # ----- transitions ---------------------------------------------------------------------------------

    @property
    def is_paused(self) -> bool:
        return bool(self.pauses) and self.pauses[-1].ended_at is None

    def pause(self, at: datetime) -> SlaClock:
        """Stop the clock at `at`."""
        _require_aware(at, "pause time")
        if self.is_paused:
            raise ClockStateError(f"clock is already paused since {self.pauses[-1].started_at.isoformat()}")
        self._require_not_before_last_event(at)
        return dataclasses.replace(self, pauses=(*self.pauses, Pause(started_at=at)))

    def resume(self, at: datetime) -> SlaClock:
        """Restart a paused clock at `at`."""
        _require_aware(at, "resume time")
        if not self.is_paused:
            raise ClockStateError("clock is not paused")
        self._require_not_before_last_event(at)
        closed = dataclasses.replace(self.pauses[-1], ended_at=at)
        return dataclasses.replace(self, pauses=(*self.pauses[:-1], closed))

    def extend(self, amount: int, unit: SlaUnit) -> SlaClock:
        """Grant an approved extension of `amount` `unit`s."""
        _require_amount(amount)
        _require_unit(unit)
        return dataclasses.replace(self, extensions=(*self.extensions, Extension(amount, unit)))

    # ----- readings -------------------------------------------------------------------------------------

    @property
    def nominal_deadline(self) -> datetime:
        """The deadline from the limit and the extensions alone, before any pause."""
        deadline = self.calendar.add(self.started_at, self.limit, self.unit)
        for extension in self.extensions:
            deadline = self.calendar.add(deadline, extension.amount, extension.unit)
        return deadline

    @property
    def deadline(self) -> datetime | None:
        """The deadline; None while paused, because it depends on when the clock will resume
        (use `deadline_at(now)` for the deadline if it resumed now)."""
        if self.is_paused:
            return None
        deadline, _ = self._deadline_and_credit(now=None)
        return deadline

    def deadline_at(self, now: datetime) -> datetime:
        """The deadline as known at `now`: pauses after `now` ignored, an open pause ending at `now`."""
        _require_aware(now, "now")
        deadline, _ = self._deadline_and_credit(now)
        return deadline

    def is_breached(self, now: datetime) -> bool:
        """Whether the clock has run out at `now` (strictly after the deadline)."""
        return now > self.deadline_at(now)

    def fraction_elapsed(self, now: datetime) -> float:
        """The share of the allowed time used up at `now` (0.0 at the start, 1.0 at the deadline, more
        after it); paused time is not used up. For reminders at 50% / 80%."""
        _require_aware(now, "now")
        if now <= self.started_at:
            return 0.0
        _, credited = self._deadline_and_credit(now)
        budget = self.calendar.elapsed_between(self.started_at, self.nominal_deadline, self.unit)
        if budget <= _ZERO:
            return 1.0  # a zero limit is used up as soon as the clock starts
        spent = self.calendar.elapsed_between(self.started_at, now, self.unit) - credited
        return spent / budget

    # ----- internals -------------------------------------------------------------------------------------

    def _deadline_and_credit(self, now: datetime | None) -> tuple[datetime, timedelta]:
        """Walk the pauses in order, moving the deadline by each one that began before it; return the
        deadline and the total paused time credited. With `now`, only what had happened by `now` counts."""
        deadline = self.nominal_deadline
        credited = _ZERO
        for pause in self.pauses:
            if now is not None and pause.started_at >= now:
                break
            if pause.started_at >= deadline:
                continue  # the clock had already run out: pausing now cannot revive it
            end = self._pause_end_as_of(pause, now)
            paused = self.calendar.elapsed_between(pause.started_at, end, self.unit)
            deadline = self.calendar.shift(deadline, paused, self.unit)
            credited += paused
        return deadline, credited

    @staticmethod
    def _pause_end_as_of(pause: Pause, now: datetime | None) -> datetime:
        if now is None:
            assert pause.ended_at is not None, "an open pause has no end without `now`"
            return pause.ended_at
        if pause.ended_at is None:
            return now
        return min(pause.ended_at, now)

    def _require_not_before_last_event(self, at: datetime) -> None:
        last = self.started_at
        if self.pauses:
            latest = self.pauses[-1]
            last = latest.ended_at or latest.started_at
        if at < last:
            raise ClockStateError(f"{at.isoformat()} is before the clock's last event {last.isoformat()}")
