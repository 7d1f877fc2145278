"""consult app factory."""

from __future__ import annotations

from faststream import FastStream
from faststream.kafka import KafkaBroker
from sqlalchemy.engine import Engine

from contracts.envelope import utcnow
from services.common.app import Tick, build_service_app
from services.common.pipeline import Clock

from .handlers import EVENT_TYPES, TOPICS, handle, overdue
from .models import Consultation, RoutedTicket
from .settings import ConsultSettings


def create_app(settings: ConsultSettings | None = None, *, broker: KafkaBroker | None = None,
               engine: Engine | None = None, clock: Clock = utcnow) -> FastStream:
    settings = settings or ConsultSettings()
    return build_service_app(settings, handler=handle, topics=TOPICS, event_types=EVENT_TYPES,
                             tables=[Consultation.__table__, RoutedTicket.__table__], ticks=[Tick(overdue, settings.tick_s)],
                             broker=broker, engine=engine, clock=clock,
                             extras={"calendar": settings.work_calendar()})
