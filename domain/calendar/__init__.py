"""The working-day calendar: China's public holidays as data (`holidays`, `cn.yaml`) and the arithmetic of
12345 time limits on it (`workcalendar`: deadlines in working days and hours, the pausable SLA clock).

Every service that computes a deadline builds its `WorkCalendar` with `calendar_from_settings` from the
same hub-wide settings, so sla's clocks and the projections' nominal deadlines agree.
"""

from __future__ import annotations

from .holidays import (
    DEFAULT_CALENDAR_PATH,
    Arrangement,
    CalendarFile,
    DateRange,
    DayKind,
    HolidayCalendar,
    YearSchedule,
    load_calendar,
)
from .settings import DEFAULT_WORKING_HOURS_TEXT, CalendarSettings, calendar_for
from .workcalendar import (
    DEFAULT_TIMEZONE,
    DEFAULT_WORKING_HOURS,
    CalendarCoverageError,
    ClockStateError,
    Extension,
    NaiveDatetimeError,
    Pause,
    SlaClock,
    SlaUnit,
    WorkCalendar,
    WorkingPeriod,
    parse_working_hours,
)

__all__ = [
    "DEFAULT_CALENDAR_PATH",
    "DEFAULT_TIMEZONE",
    "DEFAULT_WORKING_HOURS",
    "DEFAULT_WORKING_HOURS_TEXT",
    "Arrangement",
    "CalendarCoverageError",
    "CalendarFile",
    "CalendarSettings",
    "ClockStateError",
    "DateRange",
    "DayKind",
    "Extension",
    "HolidayCalendar",
    "NaiveDatetimeError",
    "Pause",
    "SlaClock",
    "SlaUnit",
    "WorkCalendar",
    "WorkingPeriod",
    "YearSchedule",
    "calendar_for",
    "load_calendar",
    "parse_working_hours",
]
