"""The live projections service: every workflow topic into the read models, exactly once.

`cityops service run projections`. It consumes the ticket events of every workflow topic (not the
intake topics, whose records carry callers' sealed details and which only intake, discover and the
archiver read: discover's registrations carry what the read models need; not the unit topics, whose
records are copies of act's; not the DLQs) with the shared pipeline, so an
event id is recorded in the same transaction as its effect and offsets are committed after it.
The store's schema is upgraded by Alembic when the service starts.
"""

from __future__ import annotations

import asyncio

from faststream import FastStream
from faststream.kafka import KafkaBroker
from sqlalchemy.engine import Engine

from contracts.envelope import utcnow
from services.common.app import build_service_app
from services.common.handler import Clock
from services.common.store import make_engine

from .domain import use_calendar
from .handlers import spec
from .migrate import upgrade
from .settings import ProjectionsSettings


def create_app(settings: ProjectionsSettings | None = None, *, broker: KafkaBroker | None = None,
               engine: Engine | None = None, clock: Clock | None = None) -> FastStream:
    settings = settings or ProjectionsSettings()
    use_calendar(settings.work_calendar())  # nominal deadlines on the calendar sla counts on
    engine = engine or make_engine(settings.store_url())
    app = build_service_app(settings, spec=spec(settings.projected_topics()), tables=[], broker=broker, engine=engine, clock=clock or utcnow)

    @app.on_startup
    async def _migrate() -> None:
        # Registered after build_service_app's own startup hook (bookkeeping tables), before consuming.
        await asyncio.to_thread(upgrade, engine)

    return app
