"""Which working-day calendar a deployment uses: one value that every service builds its calendar from.

sla's clocks, consult's agreed deadlines and the projections' nominal deadlines must count the same
working days and hours, so they all build their `WorkCalendar` with `calendar_for` from these settings
(filled from the hub-wide `CITYOPS_WORKING_HOURS`, `CITYOPS_TIMEZONE`, `CITYOPS_CALENDAR_*` by the
services' settings classes; this module reads no environment).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .workcalendar import DEFAULT_TIMEZONE, WorkCalendar, parse_working_hours

DEFAULT_WORKING_HOURS_TEXT = "09:00-12:00,13:30-17:30"


@dataclass(frozen=True)
class CalendarSettings:
    """The choices behind a working-day calendar."""

    working_hours: str = DEFAULT_WORKING_HOURS_TEXT
    """Working periods of a working day, e.g. "09:00-12:00,13:30-17:30"."""
    timezone: str = DEFAULT_TIMEZONE
    """Zone in which days and working hours are counted."""
    path: Path | None = None
    """National holiday file; None: the packaged cn.yaml."""
    overrides: tuple[Path, ...] = ()
    """The city's own holiday files, applied in order."""
    strict: bool = False
    """Refuse deadlines in years without holiday data instead of counting a plain Monday-Friday week."""


@lru_cache(maxsize=8)
def calendar_for(settings: CalendarSettings) -> WorkCalendar:
    """The calendar these settings describe (built once per distinct settings: loading is not free)."""
    return WorkCalendar.load(settings.path, settings.overrides,
                             working_hours=parse_working_hours(settings.working_hours),
                             timezone=settings.timezone, strict_coverage=settings.strict)
