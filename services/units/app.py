"""Simulated unit service factory: one process can answer for one unit or for all of them."""

from __future__ import annotations

from faststream import FastStream
from faststream.kafka import KafkaBroker
from sqlalchemy.engine import Engine

from contracts.envelope import utcnow
from contracts.topics import CONSULT, EVALUATE, unit_task_topic
from domain.catalogue import load_catalogue
from services.common.app import build_service_app
from services.common.batch_state import table_of
from services.common.handler import Clock

from .handlers import UnitDeps, spec
from .hotline import run_hotline
from .models import PendingAction
from .settings import UnitSettings


def create_app(settings: UnitSettings | None = None, *, broker: KafkaBroker | None = None,
               engine: Engine | None = None, clock: Clock = utcnow) -> FastStream:
    settings = settings or UnitSettings()
    units = settings.units or list(load_catalogue(settings.catalogue_file()).units_for_topics())
    topics = [unit_task_topic(u) for u in units]
    topics += [EVALUATE.name] if settings.callbacks else []
    topics += [CONSULT.name] if settings.supervisor else []
    name = "units-" + ("all" if not settings.units else "-".join(sorted(settings.units))[:60])
    if settings.consumer_group is None:
        settings = settings.model_copy(update={"consumer_group": f"cityops-{name}"})
    if settings.db_url is None:
        settings = settings.model_copy(update={"db_url": f"sqlite:///{settings.state_dir / (name + '.db')}"})
    return build_service_app(settings, spec=spec(UnitDeps(frozenset(units)), topics, settings.tick_s),
                             tables=[table_of(PendingAction)], background=[run_hotline], broker=broker, engine=engine,
                             clock=clock)
