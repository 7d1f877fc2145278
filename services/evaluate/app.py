"""evaluate app factory."""

from __future__ import annotations

from faststream import FastStream
from faststream.kafka import KafkaBroker
from sqlalchemy.engine import Engine

from contracts.envelope import utcnow
from services.common.app import build_service_app
from services.common.handler import Clock

from .handlers import spec
from .models import store_tables
from .settings import EvaluateSettings


def create_app(settings: EvaluateSettings | None = None, *, broker: KafkaBroker | None = None,
               engine: Engine | None = None, clock: Clock = utcnow) -> FastStream:
    settings = settings or EvaluateSettings()
    return build_service_app(settings, spec=spec(),
                             tables=store_tables(), broker=broker, engine=engine, clock=clock)
