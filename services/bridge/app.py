"""The unit HTTP bridge's app factory: the HTTP API (api.py) plus its read model's consumer, on one broker.

`cityops service run bridge` serves it (port `CITYOPS_BRIDGE_HTTP_PORT`, default 8081); `cityops up` starts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from faststream.kafka import KafkaBroker
from sqlalchemy.engine import Engine

from contracts import codec
from contracts.envelope import Envelope, utcnow
from contracts.topics import check_writer
from domain.catalogue import load_catalogue
from services.common.audit import AuditMiddleware, note_published
from services.common.auth import install_verifier
from services.common.handler import Clock
from services.common.kafka import BrokerUnavailable, make_broker, publish_acknowledged
from services.common.logs import configure_logging, get_logger
from services.common.metrics import metrics_route, serve_metrics
from services.common.pipeline import EventPipeline
from services.common.store import claim_store, create_tables, make_engine, release_store

from .api import build_api
from .handlers import TABLES, BridgeDeps, spec
from .settings import BridgeSettings

log = get_logger(__name__)


def create_app(settings: BridgeSettings | None = None, *, broker: KafkaBroker | None = None,
               engine: Engine | None = None, clock: Clock = utcnow) -> FastAPI:
    settings = settings or BridgeSettings()
    broker = broker or make_broker(settings)
    engine = engine or make_engine(settings.store_url())
    catalogue = load_catalogue(settings.catalogue_file())
    units = frozenset(settings.units or catalogue.units_for_topics())
    name = settings.service_name
    calendar = settings.work_calendar()
    pipeline = EventPipeline(name=name, settings=settings, engine=engine, clock=clock,
                             spec=spec(BridgeDeps(units=units, calendar=calendar,
                                                  task_topics=catalogue.task_topics_of(sorted(units)))))
    pipeline.subscribe(broker)

    async def publish(topic: str, envelope: Envelope[Any]) -> None:
        check_writer(name, topic)
        # A report is answered only once the broker has it: the unit's 202 is a promise.
        try:
            await publish_acknowledged(broker, codec.encode(envelope), topic, timeout_s=settings.publish_timeout_s)
        except BrokerUnavailable as exc:
            log.warning("publish_unacknowledged", error=str(exc))
            raise HTTPException(503, "the broker did not acknowledge the report in time: retry with the same "
                                "Idempotency-Key", headers={"Retry-After": str(exc.retry_after_s)}) from None
        note_published(envelope)  # the audit record of this call names the ticket and the report

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level, settings.log_json, service=name)
        claim_store(engine, name)  # a second process on the same SQLite file refuses to start
        await asyncio.to_thread(create_tables, engine, TABLES)
        await broker.start()
        await pipeline.recover_outbox()
        server = serve_metrics(pipeline.metrics, settings)  # its own port, no token; GET /metrics on the API needs one
        log.info("service_started", service=name, http=f"{settings.http_host}:{settings.http_port}", units=len(units),
                 bootstrap=settings.kafka_bootstrap)
        try:
            async with pipeline.upkeep_running():
                yield
        finally:
            await pipeline.flush_outbox()  # confirmed outputs are not sent again at the next start
            await broker.stop()
            if server is not None:
                server.stop()
            release_store(engine)
            log.info("service_stopping", service=name, **pipeline.stats)

    api = build_api(publish=publish, engine=engine, catalogue=catalogue, now=clock, consumer=pipeline.name, lifespan=lifespan,
                    calendar=calendar)
    metrics_route(api, pipeline.metrics)
    install_verifier(api)  # refuses to build without a hub key or an SSO issuer (services/common/auth.py)
    # Every state-changing call of a unit (refused ones too) is recorded on cityops.audit.v1 with its principal.
    api.add_middleware(AuditMiddleware, publish=publish, service=name, source=f"/cityops/{name}", clock=clock)
    api.state.pipelines = {"bridge": pipeline}
    api.state.settings = settings
    return api
