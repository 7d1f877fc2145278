from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import DEFAULT_PSEUDONYM_KEY, ServiceSettings, require_secret


class IntakeSettings(ServiceSettings):
    """The hotline's intake: HTTP API, Open311 edge, machine-channel consumer."""

    model_config = SettingsConfigDict(env_prefix="CITYOPS_INTAKE_", extra="ignore")
    service_name: ClassVar[str] = "intake"

    http_host: str = Field(default="127.0.0.1", description="Address the HTTP API listens on.")
    http_port: int = Field(default=8080, description="Port the HTTP API listens on.")
    publish_timeout_s: float = Field(default=5.0, gt=0, description="How long a call waits for the broker's acknowledgement "
                                     "before answering 503 with Retry-After (a broker outage must not hang the API).")
    model_path: Path | None = Field(default=None, description="Classifier model of the operators' suggestions (GET /triage/"
                                    "suggestions); default the catalogue-trained one triage caches in state_dir.")
    pseudonym_key: str = Field(
        default=DEFAULT_PSEUDONYM_KEY, description="Secret of the callers' pseudonyms and of the key store's lookup (hub-wide "
        "CITYOPS_PSEUDONYM_KEY); production refuses the default and anything under 32 characters.")

    def check_secrets(self) -> None:
        """Raise `UnsafeSettings` naming the setting when production would run on a built-in or weak secret."""
        require_secret(self, "pseudonym_key", default=DEFAULT_PSEUDONYM_KEY)
