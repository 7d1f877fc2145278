"""A broker outage, for real (issue 12, point 5): a broker of the test's own is stopped and started again.

While it is down, intake answers 503 with Retry-After within its publish timeout (no hang, no 500). The
client retries with the same Idempotency-Key, as a client would, and once the broker is back every ticket
that got its 202 comes out of discover: the services resumed by themselves and no acknowledged ticket is lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from contracts import codec
from contracts.topics import TICKETS, all_topics
from services.common.kafka import ensure_topics, kafka_access
from services.discover.app import create_app as create_discover
from services.discover.settings import DiscoverSettings
from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from tests.harness.auth import bearer, verifier
from tools.kafka import KafkaLocalSettings, LocalKafka, find_free_ports
from tools.kafka.acls import ADMIN

pytestmark = pytest.mark.kafka

PUBLISH_TIMEOUT_S = 2.0


@pytest.fixture
def broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalKafka]:
    """A broker of this test alone (the session's is shared and must not go down), stopped at the end."""
    node = LocalKafka(KafkaLocalSettings(state_dir=tmp_path / "kafka"), name="outage", port=find_free_ports(2), fresh=True)
    try:
        node.start()
        for key, value in node.client_env(ADMIN).items():
            monkeypatch.setenv(key, value)
        yield node
    finally:
        node.stop()


@pytest.fixture
async def hub(broker: LocalKafka, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """intake (HTTP, in this process) and discover (its first consumer) on that broker."""
    await ensure_topics(broker.client_settings(), all_topics())
    intake = create_intake(IntakeSettings(db_url=f"sqlite:///{tmp_path / 'intake.db'}", publish_timeout_s=PUBLISH_TIMEOUT_S,
                                          log_level="WARNING"), verifier=verifier())
    discover = create_discover(DiscoverSettings(db_url=f"sqlite:///{tmp_path / 'discover.db'}", batch_timeout_ms=50,
                                                log_level="WARNING"))
    await discover.start()
    try:
        async with intake.router.lifespan_context(intake):
            transport = httpx.ASGITransport(app=intake)
            async with httpx.AsyncClient(transport=transport, base_url="http://intake", timeout=60) as client:
                yield client
    finally:
        await discover.stop()


async def submit(client: httpx.AsyncClient, n: int) -> httpx.Response:
    body = {"text": f"第{n}号路灯坏了 street light {n} broken", "caller_phone": "13812345678",
            "category": "city-management.street-light", "location": {"address": f"桂花路{n}号"}}
    return await client.post("/tickets", json=body, headers={"Idempotency-Key": f"outage-{n}", **bearer("app", "app-1")})


async def submit_as_a_client_would(client: httpx.AsyncClient, n: int, give_up_after_s: float) -> str:
    """Retry on 503 after its Retry-After, with the same Idempotency-Key, until a 202."""
    deadline = time.monotonic() + give_up_after_s
    while True:
        r = await submit(client, n)
        if r.status_code == 202:
            return str(r.json()["ticket_id"])
        assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1, r.text
        assert time.monotonic() < deadline, f"ticket {n} still refused after {give_up_after_s}s"
        await asyncio.sleep(int(r.headers["Retry-After"]))


async def registered(broker: LocalKafka, ticket_ids: set[str], timeout_s: float) -> dict[str, set[str]]:
    """discover's records on cityops.tickets.v1 per ticket (event ids), read until every ticket has one."""
    consumer = AIOKafkaConsumer(TICKETS.name, **kafka_access(broker.client_settings()).options,
                                auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
    await consumer.start()
    found: dict[str, set[str]] = {}
    try:
        deadline = time.monotonic() + timeout_s
        while not ticket_ids <= found.keys() and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    envelope = codec.decode(record.key, record.value, record.headers)
                    found.setdefault(envelope.ticket_id, set()).add(envelope.id)
    finally:
        await consumer.stop()
    return found


async def test_an_outage_answers_503_in_time_and_every_acknowledged_ticket_comes_through(broker, hub) -> None:
    accepted = [await submit_as_a_client_would(hub, n, give_up_after_s=30) for n in range(3)]

    await asyncio.to_thread(broker.stop)
    began = time.monotonic()
    refused = await submit(hub, 100)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "2", refused.text
    # No 40 s hang; the in-process transport also waits for the audit record's own bounded attempt after the answer.
    assert time.monotonic() - began < 2 * PUBLISH_TIMEOUT_S + 1.5

    # The broker comes back while the client keeps retrying; nothing restarts the services.
    client_retrying = asyncio.create_task(submit_as_a_client_would(hub, 100, give_up_after_s=120))
    await asyncio.sleep(3)
    await asyncio.to_thread(broker.start)
    accepted.append(await client_retrying)
    accepted += [await submit_as_a_client_would(hub, n, give_up_after_s=30) for n in range(101, 104)]

    found = await registered(broker, set(accepted), timeout_s=120)
    lost = [t for t in accepted if t not in found]
    assert lost == [], f"acknowledged but never registered by discover: {lost}"
    assert all(len(found[t]) == 1 for t in accepted), "a ticket was registered twice under different ids"
