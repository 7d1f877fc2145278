"""The consume → apply → publish → commit loop every workflow service runs.

One batch at a time (up to `batch_max_records`):
1. records of event types this service does not handle are skipped without decoding;
2. each remaining record is decoded; one that cannot be decoded goes to `<topic>.dlq`;
3. in ONE database transaction, each new event is applied by the service's handler, and the
   event id plus the records it produced (the outbox) are stored; an event already applied is
   not applied again, its stored output is re-sent instead;
4. every produced record is sent without waiting for each acknowledgement, then all are awaited;
5. only then is the batch acknowledged (offsets committed), by FastStream's NACK_ON_ERROR policy:
   if anything above raises, the offsets are rewound and the batch is redelivered;
6. the outbox rows of the confirmed records are deleted afterwards, off the batch's path.

A handler error that is not transient (a bug, an impossible state) dead-letters that one event
with its reason, so it never blocks its partition. Emitting to a topic whose writer (in the topic
catalogue) is another service is such a bug: `NotTheWriter` is raised before anything is stored.

What keeps it cheap per event (measured with `cityops bench` and benchmarks/replay_micro.py):
the batch's already-applied and parked ids are read with one query each, not two lookups per
event; the bookkeeping rows are written with one INSERT per table at the end; the batch is first
applied without a savepoint per event, and again with savepoints only when a handler raised; in
that first pass `session.get` does not flush before each lookup (`_BatchSession`); a handler may
declare `prepare_batch` (batch-wide work such as classifying every text at once) and `prefetch`
(rows to load with one query, kept alive for the transaction), or keep the whole batch's state in
memory with `start_batch` / `finish_batch` and write it with one statement per table; one write
lock per store keeps a service's own transactions (batches, ticks, outbox clean-up) from failing
each other with "database is locked".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.middlewares import AckPolicy
from sqlalchemy import bindparam, delete, event, insert, literal_column, select, union_all
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session

from contracts.codec import DecodeError, KafkaRecord, decode, encode
from contracts.envelope import Envelope, utcnow
from contracts.topics import check_writer

from .kafka import lenient_batch_parser
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
    # Per-batch working state of a handler with batch hooks (see `EventPipeline._apply_batch`).
    batch: dict[str, Any] = field(default_factory=dict)


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


def apply_in_batch(ctx: HandlerContext, envelope: Envelope[Any], key: str,
                   start_batch: Callable[[HandlerContext, list[Envelope[Any]]], None],
                   apply: Callable[[HandlerContext, Any, Envelope[Any]], Iterable[Emit]],
                   finish_batch: Callable[[HandlerContext], None]) -> list[Emit]:
    """Run `apply(ctx, state, envelope)` on the batch state `start_batch` keeps in `ctx.batch[key]`.
    Called outside the pipeline's batch hooks (tests, tools), the event is a batch of one."""
    state = ctx.batch.get(key)
    if state is not None:
        return list(apply(ctx, state, envelope))
    start_batch(ctx, [envelope])
    try:
        emits = list(apply(ctx, ctx.batch[key], envelope))
        finish_batch(ctx)
        return emits
    finally:
        ctx.batch.pop(key, None)


class NotYet(LookupError):
    """Raised by a handler when the event depends on one not seen yet (it arrives on another topic)."""


_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_WRITE_LOCKS_GUARD = threading.Lock()


def write_lock(engine: Engine) -> threading.Lock:
    """One lock per store and process: a service's write transactions (batches, outbox clearing,
    ticks, a second pipeline on the same store) run one at a time. Two concurrent writers on one
    SQLite file otherwise fail with "database is locked" (a deferred transaction that read before
    the other committed cannot upgrade, whatever the busy timeout), and each failure redelivers the
    whole batch."""
    with _WRITE_LOCKS_GUARD:
        lock = _WRITE_LOCKS.get(engine)
        if lock is None:
            lock = _WRITE_LOCKS[engine] = threading.Lock()
        return lock


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


