from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import CalendarServiceSettings


class EvaluateSettings(CalendarServiceSettings):
    """Callback (回访), re-handling (重办), closing, and the rates units are judged on (the calendar
    settings say when a task's sign-for limit ends, for the response rate)."""

    model_config = SettingsConfigDict(env_prefix="CITYOPS_EVALUATE_", extra="ignore")
    service_name: ClassVar[str] = "evaluate"

    max_rounds: int = Field(default=3, ge=1, description="Handling rounds before an unresolved ticket is closed as unresolved.")
