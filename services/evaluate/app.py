"""evaluate app factory."""

from __future__ import annotations

from faststream import FastStream
from faststream.kafka import KafkaBroker
from sqlalchemy.engine import Engine

from contracts.envelope import utcnow
from services.common.app import build_service_app
from services.common.batch_state import table_of
from services.common.handler import Clock

from .handlers import spec
from .models import EvalTask, EvalTicket, EvalTicketLevel, LowestLevelRates, Rates
from .settings import EvaluateSettings


def create_app(settings: EvaluateSettings | None = None, *, broker: KafkaBroker | None = None,
               engine: Engine | None = None, clock: Clock = utcnow) -> FastStream:
    settings = settings or EvaluateSettings()
    return build_service_app(settings, spec=spec(),
                             tables=[table_of(EvalTicket), table_of(EvalTask), table_of(Rates),
                                     table_of(EvalTicketLevel), table_of(LowestLevelRates)], broker=broker, engine=engine, clock=clock)
