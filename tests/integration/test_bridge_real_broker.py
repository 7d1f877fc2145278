"""The unit HTTP bridge served over HTTP on the real broker: an assignment on unit A's topic shows in A's list,
A completes it over HTTP, the TaskCompleted for A is on the unit-reports topic, unit B is refused, and the task
leaves A's open list once the bridge reads its own report back. On the shared area task topic, a grid's task
keyed by the grid reaches that grid's list, and another grid's records (an undecodable one among them) are
skipped by key without being decoded or dead-lettered."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts import codec
from contracts import events as ev
from contracts.topics import AREA_TASKS, AUDIT, UNIT_REPORTS, dlq_spec, own_task_topic, unit_topic_spec
from services.bridge.app import create_app
from services.bridge.settings import BridgeSettings
from services.common.auth import Principal, Role, mint_token
from services.common.kafka import ensure_topics, kafka_access
from tests.harness.bridge import assigned
from tests.harness.ports import free_port

KEY = "integration-bridge-key-" + "x" * 32



def _auth(unit: str) -> dict[str, str]:
    token = mint_token(KEY.encode(), Principal(subject=f"clerk-of-{unit}", roles=frozenset({Role.unit}), unit=unit),
                       timedelta(hours=1))
    return {"Authorization": f"Bearer {token}"}


async def _until(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


async def _reports_of(bootstrap: str, ticket_id: str) -> list[Any]:
    consumer = AIOKafkaConsumer(UNIT_REPORTS.name, **kafka_access(bootstrap).options, auto_offset_reset="earliest", group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=3000)
        return [codec.decode(r.key, r.value, r.headers) for rs in batch.values() for r in rs if r.key == ticket_id.encode()]
    finally:
        await consumer.stop()


async def test_a_unit_completes_its_task_over_http_and_another_unit_is_refused(kafka_bootstrap, unique, tmp_path) -> None:
    # the audit trail too: the bridge records each report call there before it answers
    await ensure_topics(kafka_bootstrap, [unit_topic_spec("water"), unit_topic_spec("power"), UNIT_REPORTS, AUDIT])
    ticket_id = f"T-BRIDGE-{unique}"
    task = assigned(ticket_id, "water", at=datetime.now(UTC))
    settings = BridgeSettings(kafka_bootstrap=kafka_bootstrap, units=["water", "power"], consumer_group=f"bridge-{unique}",
                              db_url=f"sqlite:///{tmp_path / 'bridge.db'}", state_dir=tmp_path)
    with mock.patch.dict(os.environ, {"CITYOPS_AUTH_KEY": KEY}):
        app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            await _until(lambda: _answers(client), "the bridge to serve")
            producer = AIOKafkaProducer(**kafka_access(kafka_bootstrap).options)
            await producer.start()
            try:
                rec = codec.encode(task)
                await producer.send_and_wait(own_task_topic("water"), rec.value, key=rec.key, headers=rec.headers)
            finally:
                await producer.stop()

            async def listed_for_water() -> list[dict[str, Any]]:
                r = await client.get("/tasks", headers=_auth("water"))
                return [t for t in r.json() if t["task_id"] == task.data.task_id]

            [listed] = await _until(listed_for_water, "the task in water's list")
            assert listed["status"] == "assigned" and listed["unit"] == "water"
            power = _auth("power")
            assert (await client.get(f"/tasks/{task.data.task_id}", headers=power)).status_code == 403
            refused = await client.post(f"/tasks/{task.data.task_id}/complete", json={"result": "forged"}, headers=power)
            assert refused.status_code == 403

            done = await client.post(f"/tasks/{task.data.task_id}/complete", json={"result": "pipe repaired"},
                                     headers={**_auth("water"), "Idempotency-Key": f"done-{unique}"})
            assert done.status_code == 202, done.text
            reports = await _until(lambda: _reports_of(kafka_bootstrap, ticket_id), "the report on the unit-reports topic")
            [completed] = [e for e in reports if isinstance(e.data, ev.TaskCompleted)]
            assert completed.id == done.json()["event_id"] and completed.causation_id == task.id
            assert completed.data.unit == "water" and completed.data.task_id == task.data.task_id
            assert completed.data.result == "pipe repaired"

            async def gone_from_water() -> bool:
                return not await listed_for_water()

            await _until(gone_from_water, "the task to leave water's open list")
            shown = (await client.get(f"/tasks/{task.data.task_id}", headers=_auth("water"))).json()
            assert shown["status"] == "completed" and shown["result"] == "pipe repaired"
    finally:
        server.should_exit = True
        await serving


async def _answers(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/health")).status_code == 200
    except httpx.TransportError:
        return False


GRID, OTHER_GRID = "grid-east-1-a-1", "grid-east-1-a-2"


async def test_a_grid_gets_its_own_tasks_from_the_shared_area_topic_and_skips_the_others_by_key(kafka_bootstrap, unique,
                                                                                                 tmp_path) -> None:
    await ensure_topics(kafka_bootstrap, [AREA_TASKS, dlq_spec(AREA_TASKS), UNIT_REPORTS])
    mine = assigned(f"T-AREA-{unique}", GRID, at=datetime.now(UTC))
    theirs = assigned(f"T-AREA-OTHER-{unique}", OTHER_GRID, at=datetime.now(UTC))
    settings = BridgeSettings(kafka_bootstrap=kafka_bootstrap, units=[GRID], consumer_group=f"bridge-area-{unique}",
                              db_url=f"sqlite:///{tmp_path / 'bridge.db'}", state_dir=tmp_path)
    with mock.patch.dict(os.environ, {"CITYOPS_AUTH_KEY": KEY}):
        app = create_app(settings)
    pipeline = app.state.pipelines["bridge"]
    assert AREA_TASKS.name in pipeline.topics and not any(t.startswith("cityops.unit.") for t in pipeline.topics)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            await _until(lambda: _answers(client), "the bridge to serve")
            producer = AIOKafkaProducer(**kafka_access(kafka_bootstrap).options)
            await producer.start()
            try:
                # Another grid's records first: a task, and garbage the bridge would dead-letter if it decoded it.
                other = codec.encode(theirs, OTHER_GRID)
                await producer.send_and_wait(AREA_TASKS.name, other.value, key=other.key, headers=other.headers)
                await producer.send_and_wait(AREA_TASKS.name, b"not an event", key=OTHER_GRID.encode())
                rec = codec.encode(mine, GRID)
                await producer.send_and_wait(AREA_TASKS.name, rec.value, key=rec.key, headers=rec.headers)
            finally:
                await producer.stop()

            async def listed_for_grid() -> list[dict[str, Any]]:
                r = await client.get("/tasks", headers=_auth(GRID))
                return [t for t in r.json() if t["task_id"] in (mine.data.task_id, theirs.data.task_id)]

            [listed] = await _until(listed_for_grid, "the grid's task in its list")
            assert listed["task_id"] == mine.data.task_id and listed["unit"] == GRID

            async def both_skipped() -> bool:
                return pipeline.stats["skipped"] >= 2

            await _until(both_skipped, "the other grid's two records to be skipped")
            assert pipeline.stats["dead_lettered"] == 0
            assert (await client.get(f"/tasks/{theirs.data.task_id}", headers=_auth(OTHER_GRID))).status_code in (403, 404)
    finally:
        server.should_exit = True
        await serving
