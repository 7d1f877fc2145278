"""On the real broker: an output larger than its topic's max.message.bytes dead-letters the event that produced it,
with the reason, and the partition moves on (issue 12, point 3). The pipeline's `max_record_bytes` is the topic's
limit, so the oversized record is never sent (a batch the broker refuses leaves aiokafka's idempotent producer
failing that partition with OutOfOrderSequenceNumber until it is restarted)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from sqlmodel import Session, select

from contracts import codec
from contracts import events as ev
from contracts.envelope import Envelope
from contracts.topics import TopicSpec
from services.common.kafka import ensure_topics, kafka_access, make_broker
from services.common.pipeline import Emit, EventPipeline, HandlerSpec
from services.common.settings import ServiceSettings
from services.common.store import OutboxRecord, ProcessedEvent, create_tables, make_engine
from tests.integration.test_pipeline_real_broker import read_all

pytestmark = pytest.mark.kafka

OUT_LIMIT = 4000  # bytes: the output topic's max.message.bytes; the inputs fit, an output twice as large does not


def _register_twice_over(ctx: Any, envelope: Envelope[Any]) -> Any:
    """A registered ticket whose text is its submission's twice over: an output larger than its cause."""
    registered = ev.TicketRegistered(ticket=ev.RegisteredTicket(
        channel=envelope.data.channel, text=envelope.data.text * 2, caller=ev.CallerRef(anonymous=True),
        location=envelope.data.location, urgency=envelope.data.urgency, submitted_at=envelope.data.submitted_at))
    yield Emit(ctx.deps, envelope.caused(registered, source=ctx.source))


def _submitted(text: str, ticket_id: str) -> Envelope[Any]:
    return Envelope.origin(ev.TicketSubmitted(channel="phone", text=text, submitted_at=datetime.now(UTC)),
                           source="/test", ticket_id=ticket_id)


async def test_an_output_over_the_topics_record_limit_dead_letters_its_cause_and_the_partition_moves_on(
        kafka_bootstrap, unique, tmp_path):
    src, out = f"test.in.{unique}", f"test.out.{unique}"
    await ensure_topics(kafka_bootstrap, [TopicSpec(src, src, (), partitions=1), TopicSpec(src + ".dlq", "dlq", (), partitions=1),
                                          TopicSpec(out, out, (), partitions=1, config={"max.message.bytes": str(OUT_LIMIT)})])
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    create_tables(engine, [])
    events = [_submitted("路灯坏了", "T-1"), _submitted("长" * (OUT_LIMIT // 4), "T-BIG"), _submitted("noise at night", "T-2")]
    producer = AIOKafkaProducer(**kafka_access(kafka_bootstrap).options, acks="all")
    await producer.start()
    try:
        for envelope in events:
            rec = codec.encode(envelope)
            assert len(rec.value) < OUT_LIMIT < 2 * len(rec.value) or envelope.ticket_id != "T-BIG"
            await producer.send_and_wait(src, rec.value, key=rec.key, headers=rec.headers)
    finally:
        await producer.stop()

    settings = ServiceSettings(kafka_bootstrap=kafka_bootstrap, consumer_group=f"g-{unique}", batch_timeout_ms=50,
                               retry_backoff_s=0.05, max_record_bytes=OUT_LIMIT)
    broker = make_broker(settings)
    spec = HandlerSpec(topics=[src], event_types=[ev.TicketSubmitted.event_type], deps=out, handle=_register_twice_over)
    pipeline = EventPipeline(name="registrar", settings=settings, engine=engine, spec=spec)
    pipeline.subscribe(broker)
    async with broker:
        await broker.start()
        outputs = await read_all(kafka_bootstrap, out, 2)
        dead = await read_all(kafka_bootstrap, src + ".dlq", 1)
        await pipeline.flush_outbox()

    assert [r.key for r in outputs] == [b"T-1", b"T-2"]
    assert [r.key for r in dead] == [b"T-BIG"] and dead[0].value == codec.encode(events[1]).value
    reason = dict(dead[0].headers)["dlq_error"].decode()
    assert reason.startswith(f"output too large: the output to {out} is")
    with Session(engine) as session:
        outcomes = {row.event_id: row.outcome for row in session.exec(select(ProcessedEvent)).all()}
        assert session.exec(select(OutboxRecord)).all() == []
    assert outcomes == {events[0].id: "applied", events[1].id: "dead-lettered", events[2].id: "applied"}
