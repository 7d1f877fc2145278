from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import CalendarServiceSettings


class BridgeSettings(CalendarServiceSettings):
    """The unit HTTP bridge: its HTTP door, the units whose tasks it follows, the calendar of their deadlines."""

    model_config = SettingsConfigDict(env_prefix="CITYOPS_BRIDGE_", extra="ignore")
    service_name: ClassVar[str] = "bridge"

    http_host: str = Field(default="127.0.0.1", description="Address the bridge's HTTP API listens on.")
    http_port: int = Field(default=8081, description="Port the bridge's HTTP API listens on.")
    units: list[str] = Field(default_factory=list, description="Unit ids whose task topics it follows; empty = every unit "
                             "in the catalogue.")
    publish_timeout_s: float = Field(default=5.0, gt=0, description="How long a report waits for the broker before "
                                     "answering 503 with Retry-After.")
