"""act on the real broker refuses a unit's report on another unit's task (issue 11, point 4): a completion
forged by unit B for unit A's task leaves the task open in act's store and lands in the unit-reports DLQ
with the reason; A's own completion is then accepted and the ticket handled."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlmodel import Session

from contracts import codec
from contracts import events as ev
from contracts.envelope import Envelope
from contracts.examples import example_envelope
from contracts.topics import ACT, TRIAGE, UNIT_REPORTS, all_topics, own_task_topic
from services.act.app import create_app
from services.act.handlers import TOPICS
from services.act.models import Task
from services.act.settings import ActSettings
from services.common.kafka import ensure_topics, kafka_access
from services.common.store import make_engine
from services.units import sdk
from tests.harness.topics import start_group_at_the_end

pytestmark = pytest.mark.kafka

A, B = "city-management", "water"


async def publish(bootstrap: str, topic: str, envelope: Envelope[Any]) -> None:
    producer = AIOKafkaProducer(**kafka_access(bootstrap).options, acks="all")
    await producer.start()
    try:
        rec = codec.encode(envelope)
        await producer.send_and_wait(topic, rec.value, key=rec.key, headers=rec.headers)
    finally:
        await producer.stop()


def ticket_of(record: Any) -> bytes | None:
    """The ticket a record is about: its ce_ticketid header (a unit's task topic is keyed by the unit), else its key."""
    return next((v for k, v in record.headers or () if k == "ce_ticketid"), record.key)


async def records_of(bootstrap: str, topic: str, ticket_id: str, *, at_least: int = 1, timeout: float = 60.0) -> list[Any]:
    """The records of this ticket on `topic`, read from the start until there are `at_least` (or the time is up)."""
    deadline = time.monotonic() + timeout
    while True:
        consumer = AIOKafkaConsumer(topic, **kafka_access(bootstrap).options, auto_offset_reset="earliest",
                                    enable_auto_commit=False, group_id=None)
        await consumer.start()
        out: list[Any] = []
        try:
            quiet = 0
            while quiet < 3:
                batch = await consumer.getmany(timeout_ms=300)
                got = [r for records in batch.values() for r in records]
                quiet = 0 if got else quiet + 1
                out += [r for r in got if ticket_of(r) == ticket_id.encode()]
        finally:
            await consumer.stop()
        if len(out) >= at_least or time.monotonic() > deadline:
            return out
        await asyncio.sleep(0.3)


def task_status(engine: Any, task_id: str) -> str | None:
    with Session(engine) as session:
        task = session.get(Task, task_id)
        return task.status if task is not None else None


async def wait_for_status(engine: Any, task_id: str, wanted: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while task_status(engine, task_id) != wanted:
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} is {task_status(engine, task_id)!r}, not {wanted!r}")
        await asyncio.sleep(0.2)


def classified(ticket_id: str) -> Envelope[Any]:
    """triage's classification routing the ticket to A alone, without consultation: act dispatches it at once."""
    example = example_envelope(ev.TicketClassified.event_type, ticket_id)
    data = example.data.model_copy(update={"routing": ev.Routing(lead=A, level=ev.Level.district),
                                           "needs_consultation": False, "excluded_units": ()})
    return Envelope.origin(data, source="/cityops/triage", ticket_id=ticket_id)


async def test_a_completion_forged_by_another_unit_is_dead_lettered_and_the_task_stays_open(kafka_bootstrap, unique, tmp_path):
    ticket_id = f"T-FORGED-{unique}"
    task_id = f"{ticket_id}:{A}:1"
    await ensure_topics(kafka_bootstrap, all_topics([A, B]))
    settings = ActSettings(kafka_bootstrap=kafka_bootstrap, consumer_group=f"act-{unique}",
                           db_url=f"sqlite:///{tmp_path / 'act.db'}", batch_timeout_ms=50, log_level="WARNING")
    await start_group_at_the_end(kafka_bootstrap, settings.group_id, TOPICS)
    engine = make_engine(settings.store_url())  # the test's own reader of act's store
    app = create_app(settings)
    await app.start()
    try:
        await publish(kafka_bootstrap, TRIAGE.name, classified(ticket_id))
        await wait_for_status(engine, task_id, "assigned")
        (record,) = await records_of(kafka_bootstrap, own_task_topic(A), ticket_id)
        assigned = codec.decode(record.key, record.value, record.headers)
        assert assigned.data.task_id == task_id and assigned.data.unit == A
        assert record.key == A.encode() and assigned.ticket_id == ticket_id  # keyed by the unit, the ticket in ce_ticketid

        forged = sdk.complete(assigned, B, "done, says water")
        await publish(kafka_bootstrap, UNIT_REPORTS.name, forged)
        (dead,) = await records_of(kafka_bootstrap, UNIT_REPORTS.dlq, ticket_id)
        headers = {k: v.decode() for k, v in dead.headers}
        assert headers["ce_id"] == forged.id and headers["dlq_consumer"] == "act" and dead.value == codec.encode(forged).value
        assert headers["dlq_error"] == (f"rejected: TaskCompleted from unit {B} for task {task_id}, "
                                        f"which is assigned to unit {A}")
        assert task_status(engine, task_id) == "assigned"

        await publish(kafka_bootstrap, UNIT_REPORTS.name, sdk.complete(assigned, A, "cover replaced"))
        await wait_for_status(engine, task_id, "completed")
        handled = [codec.decode(r.key, r.value, r.headers) for r in await records_of(kafka_bootstrap, ACT.name, ticket_id, at_least=2)]
        assert [e.data.units for e in handled if isinstance(e.data, ev.TicketHandled)] == [(A,)]
    finally:
        await app.stop()
    assert len(await records_of(kafka_bootstrap, UNIT_REPORTS.dlq, ticket_id, timeout=0)) == 1
