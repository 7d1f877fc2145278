"""Residents' base data (the city's population register, 人口基础信息): the input of the proactive rules'
daily scan. The key of every record is the resident's id (an alert's or a scan's own id)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field

from ..envelope import Event


class ResidentBaseRecorded(Event):
    """A resident's base record as the register holds it today (the latest per resident wins: compacted)."""

    event_type = "cityops.residents.base.recorded.v1"

    resident_id: str = Field(min_length=1, max_length=64,
                             description="The register's id of the resident (not the ID card number).")
    display_name: str = Field(max_length=32, description="Surname and 某 (张某): the full name is never kept.")
    birth_date: date = Field(description="Date of birth.")
    sex: Literal["M", "F"] = Field(description="Sex as registered.")
    household_id: str | None = Field(default=None, description="The household (户) the resident belongs to.")
    house_id: str = Field(description="The house (房屋) the resident lives in.")
    address: str = Field(default="", max_length=200, description="The house's address, for the grid worker's visit.")
    grid_id: str = Field(description="The grid the house is in: proactive tasks go to its grid worker.")
    disability_kind: str | None = Field(default=None, description="Registered disability kind, if any.")
    disability_grade: int | None = Field(default=None, ge=1, le=4, description="Disability grade 1-4 (1 the most severe).")
    subsistence_since: date | None = Field(default=None, description="Receives the subsistence allowance (低保) since.")
    subsistence_recert_due: date | None = Field(default=None, description="When the allowance is due for recertification.")
    unemployed_since: date | None = Field(default=None, description="Unemployed since (none: not unemployed).")
    unemployment_registered: bool = Field(default=False, description="Registered as unemployed at the employment office.")
    lives_alone: bool = Field(default=False, description="Lives alone (独居).")
    household_registered: bool = Field(
        default=True, description="Has a household registration (落户); false for a newborn not yet registered.")
    medical_insured: bool = Field(default=True, description="Enrolled in medical insurance.")


class WeatherAlertIssued(Event):
    """A heat or cold wave warning from the weather service: the elderly living alone get a visit."""

    event_type = "cityops.residents.weather-alert.issued.v1"

    alert_id: str = Field(min_length=1, max_length=64, description="The weather service's id of the alert.")
    kind: Literal["heat-wave", "cold-wave"] = Field(description="What is coming.")
    starts: date = Field(description="First day of the wave.")
    ends: date = Field(description="Last day of the wave.")
    grids: tuple[str, ...] | None = Field(default=None, description="The grids it covers; none: the whole city.")


class ProactiveScanRequested(Event):
    """Run the proactive rules over every resident for `day` (the daily schedule, or an operator's `--now`)."""

    event_type = "cityops.residents.scan.requested.v1"

    day: date = Field(description="The day the rules are evaluated for (lead times count from it).")
