"""discover app factory."""

from __future__ import annotations

from faststream import FastStream
from faststream.kafka import KafkaBroker
from sqlalchemy.engine import Engine

from contracts.envelope import utcnow
from domain.catalogue import load_catalogue
from services.common.app import build_service_app
from services.common.batch_state import table_of
from services.common.handler import Clock

from .handlers import DiscoverDeps, spec
from .models import KnownTicket
from .settings import DiscoverSettings


def create_app(settings: DiscoverSettings | None = None, *, broker: KafkaBroker | None = None,
               engine: Engine | None = None, clock: Clock = utcnow) -> FastStream:
    settings = settings or DiscoverSettings()
    return build_service_app(settings, spec=spec(DiscoverDeps(load_catalogue())), tables=[table_of(KnownTicket)],
                             broker=broker, engine=engine, clock=clock)
