"""During a broker outage the HTTP doors answer 503 with Retry-After within their publish timeout, never hang
or 500 (issue 12, point 5). The broker here is a real FastStream broker that never connects; its publish is
replaced by one that never gets an acknowledgement, or fails as aiokafka does when no broker answers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from fastapi.testclient import TestClient
from faststream.kafka import KafkaBroker

from services.common.store import create_tables, make_engine
from services.intake.app import create_app, store_tables
from services.intake.settings import IntakeSettings
from tests.harness.auth import bearer, verifier

TIMEOUT_S = 0.4


async def never_acknowledged(*_: Any, **__: Any) -> None:
    await asyncio.sleep(3600)


async def no_broker_answers(*_: Any, **__: Any) -> None:
    raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 1)]")


@pytest.fixture
def intake(tmp_path):
    def build(publish: Any) -> TestClient:
        settings = IntakeSettings(publish_timeout_s=TIMEOUT_S)
        broker = KafkaBroker("127.0.0.1:1")
        broker.publish = publish  # type: ignore[method-assign]
        engine = make_engine(f"sqlite:///{tmp_path / 'intake.db'}")
        create_tables(engine, store_tables())
        app = create_app(settings, broker=broker, engine=engine, verifier=verifier())
        return TestClient(app, headers=bearer("operator", "op-7"))  # no lifespan: nothing connects
    return build


@pytest.mark.parametrize("publish", [never_acknowledged, no_broker_answers])
@pytest.mark.parametrize("path", ["/tickets", "/open311/v2/requests.json"])
def test_a_submit_during_an_outage_is_503_with_retry_after_within_the_timeout(intake, publish, path) -> None:
    client = intake(publish)
    body = {"text": "路灯坏了", "caller_phone": "13812345678"}
    if path.startswith("/open311"):
        body = {"service_code": "city-management.street-light", "description": "路灯坏了", "lat": 30.27, "long": 120.15}
    began = time.monotonic()
    r = client.post(path, json=body, headers={"Idempotency-Key": "k-1", **bearer("app", "app-1")})
    elapsed = time.monotonic() - began
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"] == "1" and "Idempotency-Key" in r.json()["detail"]
    # The answer, then the audit record's own bounded attempt, both within the timeout.
    assert elapsed < 2 * TIMEOUT_S + 1.0


def test_the_default_timeout_is_a_few_seconds() -> None:
    assert 1 <= IntakeSettings().publish_timeout_s <= 10
