"""The archiver service: copies every record of every cityops topic into the `archive` table.

`cityops service run archiver`. A pattern subscription picks up new topics (a new unit's task
topic) within `metadata_max_age_ms`. Each batch is stored in one transaction and only then are
its offsets committed; a redelivered batch is ignored row by row on (topic, partition, offset).
Records are not decoded: undecodable records, DLQs and raw channel submissions are history too.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from faststream import FastStream
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.middlewares import AckPolicy
from sqlalchemy.engine import Engine

from contracts.envelope import utcnow
from services.common.kafka import fetch_pacing, kafka_access, lenient_batch_parser, poll_without_naps
from services.common.logs import configure_logging, get_logger
from services.common.metrics import BatchCounts, MetricsServer, ServiceMetrics, highwater_of, serve_metrics
from services.common.pipeline import Clock
from services.common.store import claim_store, make_engine, release_store

from .handlers import archive_records
from .migrate import upgrade
from .settings import ArchiverSettings

log = get_logger(__name__)


def _broker(settings: ArchiverSettings) -> KafkaBroker:
    # Consumes only; its own broker so that new topics are noticed sooner than the 5 minute default.
    access = kafka_access(settings)
    return KafkaBroker(access.bootstrap.split(","), security=access.security, client_id="cityops-archiver",
                       metadata_max_age_ms=settings.metadata_max_age_ms, logger=None)


def create_app(settings: ArchiverSettings | None = None, *, broker: KafkaBroker | None = None,
               engine: Engine | None = None, clock: Clock | None = None) -> FastStream:
    settings = settings or ArchiverSettings()
    broker = broker or _broker(settings)
    engine = engine or make_engine(settings.store_url())
    now = clock or utcnow
    stats = {"batches": 0, "records": 0, "stored": 0}
    metrics = ServiceMetrics()
    servers: list[MetricsServer] = []

    async def _no_decode(_msg: Any) -> None:
        return None  # raw bytes are what we keep

    subscriber = poll_without_naps(broker.subscriber(pattern=settings.pattern(), group_id=settings.group_id, batch=True,
                       max_records=settings.batch_max_records, batch_timeout_ms=settings.batch_timeout_ms,
                       auto_offset_reset="earliest", ack_policy=AckPolicy.NACK_ON_ERROR, decoder=_no_decode,
                       parser=lenient_batch_parser,
                       title="archiver", description="Every record of every cityops topic, into the archive table."),
                                   fetch_pacing(settings))

    @subscriber
    async def on_batch(message: KafkaMessage) -> None:
        records, highwater, started = message.raw_message, highwater_of(message.consumer), time.perf_counter()
        metrics.batch_started("archiver", records, highwater)
        try:
            stored = await asyncio.to_thread(archive_records, engine, records, now)
        except Exception:
            metrics.batch_failed("archiver", time.perf_counter() - started)
            raise
        metrics.batch_handled("archiver", records, highwater, time.perf_counter() - started, BatchCounts(applied=stored))
        stats["batches"] += 1
        stats["records"] += len(records)
        stats["stored"] += stored

    app = FastStream(broker, logger=None)
    app.context.set_global("settings", settings)
    app.context.set_global("archiver_stats", stats)
    app.context.set_global("metrics", metrics)

    @app.on_startup
    async def _prepare() -> None:
        configure_logging(settings.log_level, settings.log_json, service="archiver", instance=settings.instance_id or "archiver")
        claim_store(engine, "archiver")  # a second process on the same SQLite file refuses to start
        await asyncio.to_thread(upgrade, engine)
        server = serve_metrics(metrics, settings)
        if server is not None:
            servers.append(server)

    @app.after_startup
    async def _started() -> None:
        log.info("service_started", service="archiver", pattern=settings.pattern(), group=settings.group_id,
                 store=engine.url.render_as_string(hide_password=True))

    @app.on_shutdown
    async def _stopping() -> None:
        for server in servers:
            server.stop()
        release_store(engine)
        log.info("service_stopping", service="archiver", **stats)

    return app
