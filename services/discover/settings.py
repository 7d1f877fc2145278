from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class DiscoverSettings(ServiceSettings):
    """Registration, repeat detection (并单) and proactive rules."""

    model_config = SettingsConfigDict(env_prefix="CITYOPS_DISCOVER_", extra="ignore")
    service_name: ClassVar[str] = "discover"

    merge_window_hours: float = Field(default=72.0, gt=0, description="A repeat must arrive within this many hours of the master.")
    merge_similarity: float = Field(default=0.55, gt=0, le=1, description="Text similarity (0-1, domain.repeats) from which two complaints "
                                    "at one place are the same problem when a category is unknown (measured: `cityops discover repeats`).")
    merge_similarity_same_category: float = Field(default=0.2, ge=0, le=1, description="The same when both complaints are of one "
                                                  "category (an operator's, triage's or the classifier's confident guess).")
    merge_radius_m: float = Field(default=150.0, gt=0, description="Two coordinates closer than this are the same place.")
    # The default model is overconfident on real text (ECE 0.28 on NYC 311), and a wrong guess shared by two complaints
    # lowers their text bar to merge_similarity_same_category: only a near-certain guess may gate. Chosen on half the
    # labelled scenarios (`cityops discover repeats`, docs/repeats.md); 0.35 on the calibrated model merged 528 wrong pairs.
    guess_min_confidence: float = Field(default=0.98, ge=0, le=1, description="A complaint with no category yet gets the classifier's "
                                        "guess when at least this sure; two different categories are never merged.")
    model_path: Path | None = Field(default=None, description="Classifier for the category guess (cityops triage train); default: the "
                                    "catalogue-trained one triage uses, cached in the state dir.")
    pseudonym_key: str | None = Field(
        default=None, description="Only for intake records written before intake sealed callers (they carry the clear phone): "
        "the pseudonym's secret (hub-wide CITYOPS_PSEUDONYM_KEY); unset, such callers get a masked phone and no pseudonym.")
    proactive_scan_at: time = Field(default=time(6, 0), description="When (local time, proactive_timezone) the daily scan of "
                                    "residents' base data runs the proactive rules.")
    proactive_timezone: str = Field(default="Asia/Shanghai", description="The city's time zone, for the daily scan.")
    proactive_tick_s: float = Field(default=60.0, gt=0, description="How often discover checks whether the daily scan is due.")
