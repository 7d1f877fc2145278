"""Intake app factory: the HTTP API plus two consumers (machine channel, status view) on one broker."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from faststream.kafka import KafkaBroker
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from contracts import codec
from contracts.envelope import Envelope, utcnow
from contracts.topics import check_writer
from domain.catalogue import load_catalogue
from domain.city.places import CityPlaces, city_places
from domain.classifier import ComplaintClassifier, cached_default_classifier
from services.common.auth import AuthError, AuthSettings, TokenVerifier
from services.common.batch_state import table_of
from services.common.handler import Clock
from services.common.kafka import BrokerUnavailable, make_broker, publish_acknowledged
from services.common.logs import configure_logging, get_logger
from services.common.metrics import ServiceMetrics, metrics_route, serve_metrics
from services.common.pipeline import EventPipeline
from services.common.store import claim_store, create_tables, make_engine, release_store

from .domain import UnknownArea, channel_record_to_event
from .handlers import ChannelDeps, channel_spec, status_spec
from .keystore import TABLES as KEY_STORE_TABLES
from .models import SubmissionKey, Submitter, SubmittingClient, TicketStatus, TriageCandidates
from .settings import IntakeSettings
from .suggest import Suggester

log = get_logger(__name__)


def city_places_of(city: str, catalogue: Any) -> CityPlaces:
    """The city's grid locator and gazetteer, built once as the app is made (the large city's: about a second)."""
    started = time.perf_counter()
    places = city_places(city, catalogue)
    log.info("city_map_loaded", city=city, grids=len(places.locator), names=len(places.gazetteer),
             seconds=round(time.perf_counter() - started, 2))
    return places


def store_tables() -> list[Any]:
    """Intake's own tables: the status view, which app submitted what, the submissions' Idempotency-Keys, the
    callers' key store."""
    return [table_of(TicketStatus), table_of(SubmittingClient), table_of(SubmissionKey), table_of(Submitter),
            table_of(TriageCandidates), *(table_of(t) for t in KEY_STORE_TABLES)]


def broker_unavailable(exc: BrokerUnavailable) -> HTTPException:
    """The answer of a door whose record the broker did not acknowledge in time: retry later, same key."""
    log.warning("publish_unacknowledged", error=str(exc))
    return HTTPException(503, "the broker did not acknowledge the record in time: retry with the same Idempotency-Key",
                         headers={"Retry-After": str(exc.retry_after_s)})


class NoWayToCheckTokens(RuntimeError):
    """Intake was asked to start without a hub key or an SSO issuer: it would have to let everyone in."""


def token_verifier(verifier: TokenVerifier | None) -> tuple[TokenVerifier | None, AuthError | None]:
    """The verifier to use, or why there is none (raised at startup, so building the app for its routes or
    its OpenAPI document needs no key)."""
    if verifier is not None:
        return verifier, None
    try:
        return TokenVerifier(AuthSettings()), None
    except AuthError as exc:
        return None, exc


def suggester(settings: IntakeSettings, catalogue: Any) -> Suggester:
    """The operators' suggestions from the configured model, or triage's cached default (loaded on first use)."""
    def load() -> ComplaintClassifier:
        if settings.model_path is not None:
            return ComplaintClassifier.load(settings.model_path)
        return cached_default_classifier(settings.state_dir, catalogue)
    return Suggester(load)


def create_app(settings: IntakeSettings | None = None, *, broker: KafkaBroker | None = None,
               engine: Engine | None = None, clock: Clock = utcnow, verifier: TokenVerifier | None = None) -> FastAPI:
    """Intake's app. `verifier` checks the callers' tokens; by default it is built from `CITYOPS_AUTH_*`."""
    settings = settings or IntakeSettings()
    settings.check_secrets()  # before anything starts: production refuses the built-in pseudonym key
    verifier, auth_problem = token_verifier(verifier)
    broker = broker or make_broker(settings)
    engine = engine or make_engine(settings.store_url())
    catalogue = load_catalogue(settings.catalogue_file())
    places = city_places_of(settings.city, catalogue)

    def decode_channel(record: Any) -> Envelope[Any]:
        try:
            return channel_record_to_event(record.value or b"", record.key, record.topic, record.partition,
                                           record.offset, clock(), catalogue, places.place)
        except UnknownArea as exc:  # names the field, not the value
            raise codec.DecodeError(f"invalid channel submission: {exc}") from None
        except ValidationError as exc:  # its text quotes the rejected values: the reason names fields only
            raise codec.DecodeError(f"invalid channel submission: {codec.validation_reason(exc)}") from None
        except ValueError as exc:
            raise codec.DecodeError(f"invalid channel submission: {type(exc).__name__}") from None

    metrics = ServiceMetrics()
    channel = EventPipeline(name="intake-channel", settings=settings, engine=engine, spec=channel_spec(ChannelDeps(settings.pseudonym_key)), clock=clock,
                            group_id=f"{settings.group_id}-channel", decoder=decode_channel, metrics=metrics)
    status = EventPipeline(name="intake-status", settings=settings, engine=engine, spec=status_spec(), clock=clock,
                           group_id=f"{settings.group_id}-status", metrics=metrics)
    channel.subscribe(broker)
    status.subscribe(broker)

    async def publish(topic: str, envelope: Envelope[Any]) -> None:
        check_writer(settings.service_name, topic)
        # An HTTP submit is answered only once the broker has the record: the caller's 202 is a promise.
        # Within publish_timeout_s, or a 503 the caller retries (a broker outage must not hang every door).
        try:
            await publish_acknowledged(broker, codec.encode(envelope), topic, timeout_s=settings.publish_timeout_s)
        except BrokerUnavailable as exc:
            raise broker_unavailable(exc) from None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level, settings.log_json, service="intake")
        if auth_problem is not None:
            raise NoWayToCheckTokens(f"intake refuses to start: {auth_problem}")
        claim_store(engine, "intake")  # a second process on the same SQLite file refuses to start
        create_tables(engine, store_tables())
        await broker.start()
        await channel.recover_outbox()
        server = serve_metrics(metrics, settings)  # its own port, no token; GET /metrics on the API needs one
        log.info("service_started", service="intake", http=f"{settings.http_host}:{settings.http_port}",
                 bootstrap=settings.kafka_bootstrap)
        try:
            async with channel.upkeep_running(), status.upkeep_running():
                yield
        finally:
            for pipeline in (channel, status):
                await pipeline.flush_outbox()  # confirmed outputs are not sent again at the next start
            await broker.stop()
            if server is not None:
                server.stop()
            release_store(engine)
            log.info("service_stopping", service="intake", channel=channel.stats, status=status.stats)

    from .api import build_api  # noqa: E402 (kept local: FastAPI import cost only for intake)

    api = build_api(publish=publish, engine=engine, catalogue=catalogue, now=clock, lifespan=lifespan,
                    pseudonym_key=settings.pseudonym_key, verifier=verifier, suggester=suggester(settings, catalogue),
                    place_of=places.place)
    metrics_route(api, metrics)
    api.state.pipelines = {"channel": channel, "status": status}
    api.state.auth_problem = auth_problem
    return api
