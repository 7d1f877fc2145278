from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class DiscoverSettings(ServiceSettings):
    """Registration, repeat detection (并单) and proactive rules."""

    model_config = SettingsConfigDict(env_prefix="CITYOPS_DISCOVER_", extra="ignore")
    service_name: ClassVar[str] = "discover"

    merge_window_hours: float = Field(default=72.0, gt=0, description="A repeat must arrive within this many hours of the master.")
    merge_similarity: float = Field(default=0.55, gt=0, le=1, description="Text similarity (0-1) above which two complaints are the same problem.")
    merge_radius_m: float = Field(default=150.0, gt=0, description="Two coordinates closer than this are the same place.")
    pseudonym_key: str | None = Field(
        default=None, description="Only for intake records written before intake sealed callers (they carry the clear phone): "
        "the pseudonym's secret (hub-wide CITYOPS_PSEUDONYM_KEY); unset, such callers get a masked phone and no pseudonym.")
