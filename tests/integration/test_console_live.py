"""The console's live feed on the real broker: a lifecycle event published to Kafka reaches, over GET /console/live
(server-sent events), an operator's stream and the stream of the unit holding the ticket, and not another unit's
or another grid's. The console reads as its own Kafka principal `console` (the read ACLs the catalogue gives it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaProducer

from contracts import codec
from contracts import events as ev
from contracts.envelope import Envelope
from contracts.examples import build_example
from contracts.topics import topic_for_event
from services.common.auth import Principal, Role
from services.common.kafka import ensure_topics, kafka_access
from services.console.app import create_app
from services.console.live import LIFECYCLE_TOPICS
from services.console.session import SESSION_COOKIE
from services.console.settings import ConsoleSettings
from tests.harness.auth import verifier
from tests.harness.console import principal
from tests.harness.ports import free_port
from tools.topics_cli import hub_topics

pytestmark = pytest.mark.kafka

EAST = ev.Location(district="district-east", street="street-east-1", community="community-east-1-a", grid="grid-east-1-a-1")



def assignment(ticket_id: str, unit: str) -> Envelope[Any]:
    example = build_example(ev.TaskAssigned)
    data = example.model_copy(update={"unit": unit, "joint_with": (), "task_id": f"{ticket_id}-{unit}",
                                      "ticket": example.ticket.model_copy(update={"location": EAST})})
    return Envelope.origin(data, source="/test/console-live", ticket_id=ticket_id)


async def publish(bootstrap: str, envelope: Envelope[Any]) -> None:
    producer = AIOKafkaProducer(**kafka_access(bootstrap).options, acks="all")  # the test is the admin
    await producer.start()
    try:
        record = codec.encode(envelope)
        await producer.send_and_wait(topic_for_event(envelope.type), record.value, key=record.key, headers=record.headers)
    finally:
        await producer.stop()


class Stream:
    """One browser's SSE connection: the `ticket` events it received, by ticket id."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def tickets(self) -> set[str]:
        return {e["ticket_id"] for e in self.events}

    async def follow(self, client: httpx.AsyncClient, token: str) -> None:
        async with client.stream("GET", "/console/live", cookies={SESSION_COOKIE: token}) as response:
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
            kind = None
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    kind = line[len("event: "):]
                elif line.startswith("data: ") and kind == "ticket":
                    self.events.append(json.loads(line[len("data: "):]))


async def until(check: Any, what: str, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


@asynccontextmanager
async def console_serving(kafka_node: Any, kafka_bootstrap: str) -> AsyncIterator[tuple[Any, str]]:
    kafka = kafka_node.client_settings("console") if kafka_node is not None else None
    options = {"kafka_bootstrap": kafka_bootstrap}
    if kafka is not None:
        options |= {"kafka_username": kafka.kafka_username, "kafka_password": kafka.kafka_password}
    settings = ConsoleSettings(mode="demo", http_port=free_port(), **options)  # type: ignore[arg-type]
    app = create_app(settings, verifier=verifier())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.http_port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        await until(lambda: server.started, "the console to serve", 30)
        yield app, f"http://127.0.0.1:{settings.http_port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 30)


async def test_a_published_event_reaches_the_operator_and_its_unit_and_no_other_unit_or_grid(
        kafka_node: Any, kafka_bootstrap: str, unique: str) -> None:
    await ensure_topics(kafka_bootstrap, [spec for spec in hub_topics() if spec.name in LIFECYCLE_TOPICS])  # as `cityops up` does
    async with console_serving(kafka_node, kafka_bootstrap) as (app, base):
        people: dict[str, Principal] = {
            "operator": principal(Role.operator), "water": principal(Role.unit, unit="water"),
            "power": principal(Role.unit, unit="power"), "east-grid": principal(Role.grid_worker, grids=("grid-east-1-a-1",)),
            "west-grid": principal(Role.grid_worker, grids=("grid-west-1-a-1",))}
        streams = {name: Stream() for name in people}
        async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(10, read=None)) as client:
            following = [asyncio.create_task(streams[name].follow(client, app.state.sessions.mint(who)))
                         for name, who in people.items()]
            try:
                # The feed starts at the end of the log: probe until the operator's stream shows it is reading.
                probes = 0
                while not streams["operator"].events:
                    assert probes < 60, "the live feed never delivered a probe event"
                    await publish(kafka_bootstrap, assignment(f"T-PROBE-{unique}-{probes}", "housing"))
                    probes += 1
                    await asyncio.sleep(1)
                ticket = f"T-LIVE-{unique}"
                await publish(kafka_bootstrap, assignment(ticket, "water"))
                await until(lambda: ticket in streams["operator"].tickets() and ticket in streams["water"].tickets()
                            and ticket in streams["east-grid"].tickets(), "the event on the operator's, water's and the grid's streams")
                [seen] = [e for e in streams["water"].events if e["ticket_id"] == ticket]
                assert seen == seen | {"event_type": "TaskAssigned", "status": "dispatched", "unit": "water",
                                       "grid": "grid-east-1-a-1", "district": "district-east"}
                later = f"T-LATER-{unique}"  # anything after it reaching the operator means the others had their chance
                await publish(kafka_bootstrap, assignment(later, "housing"))
                await until(lambda: later in streams["operator"].tickets(), "a later event on the operator's stream")
                assert ticket not in streams["power"].tickets() and ticket not in streams["west-grid"].tickets()
                assert not any(e["unit"] != "water" and "water" not in e["units"] for e in streams["water"].events)
                assert app.state.pipelines["live"].connected
            finally:
                for task in following:
                    task.cancel()
                await asyncio.gather(*following, return_exceptions=True)
