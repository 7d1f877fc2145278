from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    """The hotline's intake: HTTP API, Open311 edge, machine-channel consumer."""

    model_config = SettingsConfigDict(env_prefix="CITYOPS_INTAKE_", extra="ignore")
    service_name: ClassVar[str] = "intake"

    http_host: str = Field(default="127.0.0.1", description="Address the HTTP API listens on.")
    http_port: int = Field(default=8080, description="Port the HTTP API listens on.")
    catalogue_path: Path | None = Field(default=None, description="Responsibility catalogue YAML; default the packaged v1.")
    publish_timeout_s: float = Field(default=10.0, description="How long a submit waits for the broker before answering 503.")
