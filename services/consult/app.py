"""consult app factory."""

from __future__ import annotations

from faststream import FastStream
from faststream.kafka import KafkaBroker
from sqlalchemy.engine import Engine

from contracts.envelope import utcnow
from services.common.app import build_service_app
from services.common.batch_state import table_of
from services.common.handler import Clock

from .handlers import ConsultDeps, spec
from .models import Consultation, RoutedTicket
from .settings import ConsultSettings


def create_app(settings: ConsultSettings | None = None, *, broker: KafkaBroker | None = None,
               engine: Engine | None = None, clock: Clock = utcnow) -> FastStream:
    settings = settings or ConsultSettings()
    deps = ConsultDeps(calendar=settings.work_calendar())
    return build_service_app(settings, spec=spec(deps, settings.tick_s), tables=[table_of(Consultation), table_of(RoutedTicket)],
                             broker=broker, engine=engine, clock=clock)
