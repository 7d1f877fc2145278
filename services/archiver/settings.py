"""Settings of the archiver (env: CITYOPS_ARCHIVER_*, then CITYOPS_*)."""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class ArchiverSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CITYOPS_ARCHIVER_", extra="ignore")

    service_name: ClassVar[str] = "archiver"
    read_side: ClassVar[bool] = True

    topic_prefix: str = Field(default="", description="Prefix before every topic name (a test namespace); empty in production.")
    # The machine channel (plain JSON with callers' names and phones, kept one day) and its DLQ are left out:
    # an archived copy would outlive an erasure (docs/privacy.md).
    topic_regex: str = Field(default=r"cityops\.(?!intake\.channel\.v1(?:\.dlq)?$).+",
                             description="Topics to archive (after the prefix): by default every cityops topic, unit topics and DLQs "
                                         "included, except the machine channel and its DLQ (plain personal data).")
    metadata_max_age_ms: int = Field(default=30_000, ge=1000, description="How soon a newly created topic (a new unit) is noticed.")

    def pattern(self) -> str:
        return "^" + re.escape(self.topic_prefix) + self.topic_regex + "$"
