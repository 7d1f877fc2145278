"""Simulated unit service factory: one process can answer for one unit or for all of them.

It subscribes to the task topics of its units (`Catalogue.task_topics_of`): a department's own topic, and the
shared area task topic for streets, communities and grids, of which it keeps only its units' records, by key.
"""

from __future__ import annotations

from faststream import FastStream
from faststream.kafka import KafkaBroker
from sqlalchemy.engine import Engine

from contracts.envelope import utcnow
from contracts.topics import AREA_TASKS, CONSULT, EVALUATE
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
    catalogue = load_catalogue(settings.catalogue_file())
    units = settings.units or list(catalogue.units_for_topics())
    task_topics = catalogue.task_topics_of(units)
    topics = list(task_topics)
    topics += [EVALUATE.name] if settings.callbacks else []
    topics += [CONSULT.name] if settings.supervisor else []
    name = "units-" + ("all" if not settings.units else "-".join(sorted(settings.units))[:60])
    if settings.consumer_group is None:
        settings = settings.model_copy(update={"consumer_group": f"cityops-{name}"})
    if settings.db_url is None:
        settings = settings.model_copy(update={"db_url": f"sqlite:///{settings.state_dir / (name + '.db')}"})
    # The shared area topic carries every area unit's tasks: keep only ours, by key, before decoding.
    keys = {t: task_topics[t] for t in task_topics if t == AREA_TASKS.name}
    return build_service_app(settings, spec=spec(UnitDeps(frozenset(units)), topics, settings.tick_s, keys),
                             tables=[table_of(PendingAction)], background=[run_hotline], broker=broker, engine=engine,
                             clock=clock)