class EventPipeline:
    """Binds a service's handler to its topics with exactly-once effects."""

    def __init__(self, *, name: str, settings: ServiceSettings, engine: Engine, handler: Handler,
                 topics: Sequence[str], event_types: Iterable[str] | None, clock: Clock = utcnow,
                 extras: dict[str, Any] | None = None, group_id: str | None = None,
                 decoder: Callable[[Any], Envelope[Any]] | None = None, writer: str | None = None) -> None:
        self.name = name
        # The service this pipeline publishes as (several pipelines of one service share it).
        self.writer = writer or settings.service_name
        self._may_write: set[str] = set()
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
        self._to_clear: list[str] = []
        self._clearing: asyncio.Task[None] | None = None
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
            parser=lenient_batch_parser,
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
            self._clear_later(cause_ids)
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
        """Apply a batch in one transaction.

        First optimistically: no savepoint per event (a handler's effects are its session writes
        and its emits, so a failed attempt leaves nothing behind once rolled back). If a handler
        raises anything but a transient error (NotYet included), the attempt is rolled back and
        the batch applied again carefully, each event in its own savepoint, so that one event can
        be parked or dead-lettered without undoing the others.
        """
        if not wanted:
            return [], [], []
        prepare = getattr(self.handler, "prepare_batch", None)
        if prepare is not None:  # batch-wide work before the transaction (e.g. classify every text at once)
            try:
                prepare(self.extras, [envelope for _, envelope in wanted])
            except Exception as exc:  # only an optimisation: the handler still works event by event
                log.warning("prepare_batch_failed", service=self.name, error=repr(exc))
        stats = dict(self.stats)
        try:
            return self._apply_batch(wanted, careful=False)
        except _Careful:
            pass
        except Exception as exc:
            if _is_transient(exc):
                raise
        self.stats.clear()
        self.stats.update(stats)  # the rolled-back attempt counted nothing
        return self._apply_batch(wanted, careful=True)

    def _apply_batch(self, wanted: list[tuple[Any, Envelope[Any]]], careful: bool) -> tuple[list[KafkaRecord | tuple], list[str], list[DeadLetter]]:
        outputs: list[tuple[str, KafkaRecord]] = []
        dead: list[DeadLetter] = []
        cause_ids: list[str] = []
        session_class = Session if careful else _BatchSession
        with write_lock(self.engine), session_class(self.engine) as session, session.begin():
            ctx = self.context(session)
            batch = self._batch_state(session, wanted, careful)
            envelopes = [envelope for _, envelope in wanted]
            self._prefetch(session, envelopes)
            if not careful:
                self._start_batch(ctx, envelopes)
            for record, envelope in wanted:
                produced = self._apply_one(session, ctx, record, envelope, dead, batch)
                if produced:
                    cause_ids.append(envelope.id)
                    outputs.extend(produced)
            if not careful:
                self._finish_batch(ctx)
            batch.write(session)
        return outputs, cause_ids, dead

    def _batch_state(self, session: Session, wanted: list[tuple[Any, Envelope[Any]]], careful: bool) -> _Batch:
        """What the store already knows about this batch's events (applied before, parked, tickets with
        parked events), with one statement per 500 events instead of lookups per event."""
        batch = _Batch(self.name, careful)
        connection = session.connection()
        envelopes = list({envelope.id: envelope for _, envelope in wanted}.values())
        for start in range(0, len(envelopes), 500):
            chunk = envelopes[start:start + 500]
            rows = connection.execute(_KNOWN_OF_BATCH, {"consumer": self.name, "ids": [e.id for e in chunk],
                                                        "tickets": list({e.ticket_id for e in chunk})})
            for kind, key in rows:
                {"processed": batch.processed, "parked": batch.parked, "parked-ticket": batch.parked_tickets}[kind].add(key)
        return batch

    def _prefetch(self, session: Session, envelopes: list[Envelope[Any]]) -> None:
        """Load, with one query per table, the rows the handler will look up by key.

        A handler may declare `handler.prefetch = [(Model, key_of_event), ...]` (single-column
        primary keys): the rows of the batch's keys are then in the identity map before the first
        event is applied, and `session.get` finds them there (one SELECT per event costs ten times
        more than its share of one SELECT ... IN). Keys without a row are remembered as absent for
        the optimistic pass; declare only tables the handler writes through the session (add),
        not with insert statements, since a row such a statement adds in the batch would be missed.
        """
        for model, key_of in getattr(self.handler, "prefetch", ()) or ():
            keys = {k for k in map(key_of, envelopes) if k is not None}
            if not keys:
                continue
            mapper = sa_inspect(model)
            (pk,) = mapper.primary_key
            attr = mapper.get_property_by_column(pk).key
            found: set[Any] = set()
            # The identity map holds unchanged objects weakly: keep them for the transaction, or they are
            # collected at once and every `get` selects its row again.
            kept = session.info.setdefault("prefetched", [])
            for chunk in _chunks(list(keys)):
                rows = session.execute(select(model).where(pk.in_(chunk))).scalars().all()
                kept += rows
                found |= {getattr(row, attr) for row in rows}
            if isinstance(session, _BatchSession):
                session.absent |= {session.identity_key(model, k) for k in keys - found}

    def _start_batch(self, ctx: HandlerContext, envelopes: list[Envelope[Any]]) -> None:
        """A handler may keep a batch's working state in memory (`ctx.batch`) and write it once at the
        end: it declares `start_batch(ctx, envelopes)` (load what these events touch, with one query per
        table) and `finish_batch(ctx)` (write what changed, with one statement per table). The optimistic
        pass calls them around the whole batch; the careful pass around each event, inside its savepoint,
        so a parked or dead-lettered event leaves no trace in the state of the others."""
        ctx.batch.clear()
        start = getattr(self.handler, "start_batch", None)
        if start is not None:
            start(ctx, envelopes)

    def _finish_batch(self, ctx: HandlerContext) -> None:
        finish = getattr(self.handler, "finish_batch", None)
        if finish is not None:
            finish(ctx)
        ctx.batch.clear()

    def _apply_one(self, session: Session, ctx: HandlerContext, record: Any, envelope: Envelope[Any],
                   dead: list[DeadLetter], batch: _Batch, unpark: bool = True) -> list[tuple[str, KafkaRecord]]:
        if envelope.id in batch.processed:
            self.stats["duplicates"] += 1
            return self._stored_outputs(session, envelope.id)
        if envelope.id in batch.applied or envelope.id in batch.parked:
            self.stats["duplicates"] += 1  # a second copy in this batch (its outputs are already in it), or parked
            return []
        try:
            with (session.begin_nested() if batch.careful else contextlib.nullcontext()), bound_event(envelope):
                if batch.careful:
                    self._start_batch(ctx, [envelope])
                emits = list(self.handler(ctx, envelope))
                if batch.careful:
                    self._finish_batch(ctx)
                produced = [(self._owned(e.topic), encode(e.envelope)) for e in emits]
        except NotYet as exc:
            if not batch.careful:
                raise _Careful() from exc
            session.add(ParkedEvent(consumer=self.name, event_id=envelope.id, ticket_id=envelope.ticket_id, topic=record.topic,
                                    partition=record.partition, offset=record.offset, key=record.key or b"",
                                    value=record.value or b"", headers=_headers_json(record.headers), reason=str(exc)))
            batch.parked.add(envelope.id)
            batch.parked_tickets.add(envelope.ticket_id)
            self.stats["parked"] = self.stats.get("parked", 0) + 1
            return []
        except Exception as exc:
            if _is_transient(exc):
                raise
            if not batch.careful:
                raise _Careful() from exc
            log.error("handler_failed", service=self.name, event_id=envelope.id, event_type=envelope.type,
                      ticket_id=envelope.ticket_id, error=repr(exc))
            dead.append(dead_letter_for(record, self.name, f"handler error: {exc!r}"))
            batch.remember(record, envelope, [], "dead-lettered")
            self.stats["dead_lettered"] += 1
            return []
        batch.remember(record, envelope, produced, "applied")
        self.stats["applied"] += 1
        if unpark and envelope.ticket_id in batch.parked_tickets:
            produced = produced + self._unpark(session, ctx, envelope.ticket_id, dead, batch)
        return produced

    def _unpark(self, session: Session, ctx: HandlerContext, ticket_id: str, dead: list[DeadLetter],
                batch: _Batch) -> list[tuple[str, KafkaRecord]]:
        """Retry the events of this ticket that were waiting for something it may just have brought."""
        if not batch.careful:
            raise _Careful()  # parking and unparking need savepoints
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
                batch.parked.discard(row.event_id)
                before = self.stats["applied"]
                produced += self._apply_one(session, ctx, record, self.decoder(record), dead, batch, unpark=False)
                progress = progress or self.stats["applied"] > before
        if not progress and not parked:
            batch.parked_tickets.discard(ticket_id)
        return produced

    def _owned(self, topic: str) -> str:
        """`topic`, if this service is its writer (or it is a DLQ or outside the catalogue); else NotTheWriter."""
        if topic not in self._may_write:
            check_writer(self.writer, topic)
            self._may_write.add(topic)
        return topic

    def _stored_outputs(self, session: Session, cause_id: str) -> list[tuple[str, KafkaRecord]]:
        rows = session.execute(select(OutboxRecord).where(OutboxRecord.consumer == self.name,
                                                           OutboxRecord.cause_id == cause_id)).scalars().all()
        return [_row_to_output(r) for r in rows]

    def _clear_later(self, cause_ids: list[str]) -> None:
        """Delete the outbox rows of records the broker has confirmed, off the batch's path: the batch
        is acknowledged now, and rows confirmed while a clean-up runs are deleted together by the next
        one. A row left behind (a crash in between) is only re-sent at the next start, with its
        original id, and dropped downstream as a duplicate."""
        self._to_clear.extend(cause_ids)
        if self._clearing is None or self._clearing.done():
            self._clearing = asyncio.get_running_loop().create_task(self._clear_pending())

    async def _clear_pending(self) -> None:
        while self._to_clear:
            ids, self._to_clear = self._to_clear, []
            try:
                await asyncio.to_thread(self._clear_outbox, ids)
            except Exception as exc:
                log.warning("outbox_clear_failed", service=self.name, causes=len(ids), error=repr(exc))

    async def flush_outbox(self) -> None:
        """Wait for the outbox clean-up in progress (e.g. before stopping)."""
        while self._clearing is not None and not self._clearing.done():
            await asyncio.shield(self._clearing)

    def _clear_outbox(self, cause_ids: list[str]) -> None:
        with write_lock(self.engine), Session(self.engine) as session, session.begin():
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
                    self._clear_later([_tick_cause(rec) for _, rec in emits])
            except Exception as exc:  # keep ticking: a broker blip must not end the timer loop
                log.error("tick_failed", service=self.name, error=repr(exc))
            try:
                await asyncio.wait_for(stop.wait(), timeout=every_s)
            except TimeoutError:
                pass
        await self.flush_outbox()

    def _tick_once(self, tick: TickHandler) -> list[tuple[str, KafkaRecord]]:
        with write_lock(self.engine), Session(self.engine) as session, session.begin():
            ctx = self.context(session)
            produced = [(self._owned(e.topic), encode(e.envelope)) for e in tick(ctx)]
            if produced:
                # Through the outbox, so a crash before the publish re-sends at the next start (one
                # executemany on the connection, after the tick's own ORM changes are flushed).
                session.flush()
                session.connection().execute(_INSERT_OUTBOX, [_outbox_values(self.name, _tick_cause(rec), topic, rec)
                                                              for topic, rec in produced])
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


