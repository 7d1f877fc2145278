"""act app factory."""

from __future__ import annotations

from faststream import FastStream
from faststream.kafka import KafkaBroker
from sqlalchemy.engine import Engine

from contracts.envelope import utcnow
from domain.catalogue import load_catalogue
from services.common.app import build_service_app
from services.common.batch_state import table_of
from services.common.handler import Clock

from .handlers import ActDeps, spec
from .models import ActTicket, Task
from .settings import ActSettings


def create_app(settings: ActSettings | None = None, *, broker: KafkaBroker | None = None,
               engine: Engine | None = None, clock: Clock = utcnow) -> FastStream:
    settings = settings or ActSettings()
    deps = ActDeps(level_of=load_catalogue(settings.catalogue_file()).level_of)
    return build_service_app(settings, spec=spec(deps),
                             tables=[table_of(ActTicket), table_of(Task)], broker=broker, engine=engine, clock=clock)
