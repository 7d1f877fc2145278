from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import CalendarServiceSettings


class ConsultSettings(CalendarServiceSettings):
    """Consultation (协商): convene the parties, collect opinions, agree a plan or ask a supervisor."""

    model_config = SettingsConfigDict(env_prefix="CITYOPS_CONSULT_", extra="ignore")
    service_name: ClassVar[str] = "consult"

    opinion_window_s: float = Field(default=4 * 3600, gt=0, description="How long parties have to answer before a supervisor decides.")
    tick_s: float = Field(default=1.0, gt=0, description="How often overdue consultations are checked.")
