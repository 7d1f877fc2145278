from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class TriageSettings(ServiceSettings):
    """Classification against the responsibility catalogue, routing, the manual-triage queue."""

    model_config = SettingsConfigDict(env_prefix="CITYOPS_TRIAGE_", extra="ignore")
    service_name: ClassVar[str] = "triage"

    model_path: Path | None = Field(
        default=None, description="Trained classifier (cityops triage train) that must load at start; watched and reloaded when "
                                  "`cityops triage publish` replaces it. Default: state_dir/triage.model if it is there, else "
                                  "a model trained from the catalogue, until a model is published.")
    model_check_s: float = Field(default=2.0, gt=0, description="How often (seconds, at most) the model file is checked for a newly published model.")
    # The classifier's probabilities are calibrated (temperature scaling), so 0.65 means "right about 65 % of
    # the time". Chosen with `cityops triage evaluate --csv data/teddycup2020/messages.csv --holdout 0.3` (the
    # NB-SVM model): the lowest threshold at which the tickets classified automatically are >= 90 % right
    # (measured 90.8 %, with 18.4 % sent to people); see README, Triage.
    min_confidence: float = Field(default=0.65, ge=0, le=1, description="Below this the ticket goes to the manual-triage queue.")
    consult_after_returns: int = Field(default=2, ge=1, description="From this many returns on, re-routing convenes a consultation.")

    @property
    def published_model_path(self) -> Path:
        """The file `cityops triage publish` writes and triage watches."""
        return self.model_path or self.state_dir / "triage.model"
