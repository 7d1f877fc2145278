from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class UnitSettings(ServiceSettings):
    """A unit's service: which units it answers for and, when simulated, how they behave."""

    model_config = SettingsConfigDict(env_prefix="CITYOPS_UNIT_", extra="ignore")
    service_name: ClassVar[str] = "units"

    units: list[str] = Field(default_factory=list, description="Unit ids this process answers for; empty = every unit in the catalogue.")
    seed: int = Field(default=12345, description="Seed of the simulated behaviour (same seed, same choices).")
    sign_delay_s: float = Field(default=0.3, ge=0, description="Simulated time before signing for a task.")
    work_delay_s: float = Field(default=1.0, ge=0, description="Simulated time spent handling a task.")
    p_return: float = Field(default=0.05, ge=0, le=1, description="Probability a lead unit returns a task as not its own.")
    p_on_the_spot: float = Field(default=0.5, ge=0, le=1, description="Share of a grid's own small matters (grid-led, not "
                                 "proactive, no agreed plan) its simulated worker resolves on the spot.")
    p_escalate: float = Field(default=0.1, ge=0, le=1, description="Share of those its simulated worker escalates to the "
                              "community instead (most with reason help-requested).")
    p_extension: float = Field(default=0.05, ge=0, le=1, description="Probability a unit asks for an extension.")
    p_disagree: float = Field(default=0.2, ge=0, le=1, description="Probability a party refuses a consultation plan.")
    callbacks: bool = Field(default=False, description="Also simulate the hotline's callback operators.")
    p_satisfied: float = Field(default=0.85, ge=0, le=1, description="Probability a called-back resident is satisfied.")
    supervisor: bool = Field(default=False, description="Also simulate a supervisor deciding disputed consultations.")
    hotline_url: str = Field(default="http://127.0.0.1:8080", description="Base URL of intake's HTTP API, where the simulated "
                             "callback operators and supervisor post their decisions (intake is their one writer).")
    hotline_token: SecretStr | None = Field(default=None, description="Bearer token (role operator) the simulated callback "
                                            "operators post with; `cityops up` mints one.")
    supervisor_token: SecretStr | None = Field(default=None, description="Bearer token (role supervisor) the simulated "
                                               "supervisor posts decisions with; `cityops up` mints one.")
    tick_s: float = Field(default=0.2, gt=0, description="How often due simulated actions are sent.")
