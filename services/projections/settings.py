"""Settings of the projections service and of the replay tools (env: CITYOPS_PROJECTIONS_*, then CITYOPS_*)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from contracts.topics import COMMANDS, INTAKE, RESIDENTS, RESIDENTS_BASE, WORKFLOW_TOPICS, TopicSpec
from services.common.settings import CalendarServiceSettings


class ProjectionsSettings(CalendarServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CITYOPS_PROJECTIONS_", extra="ignore")

    service_name: ClassVar[str] = "projections"
    read_side: ClassVar[bool] = True

    topic_prefix: str = Field(default="", description="Prefix put before every topic name (a test or scratch namespace); empty in production.")
    archive_url: str | None = Field(default=None, description="SQLAlchemy URL of the archiver's store, for --from-archive; default the archiver's SQLite file in state_dir.")
    min_rank_sample: int = Field(default=20, ge=1, description="A unit, grid or district with fewer tasks than this is listed but not ranked.")
    rebuild_batch: int = Field(default=5000, ge=1, description="Records per transaction when rebuilding.")
    fold_batch: int = Field(default=500, ge=1, description="Tickets folded per transaction when rebuilding.")
    whatif_dir: Path | None = Field(default=None, description="Where what-if scratch stores go; default state_dir/whatif.")

    def topic(self, name: str) -> str:
        return self.topic_prefix + name

    def projected_topics(self) -> list[str]:
        """Every workflow topic that carries ticket events (not intake's topics, not unit topics, not DLQs)."""
        return [self.topic(spec.name) for spec in projected_specs()]

    def archive_store_url(self) -> str:
        return self.archive_url or f"sqlite:///{self.state_dir / 'archiver.db'}"

    def whatif_store_dir(self) -> Path:
        return self.whatif_dir or self.state_dir / "whatif"


def projected_specs() -> list[TopicSpec]:
    # Residents' life events and base records are not ticket events; the channel topic carries raw, undecoded submissions;
    # intake's commands become facts on the steps' topics (the commands themselves would count twice).
    # Intake's records carry the caller sealed: only intake, discover and the archiver read them (issue 11);
    # discover's TicketRegistered carries all a read model needs of a submission.
    excluded = (INTAKE, RESIDENTS, RESIDENTS_BASE, COMMANDS)
    return [spec for spec in WORKFLOW_TOPICS if spec.events and spec not in excluded]
