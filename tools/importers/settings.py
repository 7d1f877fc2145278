"""Settings of the importers (env: CITYOPS_IMPORTERS_*, then CITYOPS_*)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import REPO_ROOT, ServiceSettings


class ImporterSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CITYOPS_IMPORTERS_", extra="ignore")

    service_name: ClassVar[str] = "importers"

    topic_prefix: str = Field(default="", description="Prefix before every topic name (a test namespace); empty in production.")
    data_dir: Path = Field(default=REPO_ROOT / "data", description="Where the NYC and Baltimore samples live (the repository's data/).")
    chunk: int = Field(default=5000, ge=1, description="Records sent before their acknowledgements are awaited together.")
    keep_record_time: bool = Field(default=True, description="Stamp each record with the row's creation time (only on topics that keep records for ever).")

    def topic(self, name: str) -> str:
        return self.topic_prefix + name

    @property
    def nyc_csv(self) -> Path:
        return self.data_dir / "nyc311" / "nyc311_2026_subset.csv"

    @property
    def baltimore_csv(self) -> Path:
        return self.data_dir / "baltimore311" / "311_sample.csv"
