"""Settings of the SLA service (env: CITYOPS_SLA_<FIELD>, falling back to CITYOPS_<FIELD>)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from contracts.events import Level
from services.common.settings import CalendarServiceSettings

DEFAULT_LADDER: tuple[Level, ...] = (Level.grid, Level.community, Level.street, Level.district, Level.city)


class SlaSettings(CalendarServiceSettings):
    """Timers (sign-for, first response, resolution), reminders (催办), escalation (督办), the ledger of
    whose clock was running, and the ping-pong (退单) detector."""

    model_config = SettingsConfigDict(env_prefix="CITYOPS_SLA_", extra="ignore")
    service_name: ClassVar[str] = "sla"
    read_side: ClassVar[bool] = True

    reminder_fractions: tuple[float, ...] = Field(
        default=(0.5, 0.8), description="Shares of a limit at which the unit is reminded (催办), e.g. [0.5, 0.8].")
    ladder: tuple[Level, ...] = Field(
        default=DEFAULT_LADDER, description="Escalation ladder (督办), lowest level first; a breach climbs one rung.")
    top_supervisor: str = Field(
        default="hotline", description="Unit that supervises at the top of the ladder (the city's 12345 / 督办 office).")
    escalation_window: str | None = Field(
        default=None, description="Time each escalated level gets before the next rung, '<n><wd|wh|h|m>'; "
                                  "default: the breached clock's own limit again.")
    tick_s: float = Field(default=5.0, gt=0, description="Seconds between two timer sweeps.")
    tick_batch: int = Field(default=200, ge=1, description="Most timers one sweep fires: keeps each sweep transaction short, so it never holds up the consumer for long.")
    pingpong_max_returns: int = Field(
        default=2, ge=1, description="A ticket returned MORE than this many times within the window goes to arbitration.")
    pingpong_window: timedelta = Field(
        default=timedelta(days=10), description="Window of the ping-pong detector (ISO 8601 duration or seconds).")
    arbitration_unit: str = Field(
        default="hotline", description="Unit that arbitrates disputed ownership (派单争议裁定): the 12345 centre.")
    min_sample: int = Field(default=20, ge=1, description="Rates over fewer finished tasks than this are flagged as too small to rank.")
    clock_file: Path | None = Field(
        default=None, description="Drills and tests only: read 'now' (ISO 8601) from this file instead of the system clock.")

    @field_validator("reminder_fractions")
    @classmethod
    def _fractions_in_range(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < f < 1 for f in value):
            raise ValueError(f"reminder fractions must lie strictly between 0 and 1, got {value}")
        return tuple(sorted(set(value)))

    @field_validator("ladder")
    @classmethod
    def _ladder_not_empty(cls, value: tuple[Level, ...]) -> tuple[Level, ...]:
        if not value or len(set(value)) != len(value):
            raise ValueError(f"the ladder needs at least one level and no repeats, got {value}")
        return value
