"""Builds a workflow service's FastStream app from its parts (the app-factory shape every service shares).

Every dependency can be passed in, so tests hand over a broker, an engine or a clock of their
choosing; nothing connects to Kafka or a database until the app starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from faststream import FastStream
from faststream.kafka import KafkaBroker
from sqlalchemy.engine import Engine

from contracts.envelope import utcnow

from .handler import Clock, Deps, HandlerSpec, Tick
from .kafka import make_broker
from .logs import configure_logging, get_logger
from .metrics import MetricsServer, serve_metrics
from .pipeline import EventPipeline
from .settings import ServiceSettings
from .store import claim_store, create_tables, make_engine, release_store

__all__ = ["Tick", "build_service_app"]

log = get_logger(__name__)


def build_service_app(
    settings: ServiceSettings, *, spec: HandlerSpec[Deps], tables: Sequence[Any] = (),
    broker: KafkaBroker | None = None, engine: Engine | None = None, clock: Clock = utcnow,
    on_ready: Callable[[EventPipeline[Deps]], Awaitable[None]] | None = None,
    background: Sequence[Callable[[EventPipeline[Deps], asyncio.Event], Coroutine[Any, Any, None]]] = (),
) -> FastStream:
    """The service's app: its spec's pipeline on the broker, its ticks (`spec.ticks`) while it runs, and its
    metrics endpoint when `settings.metrics_port` names one (services/common/metrics.py).

    `background`: coroutines started with the service, given its pipeline and the stop event (set at
    shutdown, then awaited), for work that is not a consumer or a tick (e.g. calls to another service's API)."""
    name = settings.service_name
    broker = broker or make_broker(settings)
    engine = engine or make_engine(settings.store_url())
    pipeline = EventPipeline(name=name, settings=settings, engine=engine, spec=spec, clock=clock)
    pipeline.subscribe(broker)
    app = FastStream(broker, logger=None)
    app.context.set_global("pipeline", pipeline)
    app.context.set_global("settings", settings)  # what `cityops service run` reads (tools/run.py settings_of)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    # A process running several services (tools/packed.py) watches these: a dead tick or upkeep stops it.
    app.context.set_global("service_tasks", tasks)

    servers: list[MetricsServer] = []

    @app.on_startup
    async def _prepare() -> None:
        configure_logging(settings.log_level, settings.log_json, service=name, instance=settings.instance_id or name)
        claim_store(engine, name)  # a second process on the same SQLite file refuses to start
        await asyncio.to_thread(create_tables, engine, list(tables))
        server = serve_metrics(pipeline.metrics, settings)  # settings.metrics_port; 0 = none
        if server is not None:
            servers.append(server)

    @app.after_startup
    async def _started() -> None:
        await pipeline.recover_outbox()
        if on_ready is not None:
            await on_ready(pipeline)
        for tick in spec.ticks:
            tasks.append(asyncio.create_task(pipeline.run_ticks(tick.handler, tick.every_s, stop)))
        tasks.append(asyncio.create_task(pipeline.run_upkeep(stop)))
        for job in background:
            tasks.append(asyncio.create_task(job(pipeline, stop)))
        log.info("service_started", service=name, topics=list(spec.topics), group=settings.group_id,
                 bootstrap=settings.kafka_bootstrap, store=engine.url.render_as_string(hide_password=True))

    @app.on_shutdown
    async def _stopping() -> None:
        stop.set()
        for task in tasks:
            await task
        await pipeline.committer.flush()  # a clean stop leaves no handled batch to be delivered again
        await pipeline.flush_outbox()  # nor confirmed outputs to be sent again at the next start
        for server in servers:
            server.stop()
        release_store(engine)
        log.info("service_stopping", service=name, **pipeline.stats)

    return app
