"""A record fails only itself, and nothing waits for ever (issue 12, points 3 and 4), through EventPipeline, no Kafka.

An output the broker will never take dead-letters its cause and the batch moves on; a transient failure fails the
batch, logged once and retried after a backoff; a database that cannot write stops the batch while one record's
integrity error dead-letters that record; dead letters go through the outbox; a parked event expires; a tick's
unpublished output is re-sent by the next tick; old applied-event ids are pruned.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from aiokafka.errors import (
    KafkaConnectionError,
    MessageSizeTooLargeError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from contracts import events as ev
from contracts.envelope import Envelope
from services.common.pipeline import Emit, EventPipeline, HandlerSpec, NotYet
from services.common.settings import ServiceSettings
from services.common.store import OutboxRecord, ProcessedEvent, create_tables, make_engine
from tests.harness.pipeline import Clock, Record, record_of

SOURCE, OUT, UNIT = "test.in", "test.out", "test.unit.nobody"
LIMIT = 2000  # bytes: the stand-in broker's record limit


class Broker:
    """Publishes like FastStream's broker; refuses what a real one would, synchronously (the producer's own
    checks) or in the future (the broker's answer), and can be told to fail transiently."""

    def __init__(self, *, batches: bool = False) -> None:
        self.published: list[Record] = []
        self.down = False
        # True: records are sent in batches (what is published before the loop next runs) and a batch with a record
        # over the limit is refused whole, by the broker, as Kafka does; False: the producer refuses it before sending.
        self.batches = batches
        self._batch: list[tuple[Record, asyncio.Future[None]]] = []

    async def publish(self, value: bytes, topic: str, *, key: bytes | None = None, headers: dict[str, str] | None = None,
                      **_: Any) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.down:
            future.set_exception(KafkaConnectionError("simulated: broker unreachable"))
            return future
        if self.batches:
            if not self._batch:
                asyncio.get_running_loop().call_soon(self._send_batch)
            self._batch.append((Record(topic, 0, 0, key, value, [(k, v.encode()) for k, v in (headers or {}).items()]), future))
            return future
        if len(value) > LIMIT:
            raise MessageSizeTooLargeError(f"{len(value)} bytes")
        if topic == UNIT:
            raise UnknownTopicOrPartitionError()
        if topic.startswith("test.secret"):
            future.set_exception(TopicAuthorizationFailedError(topic))
        else:
            self.published.append(Record(topic, 0, 0, key, value, [(k, v.encode()) for k, v in (headers or {}).items()]))
            future.set_result(None)
        return future

    def _send_batch(self) -> None:
        batch, self._batch = self._batch, []
        whole = any(len(record.value or b"") > LIMIT for record, _ in batch)
        for record, future in batch:
            if whole:
                future.set_exception(MessageSizeTooLargeError())
            else:
                self.published.append(record)
                future.set_result(None)

    def on(self, topic: str) -> list[Record]:
        return [r for r in self.published if r.topic == topic]


def _submitted(text: str, ticket_id: str) -> Envelope[Any]:
    return Envelope.origin(ev.TicketSubmitted(channel="phone", text=text, submitted_at=datetime(2025, 11, 3, 9, tzinfo=UTC)),
                           source="/test", ticket_id=ticket_id)


def _register(ctx: Any, envelope: Envelope[Any]) -> Any:
    """Echoes the text into a registered ticket on `OUT`, or wherever the text says ("to:<topic>"), twice over if
    it says "grow" (an output larger than its cause)."""
    words = envelope.data.text.split()
    if "db-down" in words:
        raise OperationalError("INSERT", {}, Exception("database or disk is full"))
    if "later" in words:
        raise NotYet("waits for its classification")
    if "duplicate-row" in words or "store" in words:
        ctx.session.execute(text("INSERT INTO processed_events (consumer, event_id, topic, partition, \"offset\", outcome, "
                                 "processed_at) VALUES ('x', 'same', 't', 0, 0, 'applied', '2025-01-01')"))
    topic = next((w.removeprefix("to:") for w in words if w.startswith("to:")), OUT)
    registered = ev.TicketRegistered(ticket=ev.RegisteredTicket(
        channel=envelope.data.channel, text=envelope.data.text * (2 if "grow" in words else 1), caller=ev.CallerRef(anonymous=True),
        location=envelope.data.location, urgency=envelope.data.urgency, submitted_at=envelope.data.submitted_at))
    yield Emit(topic, envelope.caused(registered, source=ctx.source))


class World:
    def __init__(self, tmp_path: Any, broker: Broker | None = None, **settings: Any) -> None:
        self.engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
        create_tables(self.engine, [])
        self.clock = Clock()
        self.settings = ServiceSettings(kafka_bootstrap="127.0.0.1:1", retry_backoff_s=0.01, **settings)
        spec = HandlerSpec(topics=[SOURCE], event_types=[ev.TicketSubmitted.event_type], deps=None, handle=_register)
        self.pipeline: EventPipeline[Any] = EventPipeline(name="registrar", settings=self.settings, engine=self.engine,
                                                          spec=spec, clock=self.clock)
        self.broker = broker or Broker()
        self.pipeline.broker = self.broker  # type: ignore[assignment]
        self.offset = 0

    def record(self, text: str, ticket_id: str = "T-1") -> Record:
        self.offset += 1
        return record_of(_submitted(text, ticket_id), topic=SOURCE, offset=self.offset)

    def feed(self, records: list[Record]) -> None:
        async def run() -> None:
            try:
                await self.pipeline.handle_records(records)
            finally:
                await self.pipeline.flush_outbox()
        asyncio.run(run())

    def run(self, coroutine: Any) -> Any:
        async def run() -> Any:
            try:
                return await coroutine
            finally:
                await self.pipeline.flush_outbox()
        return asyncio.run(run())

    def outbox(self) -> list[tuple[str, str]]:
        with Session(self.engine) as session:
            return [(r.cause_id, r.topic) for r in session.execute(select(OutboxRecord)).scalars()]

    def outcomes(self) -> dict[str, str]:
        with Session(self.engine) as session:
            return {r.event_id: r.outcome for r in session.execute(select(ProcessedEvent)).scalars()}


def _dlq_error(record: Record) -> str:
    return record.header("dlq_error") or ""


@pytest.mark.parametrize(("text", "refusal"), [
    ("grow " + "x" * (LIMIT // 2), "MessageSizeTooLargeError"),  # refused by the producer before it is sent
    (f"to:{UNIT}", "UnknownTopicOrPartitionError"),   # a unit without a topic
    ("to:test.secret", "TopicAuthorizationFailedError"),  # refused by the broker, in the future
])
def test_an_output_the_broker_will_never_take_dead_letters_its_cause_and_the_batch_moves_on(tmp_path, text, refusal):
    world = World(tmp_path)
    poison, after = world.record(text, "T-BAD"), world.record("a lamp is broken", "T-GOOD")

    with structlog.testing.capture_logs() as logs:
        world.feed([poison, after])  # does not raise: the batch is acknowledged

    assert [r.key for r in world.broker.on(OUT)] == [b"T-GOOD"]
    (dead,) = world.broker.on(SOURCE + ".dlq")
    assert dead.key == b"T-BAD" and dead.value == poison.value
    assert refusal in _dlq_error(dead) and "could not be published" in _dlq_error(dead)
    assert world.outcomes()[poison.id or ""] == "dead-lettered"
    assert world.outbox() == []  # nothing left to re-send for ever at the next start
    assert [e["log_level"] for e in logs if e["event"] == "output_unpublishable"] == ["error"]


def test_an_output_over_the_record_limit_is_never_sent_its_event_is_dead_lettered_with_its_effects_rolled_back(tmp_path):
    world = World(tmp_path, max_record_bytes=LIMIT)
    poison, after = world.record("grow store " + "x" * (LIMIT // 2), "T-BAD"), world.record("fine", "T-GOOD")
    world.feed([poison, after])
    assert all(len(r.value or b"") <= LIMIT for r in world.broker.published)  # the broker never saw it
    assert [r.key for r in world.broker.on(OUT)] == [b"T-GOOD"]
    (dead,) = world.broker.on(SOURCE + ".dlq")
    assert dead.key == b"T-BAD" and _dlq_error(dead).startswith("output too large: the output to test.out is")
    assert world.outcomes()[poison.id or ""] == "dead-lettered"
    with Session(world.engine) as session:  # what its handler wrote went with it
        assert session.execute(text("SELECT count(*) FROM processed_events WHERE consumer = 'x'")).scalar() == 0


def test_a_producer_batch_refused_whole_for_one_large_record_dead_letters_only_that_records_cause(tmp_path):
    world = World(tmp_path, Broker(batches=True))
    before, poison, after = (world.record("first", "T-1"), world.record("grow " + "x" * (LIMIT // 2), "T-BAD"),
                             world.record("last", "T-2"))
    world.feed([before, poison, after])
    assert [r.key for r in world.broker.on(OUT)] == [b"T-1", b"T-2"]
    assert [r.key for r in world.broker.on(SOURCE + ".dlq")] == [b"T-BAD"]
    assert world.outcomes() == {before.id: "applied", poison.id: "dead-lettered", after.id: "applied"}


def test_an_unpublishable_output_left_in_the_outbox_does_not_stop_the_restart(tmp_path):
    world = World(tmp_path)
    big = world.record("grow " + "y" * (LIMIT // 2), "T-BIG")
    world.broker.down = True
    with pytest.raises(KafkaConnectionError):
        world.feed([big])  # committed to the outbox, not confirmed: what a crash would leave
    world.broker.down = False

    assert world.run(world.pipeline.recover_outbox()) == 1
    # Its cause is not at hand at a restart: the output, without the value that is too large, in the DLQ of the
    # topic its cause came from, at the cause's position.
    (dead,) = world.broker.on(SOURCE + ".dlq")
    assert dead.key == b"T-BIG" and dead.value == b"" and "MessageSizeTooLargeError" in _dlq_error(dead)
    assert dead.header("dlq_offset") == str(big.offset) and dead.header("dlq_output_topic") == OUT
    assert world.outbox() == []


def test_a_transient_failure_fails_the_batch_logged_once_with_where_and_why_and_retried_after_a_growing_pause(tmp_path):
    world = World(tmp_path)
    records = [world.record("noise at night", "T-1"), world.record("a hole in the road", "T-2")]
    world.broker.down = True
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            with pytest.raises(KafkaConnectionError):
                world.feed(records)
    failed = [e for e in logs if e["event"] == "batch_failed"]
    assert len(failed) == 3 and {e["log_level"] for e in failed} == {"error"}
    assert failed[0]["positions"] == [f"{SOURCE}[0]@1-2"] and "broker unreachable" in failed[0]["error"]
    assert [e["retry_in_s"] for e in failed] == [0.01, 0.02, 0.04]

    world.broker.down = False
    world.feed(records)
    assert sorted(r.key for r in world.broker.on(OUT)) == [b"T-1", b"T-2"]
    assert world.pipeline._failures == 0  # the next failure starts from the first pause again


def test_a_database_that_cannot_write_stops_the_batch_but_one_records_integrity_error_dead_letters_only_it(tmp_path):
    world = World(tmp_path)
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(OperationalError):
            world.feed([world.record("fine", "T-1"), world.record("db-down", "T-2")])
    assert world.broker.published == [] and world.outcomes() == {}
    (failed,) = [e for e in logs if e["event"] == "batch_failed"]
    assert failed["cause"] == "database unavailable" and "disk is full" in failed["error"]

    # A row that collides with one already there: only that record is dead-lettered, the batch commits.
    world.feed([world.record("duplicate-row", "T-3")])
    first, second = world.record("duplicate-row again", "T-4"), world.record("fine", "T-5")
    world.feed([first, second])
    (dead,) = world.broker.on(SOURCE + ".dlq")
    assert dead.key == b"T-4" and "IntegrityError" in _dlq_error(dead)
    assert [r.key for r in world.broker.on(OUT)] == [b"T-3", b"T-5"]


def test_a_dead_letter_goes_through_the_outbox_and_survives_a_failed_publish(tmp_path):
    world = World(tmp_path)
    world.feed([world.record("duplicate-row", "T-0")])
    poison = world.record("duplicate-row", "T-BAD")
    undecodable = Record(SOURCE, 0, 99, b"T-X", b'{"channel": "phone"', list(poison.headers))
    world.broker.down = True
    with pytest.raises(KafkaConnectionError):
        world.feed([poison, undecodable])
    assert sorted(topic for _, topic in world.outbox()) == [SOURCE + ".dlq", SOURCE + ".dlq"]

    world.broker.down = False
    world.feed([poison, undecodable])  # the redelivery
    assert sorted(r.key or b"" for r in world.broker.on(SOURCE + ".dlq")) == [b"T-BAD", b"T-X"]
    assert world.outbox() == []


def test_a_parked_event_whose_dependency_never_arrives_is_dead_lettered_after_the_limit(tmp_path):
    world = World(tmp_path, parked_timeout_s=3600)
    waiting = world.record("later", "T-1")
    world.feed([waiting])
    assert world.run(world.pipeline.upkeep_once()) == (0, 0)  # not yet: it may still come

    world.clock.advance(minutes=61)
    assert world.run(world.pipeline.upkeep_once()) == (1, 0)
    (dead,) = world.broker.on(SOURCE + ".dlq")
    assert dead.key == b"T-1" and _dlq_error(dead).startswith("dependency never arrived")
    assert world.outcomes() == {waiting.id: "dead-lettered"} and world.outbox() == []
    with Session(world.engine) as session:
        assert session.execute(text("SELECT count(*) FROM parked_events")).scalar() == 0


def _reminder(ctx: Any) -> Any:
    if ctx.now() < datetime(2025, 11, 3, 10, tzinfo=UTC):
        yield Emit(OUT, Envelope.origin(ev.TicketSubmitted(channel="phone", text="reminder", submitted_at=ctx.now()),
                                        source=ctx.source, ticket_id="T-TICK"))


def test_a_tick_output_whose_publish_failed_is_sent_by_the_next_tick_not_at_restart(tmp_path):
    world = World(tmp_path)
    tick = _reminder
    world.broker.down = True
    with pytest.raises(KafkaConnectionError):
        world.run(world.pipeline.tick_once(tick))
    world.broker.down = False
    world.clock.advance(hours=2)  # this round produces nothing new
    world.run(world.pipeline.tick_once(tick))
    assert [r.key for r in world.broker.on(OUT)] == [b"T-TICK"]
    assert world.outbox() == []


def test_applied_event_ids_are_pruned_after_the_retention_and_kept_within_it(tmp_path):
    world = World(tmp_path, processed_retention_s=7 * 86400)
    old, recent = world.record("old complaint", "T-OLD"), world.record("recent complaint", "T-NEW")
    world.feed([old])
    world.clock.advance(days=6)
    world.feed([recent])
    world.clock.advance(days=2)

    assert world.run(world.pipeline.upkeep_once()) == (0, 1)
    assert set(world.outcomes()) == {recent.id}
    world.feed([recent])  # a copy within the window is still recognised and changes nothing
    assert world.pipeline.stats["duplicates"] == 1 and world.pipeline.stats["applied"] == 2


def test_the_pause_between_redeliveries_doubles_up_to_its_cap():
    from services.common.delivery import backoff_s

    assert [backoff_s(n, 0.5, 4) for n in (1, 2, 3, 4, 5, 60, 10_000)] == [0.5, 1, 2, 4, 4, 4, 4]


def test_confirmed_outputs_are_cleared_together_after_the_wait_and_at_once_by_a_flush(tmp_path: Any) -> None:
    """At a city's normal rate a batch holds a record or two: the outbox rows of several batches are deleted in one
    transaction after `outbox_clear_delay_s`, not one transaction per batch; a flush (a stop) does not wait."""
    world = World(tmp_path, outbox_clear_delay_s=0.3)
    deletes: list[int] = []
    clear = world.pipeline._clear_outbox

    def counted(cause_ids: list[str]) -> None:
        deletes.append(len(cause_ids))
        clear(cause_ids)

    world.pipeline._clear_outbox = counted  # type: ignore[method-assign]

    async def three_batches_then_wait() -> list[tuple[str, str]]:
        for i in range(3):
            await world.pipeline.handle_records([world.record(f"batch {i}", f"T-{i}")])
        left_during_the_wait = world.outbox()
        await asyncio.sleep(0.5)
        return left_during_the_wait

    left = asyncio.run(three_batches_then_wait())
    assert len(left) == 3  # confirmed, still waiting to be cleared
    assert deletes == [3]  # then one transaction for the three batches
    assert world.outbox() == []

    started = asyncio.new_event_loop()
    try:
        async def one_batch_then_flush() -> float:
            await world.pipeline.handle_records([world.record("one more", "T-9")])
            before = time.perf_counter()
            await world.pipeline.flush_outbox()
            return time.perf_counter() - before
        waited = started.run_until_complete(one_batch_then_flush())  # another loop than the first: the signal follows it
    finally:
        started.close()
    assert deletes == [3, 1] and world.outbox() == []
    assert waited < 0.3
