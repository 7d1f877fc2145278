"""China's public-holiday calendar as data: the models of `cn.yaml` and the loader.

Almost every 12345 time limit counts working days, and in China a working day is not simply Monday to
Friday: the State Council publishes every November which days are off next year and which weekend days
become working days (调休上班). This package holds that schedule as frozen, validated data. A city can
add its own local days off or extra workdays in a YAML file of the same shape; `load_calendar` merges
such files on top of the national one, the last file winning for any date it mentions.

Only data and its validation live here; the arithmetic (deadlines, working hours, paused clocks) is
in `domain.calendar.workcalendar`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "DEFAULT_CALENDAR_PATH",
    "Arrangement",
    "CalendarFile",
    "DateRange",
    "DayKind",
    "HolidayCalendar",
    "YearSchedule",
    "load_calendar",
]

DEFAULT_CALENDAR_PATH = Path(__file__).with_name("cn.yaml")

DayKind = Literal["off", "work"]
"""How a listed date deviates from the normal week: "off" (a day off) or "work" (a working day)."""

_SATURDAY, _SUNDAY = 5, 6
# A New Year holiday can start in the last days of December of the year before (2024's started on
# 30 Dec 2023), so a year's dates may stray a little outside it; more than a month is a typo.
_YEAR_SLACK = timedelta(days=31)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DateRange(_Frozen):
    """An inclusive range of calendar dates."""

    first: date = Field(description="First day of the range (inclusive).")
    last: date = Field(description="Last day of the range (inclusive).")

    @model_validator(mode="after")
    def _first_not_after_last(self) -> DateRange:
        if self.first > self.last:
            raise ValueError(f"date range starts {self.first} after it ends {self.last}")
        return self

    def days(self) -> tuple[date, ...]:
        """Every date in the range, in order."""
        count = (self.last - self.first).days + 1
        return tuple(self.first + timedelta(days=offset) for offset in range(count))


class Arrangement(_Frozen):
    """One item of a holiday notice (a festival with its days off and make-up workdays), or a local
    addition (a city's own day off, or an extra working day)."""

    name: str = Field(min_length=1, description="Name as in the notice, e.g. 春节.")
    name_en: str | None = Field(default=None, description="English name, for logs and open data.")
    days_off: DateRange | None = Field(
        default=None, description="Days with no work (放假), weekends inside the range included."
    )
    workdays: tuple[date, ...] = Field(
        default=(), description="Saturdays or Sundays that are working days (调休上班)."
    )

    @model_validator(mode="after")
    def _says_something(self) -> Arrangement:
        if self.days_off is None and not self.workdays:
            raise ValueError(f"arrangement {self.name!r} lists neither days off nor workdays")
        return self

    @model_validator(mode="after")
    def _workdays_fall_on_weekends(self) -> Arrangement:
        # A weekday is a working day anyway, so listing one is a transcription error, never a rule.
        weekdays = [day for day in self.workdays if day.weekday() not in (_SATURDAY, _SUNDAY)]
        if weekdays:
            raise ValueError(f"arrangement {self.name!r}: workdays must be Saturdays or Sundays, got {weekdays}")
        return self

    @model_validator(mode="after")
    def _workdays_outside_days_off(self) -> Arrangement:
        clashes = sorted(set(self.workdays) & set(self.off_days()))
        if clashes:
            raise ValueError(f"arrangement {self.name!r}: {clashes} are both days off and workdays")
        return self

    def off_days(self) -> tuple[date, ...]:
        """The days off of this arrangement (empty when it only adds workdays)."""
        return self.days_off.days() if self.days_off else ()


class YearSchedule(_Frozen):
    """One year's schedule, as published in one notice."""

    year: int = Field(ge=1949, le=2200, description="The calendar year the notice is for.")
    status: Literal["official", "provisional"] = Field(
        default="official",
        description="official: transcribed from the published notice; provisional: derived from the "
        "usual rules before the notice was published, to be replaced.",
    )
    notice: str = Field(min_length=1, description="Title of the source notice (the provenance).")
    document_number: str | None = Field(default=None, description="The notice's document number, if known.")
    source_url: str | None = Field(default=None, description="Where the notice is published, if known.")
    note: str | None = Field(default=None, description="Anything a reader of the data should know.")
    arrangements: tuple[Arrangement, ...] = Field(description="The notice's items, one per festival.")

    @model_validator(mode="after")
    def _dates_belong_to_the_year(self) -> YearSchedule:
        earliest = date(self.year, 1, 1) - _YEAR_SLACK
        latest = date(self.year, 12, 31) + _YEAR_SLACK
        strays = sorted(day for day in self._all_dates() if not earliest <= day <= latest)
        if strays:
            raise ValueError(f"year {self.year}: dates {strays} are far outside the year (typo?)")
        return self

    @model_validator(mode="after")
    def _no_date_both_off_and_work(self) -> YearSchedule:
        off = {day for item in self.arrangements for day in item.off_days()}
        work = {day for item in self.arrangements for day in item.workdays}
        clashes = sorted(off & work)
        if clashes:
            raise ValueError(f"year {self.year}: {clashes} are both days off and workdays")
        return self

    def _all_dates(self) -> Iterable[date]:
        for item in self.arrangements:
            yield from item.off_days()
            yield from item.workdays

    def day_kinds(self) -> dict[date, DayKind]:
        """Every date this year's notice moves away from the normal week."""
        kinds: dict[date, DayKind] = {}
        for item in self.arrangements:
            kinds.update(dict.fromkeys(item.off_days(), "off"))
            kinds.update(dict.fromkeys(item.workdays, "work"))
        return kinds


class CalendarFile(_Frozen):
    """The content of one calendar YAML file: the national schedule or a city's override."""

    name: str = Field(min_length=1, description="Who publishes this schedule (the State Council, a city).")
    years: tuple[YearSchedule, ...] = Field(description="One entry per year.")

    @model_validator(mode="after")
    def _one_entry_per_year(self) -> CalendarFile:
        years = [schedule.year for schedule in self.years]
        repeated = sorted({year for year in years if years.count(year) > 1})
        if repeated:
            raise ValueError(f"{self.name}: years {repeated} appear more than once")
        return self

    def day_kinds(self) -> dict[date, DayKind]:
        """Every date this file moves away from the normal week."""
        kinds: dict[date, DayKind] = {}
        for schedule in self.years:
            kinds.update(schedule.day_kinds())
        return kinds


class HolidayCalendar(_Frozen):
    """The national schedule with the city's overrides on top (later files win for a date they list)."""

    base: CalendarFile = Field(description="The national schedule; it alone decides which years are covered.")
    overrides: tuple[CalendarFile, ...] = Field(default=(), description="Local files, applied in order.")

    @property
    def covered_years(self) -> frozenset[int]:
        """Years whose national schedule is known. A city's override for a later year does not make
        that year's national schedule known, so only the base counts."""
        return frozenset(schedule.year for schedule in self.base.years)

    @property
    def provisional_years(self) -> frozenset[int]:
        """Covered years whose schedule is a derived guess, not the published notice."""
        return frozenset(s.year for s in self.base.years if s.status == "provisional")

    def day_kinds(self) -> Mapping[date, DayKind]:
        """Every date that is not a normal Monday–Friday working day / weekend day off."""
        kinds = self.base.day_kinds()
        for override in self.overrides:
            kinds.update(override.day_kinds())
        return kinds


def _read_calendar_file(path: Path) -> CalendarFile:
    # safe_load turns ISO dates into datetime.date, which is what the models expect.
    with Path(path).open(encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    try:
        return CalendarFile.model_validate(raw)
    except ValueError as error:
        raise ValueError(f"invalid calendar file {path}: {error}") from error


def load_calendar(path: Path | str | None = None, overrides: Iterable[Path | str] = ()) -> HolidayCalendar:
    """Load the national holiday schedule (`cn.yaml` beside this module unless `path` is given) and
    merge each override file on top of it, in order."""
    base = _read_calendar_file(Path(path) if path is not None else DEFAULT_CALENDAR_PATH)
    local = tuple(_read_calendar_file(Path(item)) for item in overrides)
    return HolidayCalendar(base=base, overrides=local)
