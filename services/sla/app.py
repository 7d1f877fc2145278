"""sla app factory: the workflow topics in, reminders / breaches / escalations out, a timer sweep every tick_s."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from faststream import FastStream
from faststream.kafka import KafkaBroker
from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine
from sqlmodel import col

from contracts.envelope import utcnow
from services.common.app import build_service_app
from services.common.handler import Clock

from .handlers import build_runtime, spec
from .models import TABLES, SlaTimerRow, make_store_engine
from .settings import SlaSettings


class FileClock:
    """'now' read from a file holding an ISO 8601 instant: lets a drill or a test running the service as its
    own process move time forward without sleeping until deadlines."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __call__(self) -> datetime:
        return datetime.fromisoformat(self.path.read_text(encoding="utf-8").strip())


def load_catalogue_or_none(path: Path | None) -> Any:
    """The responsibility catalogue, for supervisors by area; None where it is not installed (level only)."""
    try:
        from domain.catalogue import load_catalogue
    except ImportError:
        return None
    return load_catalogue(path)


def create_app(settings: SlaSettings | None = None, *, broker: KafkaBroker | None = None,
               engine: Engine | None = None, clock: Clock | None = None) -> FastStream:
    settings = settings or SlaSettings()
    clock = clock or (FileClock(settings.clock_file) if settings.clock_file else utcnow)
    runtime = build_runtime(settings, load_catalogue_or_none(settings.catalogue_file()))
    engine = engine or make_store_engine(settings.store_url())
    app = build_service_app(settings, spec=spec(runtime), tables=TABLES, broker=broker, engine=engine, clock=clock)
    pipeline = app.context.get("pipeline")
    pipeline.metrics.add_store_gauge("cityops_timers_due", "Timers whose next reminder, breach or escalation is due now.",
                                     engine, lambda conn: {pipeline.name: timers_due(conn, clock())})
    return app


def timers_due(conn: Connection, now: datetime) -> float:
    """How many timers are due at `now`: more than a tick's worth means the sweep is not keeping up (or failing)."""
    return float(conn.execute(select(func.count()).select_from(SlaTimerRow).where(col(SlaTimerRow.next_due_at) <= now)).scalar_one())