class _BatchSession(Session):
    """The session of a batch's optimistic pass. Handlers look rows up by key many times a batch
    (get-or-create); a plain `Session.get` of a row not loaded yet first flushes every change made
    so far, one statement at a time. Here `get` answers from the identity map, then from the rows
    added in this batch, and only then selects, without that flush: a row that is neither loaded
    nor added has no pending change, so the select sees what a flush would have shown. Changes are
    written by the flush at commit instead, grouped by table. Queries other than `get` still
    autoflush. If anything goes wrong the careful pass runs with a plain Session.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._added: list[Any] = []
        self._added_by_key: dict[Any, Any] = {}
        self.absent: set[Any] = set()  # identity keys a prefetch found no row for

    def get(self, entity: Any, ident: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if kwargs:
            return super().get(entity, ident, **kwargs)
        key = self.identity_key(entity, ident)
        if key in self.identity_map:
            return super().get(entity, ident)
        added = self._added_row(key)
        if added is not None:
            return added
        if key in self.absent:
            return None
        with self.no_autoflush:
            return super().get(entity, ident)

    def _added_row(self, key: Any) -> Any:
        keep = []
        for obj in self._added:
            obj_key = self.identity_key(instance=obj)
            if None in obj_key[1]:
                keep.append(obj)  # no key yet: look again next time
            else:
                self._added_by_key[obj_key] = obj
        self._added = keep
        obj = self._added_by_key.get(key)
        if obj is not None and not sa_inspect(obj).pending:
            del self._added_by_key[key]  # flushed (then it is in the identity map), expunged or deleted
            return None
        return obj


@event.listens_for(_BatchSession, "transient_to_pending")
def _remember_added(session: Session, obj: Any) -> None:
    if isinstance(session, _BatchSession):
        session._added.append(obj)


class _Careful(Exception):
    """The optimistic attempt at a batch cannot go on: apply it again with a savepoint per event."""


@dataclass
class _Batch:
    """One batch's view of the store, and its bookkeeping rows, written with one INSERT per table
    at the end of the transaction instead of an ORM object (and a flush) per event."""

    consumer: str
    careful: bool
    processed: set[str] = field(default_factory=set)       # applied (or dead-lettered) before this batch
    parked: set[str] = field(default_factory=set)          # waiting in parked_events
    parked_tickets: set[str] = field(default_factory=set)  # tickets with parked events
    applied: set[str] = field(default_factory=set)         # applied in this batch
    processed_rows: list[dict[str, Any]] = field(default_factory=list)
    outbox_rows: list[dict[str, Any]] = field(default_factory=list)

    def remember(self, record: Any, envelope: Envelope[Any], produced: list[tuple[str, KafkaRecord]], outcome: str) -> None:
        self.applied.add(envelope.id)
        self.processed_rows.append({"consumer": self.consumer, "event_id": envelope.id, "topic": record.topic,
                                    "partition": record.partition, "offset": record.offset, "outcome": outcome,
                                    "processed_at": utcnow()})
        self.outbox_rows += [_outbox_values(self.consumer, envelope.id, topic, rec) for topic, rec in produced]

    def write(self, session: Session) -> None:
        # On the session's connection: plain Core executemany, without the ORM's statement handling.
        connection = session.connection()
        if self.processed_rows:
            connection.execute(_INSERT_PROCESSED, self.processed_rows)
        if self.outbox_rows:
            connection.execute(_INSERT_OUTBOX, self.outbox_rows)


def _known_of_batch() -> Any:
    processed, parked = ProcessedEvent.__table__.c, ParkedEvent.__table__.c
    consumer = bindparam("consumer")
    ids, tickets = bindparam("ids", expanding=True), bindparam("tickets", expanding=True)
    return union_all(
        select(literal_column("'processed'"), processed.event_id).where(processed.consumer == consumer, processed.event_id.in_(ids)),
        select(literal_column("'parked'"), parked.event_id).where(parked.consumer == consumer, parked.event_id.in_(ids)),
        select(literal_column("'parked-ticket'"), parked.ticket_id).where(parked.consumer == consumer, parked.ticket_id.in_(tickets)),
    )


_INSERT_PROCESSED = insert(ProcessedEvent.__table__)
_INSERT_OUTBOX = insert(OutboxRecord.__table__)
# Built once: SQLAlchemy compiles it once and caches it (expanding IN parameters keep one cache entry).
_KNOWN_OF_BATCH = _known_of_batch()


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


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


def _outbox_values(consumer: str, cause_id: str, topic: str, rec: KafkaRecord) -> dict[str, Any]:
    return {"consumer": consumer, "cause_id": cause_id, "topic": topic, "key": rec.key, "value": rec.value,
            "headers": json.dumps([[k, v.decode()] for k, v in rec.headers]).encode()}


def _row_to_output(row: OutboxRecord) -> tuple[str, KafkaRecord]:
    return row.topic, KafkaRecord(row.key, row.value, [(k, v.encode()) for k, v in json.loads(row.headers)])


def _str_headers(headers: list[tuple[str, bytes]]) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in headers}

