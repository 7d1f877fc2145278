"""Two instances of one service in one consumer group on one PostgreSQL store, with partitions moving
between them mid-stream (a second instance joins, then the first leaves): every event is applied exactly
once and nothing is lost (issue 12, point 6). The records the second instance receives again after the
rebalance (those whose offsets the first had not committed yet) are skipped by `processed_events`: this
test fails if redelivered events are applied again. One ticket's events come from two topics with
different partition counts, so both instances write the same tickets' rows; the per-ticket lock that
serialises such writers is proven on its own in test_ticket_locks_pg.py (here the overlap is too short
to lose an update reliably without it). Real broker (the session's), real PostgreSQL (tests/integration/pg.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select
from sqlmodel import Field, Session, SQLModel

from contracts import codec
from contracts import events as ev
from contracts.envelope import Envelope
from contracts.topics import TopicSpec
from services.common.batch_state import table_of
from services.common.handler import HandlerContext, HandlerSpec
from services.common.kafka import ensure_topics, kafka_access, make_broker
from services.common.pipeline import EventPipeline
from services.common.settings import ServiceSettings
from services.common.store import ProcessedEvent, create_tables, make_engine
from tests.integration.pg import postgres_server  # noqa: F401

pytestmark = pytest.mark.kafka

TICKETS, PER_TICKET = 10, 60


class AppliedCount(SQLModel, table=True):
    __tablename__ = "test_rebalance_applied"

    ticket_id: str = Field(primary_key=True)
    applied: int = 0


def count_it(ctx: HandlerContext[None], envelope: Envelope[Any]) -> Iterator[Any]:
    """Read-modify-write of the ticket's row: two unserialised writers of one ticket would lose an update."""
    row = ctx.session.get(AppliedCount, envelope.ticket_id) or AppliedCount(ticket_id=envelope.ticket_id)
    time.sleep(0.01)  # a handler's work: keeps batches in flight while partitions move
    row.applied += 1
    ctx.session.add(row)
    yield from ()


def instance(bootstrap: str, group: str, url: str, topics: list[str]) -> tuple[Any, EventPipeline[None]]:
    """One instance: its own broker and its own engine, as in its own process (one engine would share the
    pipeline's in-process write lock and hide what two processes do)."""
    engine = make_engine(url)
    settings = ServiceSettings(kafka_bootstrap=bootstrap, consumer_group=group, batch_timeout_ms=50, batch_max_records=50)
    broker = make_broker(settings)
    spec = HandlerSpec(topics=topics, event_types=[ev.TicketSubmitted.event_type], deps=None, handle=count_it)
    pipeline = EventPipeline(name="counter", settings=settings, engine=engine, spec=spec)
    pipeline.subscribe(broker)
    return broker, pipeline


def processed(engine: Any) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(ProcessedEvent)).one()[0])  # type: ignore[call-overload]


async def wait_processed(engine: Any, at_least: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while processed(engine) < at_least:
        assert time.monotonic() < deadline, f"only {processed(engine)} of {at_least} events applied"
        await asyncio.sleep(0.2)


async def test_two_instances_through_two_rebalances_apply_every_event_once(kafka_bootstrap, unique, postgres_server) -> None:  # noqa: F811
    topics = [f"test.rebalance.{unique}.a", f"test.rebalance.{unique}.b"]
    # Different partition counts: one ticket's two partitions may belong to different instances (with equal
    # counts the default range assignor happens to give both to one instance; nothing should rely on that).
    await ensure_topics(kafka_bootstrap, [TopicSpec(name, name, (), partitions=p) for t, n in zip(topics, (3, 4), strict=True)
                                          for name, p in ((t, n), (t + ".dlq", 1))])
    url = postgres_server.new_database()
    engine = make_engine(url)
    create_tables(engine, [table_of(AppliedCount)])
    producer = AIOKafkaProducer(**kafka_access(kafka_bootstrap).options, acks="all")
    await producer.start()
    try:
        for n in range(PER_TICKET):
            for t in range(TICKETS):
                rec = codec.encode(Envelope.origin(ev.TicketSubmitted(channel="phone", text=f"complaint {n}",
                                                                      submitted_at=datetime.now(UTC)),
                                                   source="/test", ticket_id=f"T-{t}"))
                await producer.send(topics[n % 2], rec.value, key=rec.key, headers=rec.headers)
        await producer.flush()
    finally:
        await producer.stop()
    total = TICKETS * PER_TICKET

    first, _ = instance(kafka_bootstrap, f"g-{unique}", url, topics)
    second, _ = instance(kafka_bootstrap, f"g-{unique}", url, topics)
    await first.start()
    await wait_processed(engine, total // 10)
    await second.start()  # partitions move: some go to the second instance mid-stream
    await wait_processed(engine, total * 3 // 4)  # both instances at work meanwhile, on the same tickets
    await first.stop()  # and back: the second takes them all
    try:
        await wait_processed(engine, total)
        await asyncio.sleep(2)  # anything applied twice would show up now
    finally:
        await second.stop()

    with Session(engine) as session:
        counts = {row.ticket_id: row.applied for row in session.exec(select(AppliedCount)).scalars()}  # type: ignore[call-overload]
    assert processed(engine) == total
    assert counts == {f"T-{t}": PER_TICKET for t in range(TICKETS)}
    engine.dispose()
