from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class ActSettings(ServiceSettings):
    """Dispatch (派单) and the handling loop with units (联动实施)."""

    model_config = SettingsConfigDict(env_prefix="CITYOPS_ACT_", extra="ignore")
    service_name: ClassVar[str] = "act"

    max_extensions: int = Field(default=1, ge=0, description="Extensions a task may be granted.")
