"""A schema-driven fuzzer over the hub's two HTTP doors (issue 12, point 1): schemathesis generates requests from
intake's and the unit bridge's own OpenAPI documents, valid ones and deliberately invalid ones, for every route,
with a token that may call it; not one may be answered with a 5xx.

Seeded (Hypothesis `derandomize`), so a run is repeatable and a failure reproduces; thousands of requests in all,
well under a minute. A 5xx fails the test with the route and the request (`case.as_curl_command()`).
"""

from __future__ import annotations

import os
import time
import warnings
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.python import asgi

from contracts.topics import AUDIT
from domain.catalogue import load_catalogue
from services.bridge.app import create_app as create_bridge
from services.bridge.handlers import TABLES as BRIDGE_TABLES
from services.bridge.settings import BridgeSettings
from services.common.auth import Principal, Role, mint_token
from services.common.store import create_tables, make_engine
from services.intake.api import build_api
from services.intake.app import store_tables
from services.intake.models import TicketStatus
from tests.harness.auth import TEST_KEY, verifier

EXAMPLES_PER_MODE = 45  # per route and per mode (valid, invalid): ~2,200 requests over both apps
NOW = datetime(2026, 5, 6, 9, 0, tzinfo=UTC)


def every_role_token(*, unit: str | None = None, grids: tuple[str, ...] = ()) -> dict[str, str]:
    """One caller holding every role, so each route's access rule lets the generated request through to validation."""
    principal = Principal(subject="fuzzer", roles=frozenset(Role), unit=unit, grids=grids, client_id="fuzz-app")
    return {"Authorization": f"Bearer {mint_token(TEST_KEY.encode(), principal, timedelta(hours=1))}"}


def intake_app(directory: Any) -> Any:
    async def publish(topic: str, envelope: Any) -> None:
        assert topic == AUDIT.name or envelope.data is not None
    engine = make_engine(f"sqlite:///{directory / 'intake.db'}")
    create_tables(engine, store_tables())
    from sqlmodel import Session
    with Session(engine) as s, s.begin():  # a few tickets, so some generated ids and filters find rows
        for i, status in enumerate(("registered", "merged", "handled", "closed")):
            s.add(TicketStatus(ticket_id=f"T-{i}", status=status, text="路灯坏了", requested_at=NOW, updated_at=NOW))
    return build_api(publish=publish, engine=engine, catalogue=load_catalogue(), now=lambda: NOW, verifier=verifier())


def bridge_app(directory: Any) -> Any:
    settings_ = BridgeSettings(kafka_bootstrap="127.0.0.1:1", state_dir=directory, db_url=f"sqlite:///{directory / 'bridge.db'}")
    engine = make_engine(settings_.store_url())
    create_tables(engine, BRIDGE_TABLES)
    from faststream.kafka import KafkaBroker
    broker = KafkaBroker("127.0.0.1:1")

    async def publish(value: bytes, topic: str, **_: Any) -> None:
        pass
    broker.publish = publish  # type: ignore[method-assign]
    with mock.patch.dict(os.environ, {"CITYOPS_AUTH_KEY": TEST_KEY}):
        app = create_bridge(settings_, broker=broker, engine=engine, clock=lambda: NOW)
    app.router.lifespan_context = no_lifespan  # its lifespan starts the broker: only the HTTP side is fuzzed
    return app


@asynccontextmanager
async def no_lifespan(_: Any) -> AsyncIterator[None]:
    yield


def fuzz(app: Any, headers: dict[str, str]) -> Counter[str]:
    """Every route of `app`, valid and invalid requests; returns how many requests each status class got."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    answered: Counter[str] = Counter()
    server_errors: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    with asgi.get_client(app) as client:  # one client for the run: a new one per request costs more than the request
        for operation in operations:
            _fuzz_route(operation, client, headers, answered, server_errors)
    assert server_errors == [], "\n\n".join(server_errors[:5])
    return answered


def _fuzz_route(operation: Any, client: Any, headers: dict[str, str], answered: Counter[str], server_errors: list[str]) -> None:
    """Valid requests, then invalid ones (the negative mode breaks one rule of the schema at a time)."""
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        @settings(max_examples=EXAMPLES_PER_MODE, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode, headers=headers))
        def run(case: Any) -> None:
            response = case.call(session=client)
            answered[f"{response.status_code // 100}xx"] += 1
            answered["requests"] += 1
            if response.status_code >= 500:
                server_errors.append(f"{operation.label}: {response.status_code}\n{case.as_curl_command()}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                run()
            except Unsatisfiable:  # a route with nothing to get wrong (no parameter, no body) has no invalid request
                assert mode is GenerationMode.NEGATIVE, operation.label
    answered[f"route:{operation.label}"] += 1


@pytest.mark.timeout(300)  # ~40 s of CPU; a machine shared with other runs takes longer
def test_no_generated_request_gets_a_5xx_from_intake_or_the_bridge(tmp_path) -> None:
    (tmp_path / "intake").mkdir()
    (tmp_path / "bridge").mkdir()
    started = time.monotonic()
    intake = fuzz(intake_app(tmp_path / "intake"), every_role_token(grids=("grid-east-1-a-1",)))
    bridge = fuzz(bridge_app(tmp_path / "bridge"), every_role_token(unit="water", grids=("grid-east-1-a-1",)))
    print(f"\nintake: {dict(intake)}\nbridge: {dict(bridge)}\nin {time.monotonic() - started:.1f}s")
    routes = sum(1 for k in (*intake, *bridge) if k.startswith("route:"))
    assert routes >= 25  # every route of both apps was fuzzed (intake ~20, the bridge ~12)
    assert intake["requests"] + bridge["requests"] >= 2000
    assert intake["4xx"] > 0 and intake["2xx"] > 0 and bridge["4xx"] > 0
