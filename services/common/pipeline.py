"""The consume → apply → publish → commit loop every workflow service runs.

One batch at a time (up to `batch_max_records`):
1. records of event types this service does not handle are skipped without decoding;
2. each remaining record is decoded; one that cannot be decoded goes to `<topic>.dlq`;
3. in ONE database transaction, each new event is applied by the service's handler, and the
   event id plus the records it produced (the outbox) are stored; an event already applied is
   not applied again, its stored output is re-sent instead;
4. every produced record is sent without waiting for each acknowledgement, then all are awaited;
5. only then is the batch acknowledged (offsets committed), by FastStream's NACK_ON_ERROR policy:
   if anything above raises, the offsets are rewound and the batch is redelivered.

A handler error that is not transient (a bug, an impossible state) dead-letters that one event
with its reason, so it never blocks its partition.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.middlewares import AckPolicy
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session

from contracts.codec import DecodeError, KafkaRecord, decode, encode
from contracts.envelope import Envelope, utcnow

from .logs import bound_event, get_logger
from .settings import ServiceSettings
from .store import OutboxRecord, ParkedEvent, ProcessedEvent

log = get_logger(__name__)

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Emit:
    """A record a handler wants published."""

    topic: str
    envelope: Envelope[Any]


@dataclass
class HandlerContext:
    session: Session
    now: Clock
    source: str
    settings: ServiceSettings
    extras: dict[str, Any] = field(default_factory=dict)


class Handler(Protocol):
    def __call__(self, ctx: HandlerContext, envelope: Envelope[Any]) -> Iterable[Emit]: ...


TickHandler = Callable[[HandlerContext], Iterable[Emit]]


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def dead_letter_for(record: Any, consumer: str, reason: str) -> DeadLetter:
    headers = list(record.headers or ())
    headers += [
        ("dlq_error", reason.encode()[:4000]),
        ("dlq_topic", record.topic.encode()),
        ("dlq_partition", str(record.partition).encode()),
        ("dlq_offset", str(record.offset).encode()),
        ("dlq_consumer", consumer.encode()),
    ]
    return DeadLetter(record.topic + ".dlq", record.key, record.value, headers)


class NotYet(LookupError):
    """Raised by a handler when the event depends on one not seen yet (it arrives on another topic)."""


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


class EventPipeline:
    """Binds a service's handler to its topics with exactly-once effects."""

    def __init__(self, *, name: str, settings: ServiceSettings, engine: Engine, handler: Handler,
                 topics: Sequence[str], event_types: Iterable[str] | None, clock: Clock = utcnow,
                 extras: dict[str, Any] | None = None, group_id: str | None = None,
                 decoder: Callable[[Any], Envelope[Any]] | None = None) -> None:
        self.name = name
        self.settings = settings
        self.engine = engine
        self.handler = handler
        self.topics = list(topics)
        # None: every record is for us (e.g. a channel of plain JSON without CloudEvents headers).
        self.event_types = None if event_types is None else {t.encode() for t in event_types}
        self.group_id = group_id or settings.group_id
        self.decoder = decoder or (lambda r: decode(r.key, r.value, r.headers))
        self.clock = clock
        self.source = f"/cityops/{name}"
        self.extras = extras or {}
        self.broker: KafkaBroker | None = None
        self.stats = {"batches": 0, "applied": 0, "duplicates": 0, "dead_lettered": 0, "skipped": 0, "published": 0}

    # ---------------------------------------------------------------- wiring

    def subscribe(self, broker: KafkaBroker) -> None:
        self.broker = broker

        async def _no_decode(_msg: Any) -> None:
            return None  # we decode ourselves, only the event types we handle

        @broker.subscriber(
            *self.topics, group_id=self.group_id, batch=True,
            max_records=self.settings.batch_max_records, batch_timeout_ms=self.settings.batch_timeout_ms,
            auto_offset_reset="earliest", ack_policy=AckPolicy.NACK_ON_ERROR, decoder=_no_decode,
            title=f"{self.name}", description=f"{self.name}: {', '.join(sorted(t.decode() for t in self.event_types or ()))}",
        )
        async def on_batch(message: KafkaMessage) -> None:
            await self.handle_records(message.raw_message)

    def context(self, session: Session) -> HandlerContext:
        return HandlerContext(session=session, now=self.clock, source=self.source, settings=self.settings, extras=self.extras)

    # ---------------------------------------------------------------- the loop

    async def handle_records(self, records: Sequence[Any]) -> None:
        started = time.perf_counter()
        wanted, dead = self._decode_wanted(records)
        outputs, cause_ids, dead_from_handlers = await asyncio.to_thread(self._apply, wanted)
        dead += dead_from_handlers
        await self._publish(outputs, dead)
        if cause_ids:
            await asyncio.to_thread(self._clear_outbox, cause_ids)
        self.stats["batches"] += 1
        log.debug("batch_handled", service=self.name, records=len(records), applied=len(wanted),
                  published=len(outputs), dead_lettered=len(dead), ms=round((time.perf_counter() - started) * 1000, 1))

    def _decode_wanted(self, records: Sequence[Any]) -> tuple[list[tuple[Any, Envelope[Any]]], list[DeadLetter]]:
        wanted: list[tuple[Any, Envelope[Any]]] = []
        dead: list[DeadLetter] = []
        for record in records:
            ce_type = next((v for k, v in (record.headers or ()) if k == "ce_type"), None)
            if self.event_types is not None and ce_type is not None and ce_type not in self.event_types:
                self.stats["skipped"] += 1
                continue
            try:
                wanted.append((record, self.decoder(record)))
            except DecodeError as exc:
                log.warning("record_dead_lettered", service=self.name, topic=record.topic,
                            partition=record.partition, offset=record.offset, error=str(exc))
                dead.append(dead_letter_for(record, self.name, str(exc)))
        return wanted, dead

    def _apply(self, wanted: list[tuple[Any, Envelope[Any]]]) -> tuple[list[KafkaRecord | tuple], list[str], list[DeadLetter]]:
        outputs: list[tuple[str, KafkaRecord]] = []
        dead: list[DeadLetter] = []
        cause_ids: list[str] = []
        if not wanted:
            return outputs, cause_ids, dead
        with Session(self.engine) as session, session.begin():
            ctx = self.context(session)
            for record, envelope in wanted:
                produced = self._apply_one(session, ctx, record, envelope, dead)
                if produced:
                    cause_ids.append(envelope.id)
                    outputs.extend(produced)
        return outputs, cause_ids, dead

    def _apply_one(self, session: Session, ctx: HandlerContext, record: Any, envelope: Envelope[Any],
                   dead: list[DeadLetter], unpark: bool = True) -> list[tuple[str, KafkaRecord]]:
        if session.get(ProcessedEvent, (self.name, envelope.id)) is not None:
            self.stats["duplicates"] += 1
            return self._stored_outputs(session, envelope.id)
        if session.get(ParkedEvent, (self.name, envelope.id)) is not None:
            self.stats["duplicates"] += 1
            return []
        try:
            with session.begin_nested(), bound_event(envelope):
                emits = list(self.handler(ctx, envelope))
                produced = [(e.topic, encode(e.envelope)) for e in emits]
                self._remember(session, record, envelope, produced, "applied")
        except NotYet as exc:
            session.add(ParkedEvent(consumer=self.name, event_id=envelope.id, ticket_id=envelope.ticket_id, topic=record.topic,
                                    partition=record.partition, offset=record.offset, key=record.key or b"",
                                    value=record.value or b"", headers=_headers_json(record.headers), reason=str(exc)))
            self.stats["parked"] = self.stats.get("parked", 0) + 1
            return []
        except Exception as exc:
            if _is_transient(exc):
                raise
            log.error("handler_failed", service=self.name, event_id=envelope.id, event_type=envelope.type,
                      ticket_id=envelope.ticket_id, error=repr(exc))
            dead.append(dead_letter_for(record, self.name, f"handler error: {exc!r}"))
            self._remember(session, record, envelope, [], "dead-lettered")
            self.stats["dead_lettered"] += 1
            return []
        self.stats["applied"] += 1
        return produced + (self._unpark(session, ctx, envelope.ticket_id, dead) if unpark else [])

    def _unpark(self, session: Session, ctx: HandlerContext, ticket_id: str, dead: list[DeadLetter]) -> list[tuple[str, KafkaRecord]]:
        """Retry the events of this ticket that were waiting for something it may just have brought."""
        produced: list[tuple[str, KafkaRecord]] = []
        progress = True
        while progress:
            progress = False
            parked = session.execute(select(ParkedEvent).where(ParkedEvent.consumer == self.name,
                                                               ParkedEvent.ticket_id == ticket_id)
                                     .order_by(ParkedEvent.offset)).scalars().all()
            for row in parked:
                record = _ParkedRecord(row.topic, row.partition, row.offset, row.key, row.value,
                                       [(k, v.encode()) for k, v in json.loads(row.headers)])
                session.delete(row)
                session.flush()
                before = self.stats["applied"]
                produced += self._apply_one(session, ctx, record, self.decoder(record), dead, unpark=False)
                progress = progress or self.stats["applied"] > before
        return produced

    def _remember(self, session: Session, record: Any, envelope: Envelope[Any],
                  produced: list[tuple[str, KafkaRecord]], outcome: str) -> None:
        session.add(ProcessedEvent(consumer=self.name, event_id=envelope.id, topic=record.topic,
                                   partition=record.partition, offset=record.offset, outcome=outcome))
        for topic, rec in produced:
            session.add(_outbox_row(self.name, envelope.id, topic, rec))

    def _stored_outputs(self, session: Session, cause_id: str) -> list[tuple[str, KafkaRecord]]:
        rows = session.execute(select(OutboxRecord).where(OutboxRecord.consumer == self.name,
                                                           OutboxRecord.cause_id == cause_id)).scalars().all()
        return [_row_to_output(r) for r in rows]

    def _clear_outbox(self, cause_ids: list[str]) -> None:
        with Session(self.engine) as session, session.begin():
            for chunk in range(0, len(cause_ids), 500):
                session.execute(delete(OutboxRecord).where(OutboxRecord.consumer == self.name,
                                                           OutboxRecord.cause_id.in_(cause_ids[chunk:chunk + 500])))

    async def _publish(self, outputs: list[tuple[str, KafkaRecord]], dead: list[DeadLetter]) -> None:
        assert self.broker is not None, "subscribe() first"
        futures = []
        for topic, rec in outputs:
            futures.append(await self.broker.publish(rec.value, topic, key=rec.key, headers=_str_headers(rec.headers), no_confirm=True))
        for d in dead:
            futures.append(await self.broker.publish(d.value or b"", d.topic, key=d.key, headers=_str_headers(d.headers), no_confirm=True))
        if futures:
            await asyncio.gather(*futures)
        self.stats["published"] += len(outputs)

    # ---------------------------------------------------------------- time-driven work

    async def run_ticks(self, tick: TickHandler, every_s: float, stop: asyncio.Event) -> None:
        """Run a time-driven handler (deadlines, timeouts) every `every_s`, with the same guarantees."""
        while not stop.is_set():
            try:
                emits = await asyncio.to_thread(self._tick_once, tick)
                if emits:
                    await self._publish(emits, [])
                    await asyncio.to_thread(self._clear_outbox, [_tick_cause(rec) for _, rec in emits])
            except Exception as exc:  # keep ticking: a broker blip must not end the timer loop
                log.error("tick_failed", service=self.name, error=repr(exc))
            try:
                await asyncio.wait_for(stop.wait(), timeout=every_s)
            except TimeoutError:
                pass

    def _tick_once(self, tick: TickHandler) -> list[tuple[str, KafkaRecord]]:
        with Session(self.engine) as session, session.begin():
            produced = [(e.topic, encode(e.envelope)) for e in tick(self.context(session))]
            for topic, rec in produced:
                # Through the outbox, so a crash before the publish re-sends at the next start.
                session.add(_outbox_row(self.name, _tick_cause(rec), topic, rec))
            return produced

    async def recover_outbox(self) -> int:
        """Publish what a crash left in the outbox (before any new work); return how many."""
        def load() -> tuple[list[tuple[str, KafkaRecord]], list[str]]:
            with Session(self.engine) as session:
                rows = session.execute(select(OutboxRecord).where(OutboxRecord.consumer == self.name)).scalars().all()
                return [_row_to_output(r) for r in rows], sorted({r.cause_id for r in rows})
        outputs, causes = await asyncio.to_thread(load)
        if outputs:
            await self._publish(outputs, [])
            await asyncio.to_thread(self._clear_outbox, causes)
            log.info("outbox_recovered", service=self.name, records=len(outputs))
        return len(outputs)


@dataclass(frozen=True)
class _ParkedRecord:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def _headers_json(headers: Any) -> bytes:
    return json.dumps([[k, v.decode(errors="replace")] for k, v in (headers or ())]).encode()


def _tick_cause(rec: KafkaRecord) -> str:
    return "tick:" + next(v.decode() for k, v in rec.headers if k == "ce_id")


def _outbox_row(consumer: str, cause_id: str, topic: str, rec: KafkaRecord) -> OutboxRecord:
    return OutboxRecord(consumer=consumer, cause_id=cause_id, topic=topic, key=rec.key, value=rec.value,
                        headers=json.dumps([[k, v.decode()] for k, v in rec.headers]).encode())


def _row_to_output(row: OutboxRecord) -> tuple[str, KafkaRecord]:
    return row.topic, KafkaRecord(row.key, row.value, [(k, v.encode()) for k, v in json.loads(row.headers)])


def _str_headers(headers: list[tuple[str, bytes]]) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in headers}

