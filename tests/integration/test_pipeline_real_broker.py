"""The shared pipeline on the real broker: every contract event round-trips, poison records are
dead-lettered without blocking their partition, and redelivery changes nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlmodel import Session, select

from contracts import codec
from contracts import events as ev
from contracts.envelope import Envelope
from contracts.examples import all_examples
from contracts.topics import TopicSpec
from services.common.kafka import ensure_topics, kafka_access, make_broker
from services.common.pipeline import Emit, EventPipeline, HandlerSpec
from services.common.settings import ServiceSettings
from services.common.store import ProcessedEvent, create_tables, make_engine

pytestmark = pytest.mark.kafka


async def read_all(bootstrap: str, topic: str, expect: int, timeout: float = 30.0) -> list:
    consumer = AIOKafkaConsumer(topic, **kafka_access(bootstrap).options, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(out) < expect and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out


async def test_every_contract_event_round_trips_through_the_broker(kafka_bootstrap, unique):
    topic = f"test.roundtrip.{unique}"
    await ensure_topics(kafka_bootstrap, [TopicSpec(topic, "round trip", (), partitions=1)])
    examples = all_examples()
    producer = AIOKafkaProducer(**kafka_access(kafka_bootstrap).options, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, value=r.value, key=r.key, headers=r.headers)
                   for r in map(codec.encode, examples)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    records = await read_all(kafka_bootstrap, topic, len(examples))
    decoded = [codec.decode(r.key, r.value, r.headers) for r in records]
    assert decoded == examples
    assert all(dict(r.headers)["ce_specversion"] == b"1.0" for r in records)


def _register(ctx, envelope):
    if "explode" in envelope.data.text:
        raise ValueError("handler cannot handle this ticket")
    registered = ev.TicketRegistered(ticket=ev.RegisteredTicket(
        channel=envelope.data.channel, text=envelope.data.text, caller=ev.CallerRef(anonymous=True),
        location=envelope.data.location, urgency=envelope.data.urgency, submitted_at=envelope.data.submitted_at))
    yield Emit(ctx.deps, envelope.caused(registered, source=ctx.source))


def _submitted(text: str, ticket_id: str) -> Envelope:
    return Envelope.origin(ev.TicketSubmitted(channel="phone", text=text, submitted_at=datetime.now(UTC)),
                           source="/test", ticket_id=ticket_id)


async def _topics_and_store(bootstrap: str, unique: str, tmp_path) -> tuple[str, str, Any]:
    """A source topic, an output topic, the source's DLQ (one partition each) and a fresh SQLite store."""
    src, out = f"test.in.{unique}", f"test.out.{unique}"
    await ensure_topics(bootstrap, [TopicSpec(n, n, (), partitions=1) for n in (src, out, src + ".dlq")])
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    create_tables(engine, [])
    return src, out, engine


async def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes | None, list]]) -> None:
    """(value, key, headers) records, each acknowledged before the next: their order on the partition is known."""
    producer = AIOKafkaProducer(**kafka_access(bootstrap).options, acks="all")
    await producer.start()
    try:
        for value, key, headers in records:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


def _encoded(envelope: Envelope) -> tuple[bytes, bytes, list]:
    rec = codec.encode(envelope)
    return rec.value, rec.key, rec.headers


def _registrar(bootstrap: str, unique: str, engine: Any, src: str, out: str) -> tuple[Any, EventPipeline]:
    """A broker and the `_register` pipeline from `src` to `out`, subscribed, not started."""
    settings = ServiceSettings(kafka_bootstrap=bootstrap, consumer_group=f"g-{unique}", batch_timeout_ms=50)
    broker = make_broker(settings)
    spec = HandlerSpec(topics=[src], event_types=[ev.TicketSubmitted.event_type], deps=out, handle=_register)
    pipeline = EventPipeline(name="registrar", settings=settings, engine=engine, spec=spec)
    pipeline.subscribe(broker)
    return broker, pipeline


async def test_malformed_record_is_dead_lettered_and_the_next_one_processed(kafka_bootstrap, unique, tmp_path):
    src, out, engine = await _topics_and_store(kafka_bootstrap, unique, tmp_path)
    broker, _ = _registrar(kafka_bootstrap, unique, engine, src, out)
    good_before, good_after = _submitted("路灯坏了", "T-1"), _submitted("noise at night", "T-2")
    poison_handler = _submitted("please explode", "T-3")
    await _produce(kafka_bootstrap, src, [
        _encoded(good_before),
        (b'{"channel": "phone"', b"T-X", codec.encode(good_after).headers),  # truncated JSON
        (b"{}", b"T-Y", [("ce_id", b"x")]),  # no ce_type: not ours to judge
        _encoded(poison_handler),
        _encoded(good_after),
    ])

    async with broker:
        await broker.start()
        outputs = await read_all(kafka_bootstrap, out, 2)
        dead = await read_all(kafka_bootstrap, src + ".dlq", 3)
    assert [codec.decode(r.key, r.value, r.headers).data.ticket.text for r in outputs] == ["路灯坏了", "noise at night"]
    reasons = {r.key: dict(r.headers)["dlq_error"].decode() for r in dead}
    assert "invalid cityops.intake.ticket.submitted.v1 data" in reasons[b"T-X"]
    assert "missing CloudEvents header" in reasons[b"T-Y"]
    assert "handler cannot handle this ticket" in reasons[b"T-3"]
    assert dict(dead[0].headers)["dlq_topic"] == src.encode()


async def test_redelivered_events_change_nothing_and_resend_the_same_ids(kafka_bootstrap, unique, tmp_path):
    src, out, engine = await _topics_and_store(kafka_bootstrap, unique, tmp_path)
    events = [_submitted(f"complaint {i}", f"T-{i}") for i in range(5)]
    # The same five events twice: what an at-least-once producer does after a lost ack.
    await _produce(kafka_bootstrap, src, [_encoded(e) for e in events + events])
    broker, pipeline = _registrar(kafka_bootstrap, unique, engine, src, out)
    async with broker:
        await broker.start()
        outputs = await read_all(kafka_bootstrap, out, 10, timeout=8)
    with Session(engine) as s:
        applied = s.exec(select(ProcessedEvent)).all()
    assert len(applied) == 5
    ids = [dict(r.headers)["ce_id"] for r in outputs]
    # Duplicates are re-sent only while still in the outbox; whatever was sent carries derived ids.
    assert len(set(ids)) == 5 and pipeline.stats["applied"] == 5 and pipeline.stats["duplicates"] == 5


async def test_a_record_with_binary_header_bytes_is_dead_lettered_not_stuck(kafka_bootstrap, unique, tmp_path):
    src, out, engine = await _topics_and_store(kafka_bootstrap, unique, tmp_path)
    value, key, headers = _encoded(_submitted("binary header", "T-BIN"))
    await _produce(kafka_bootstrap, src, [(value, key, headers + [("trace", b"\xff\xfe\x00")]),
                                          _encoded(_submitted("after the binary one", "T-GOOD"))])
    broker, _ = _registrar(kafka_bootstrap, unique, engine, src, out)
    async with broker:
        await broker.start()
        outputs = await read_all(kafka_bootstrap, out, 1)
        dead = await read_all(kafka_bootstrap, src + ".dlq", 1)
    assert [r.key for r in outputs] == [b"T-GOOD"]
    assert [r.key for r in dead] == [b"T-BIN"] and b"not UTF-8" in dict(dead[0].headers)["dlq_error"]
