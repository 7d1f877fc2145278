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
with its reason, so it never blocks its partition; so does `Rejected`, a domain rule refusing the
event (a unit reporting on another unit's task), logged as a warning rather than an error.
Emitting to a topic whose writer (in the topic catalogue) is another service is such a bug:
`NotTheWriter` is raised before anything is stored.

What the pipeline runs is the service's `HandlerSpec` (services/common/handler.py): its handler,
topics, event types, typed dependencies and optional batch-wide parts.

What keeps it cheap per event (measured with `cityops bench` and benchmarks/replay_micro.py):
the batch's already-applied and parked ids are read with one query each, not two lookups per
event; the bookkeeping rows are written with one INSERT per table at the end (bookkeeping.py);
the batch is first applied without a savepoint per event, and again with savepoints only when a
handler raised; in that first pass the rows a handler looks up by key come from a plain dict that
a prefetch filled with one query per table (`BatchRows`), without a flush before each lookup; a
spec may declare `prepare_batch` (batch-wide work such as classifying every text at once), or keep
the whole batch's state in memory (`Batched`) and write it with one statement per table; one write
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
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Generic

from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.middlewares import AckPolicy
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session, col

from contracts.codec import DecodeError, KafkaRecord, decode, encode
from contracts.envelope import Envelope, utcnow
from contracts.topics import check_writer

from .bookkeeping import (
    INSERT_OUTBOX,
    BatchLedger,
    DeadLetter,
    ParkedRecord,
    dead_letter_for,
    outbox_values,
    parked_row,
    row_to_output,
    str_headers,
    tick_cause,
)
from .handler import (
    Batched,
    BatchRows,
    Clock,
    Deps,
    Emit,
    Handler,
    HandlerContext,
    HandlerSpec,
    NoDeps,
    NotYet,
    Prefetch,
    Rejected,
    Tick,
    TickHandler,
)
from .kafka import lenient_batch_parser
from .logs import bound_event, get_logger
from .settings import ServiceSettings
from .store import OutboxRecord, ParkedEvent, lock_tickets

# Re-exported: services and tests import the handler's vocabulary from here.
__all__ = ["Batched", "Clock", "DeadLetter", "Emit", "EventPipeline", "Handler", "HandlerContext", "HandlerSpec",
           "NoDeps", "NotYet", "Prefetch", "Rejected", "Tick", "TickHandler", "dead_letter_for", "write_lock"]

log = get_logger(__name__)

Produced = list[tuple[str, KafkaRecord]]


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


class _Careful(Exception):
    """The optimistic attempt at a batch cannot go on: apply it again with a savepoint per event."""


class EventPipeline(Generic[Deps]):
    """Binds a service's handler spec to its topics with exactly-once effects."""

    # False: the optimistic pass reads rows through the session too (an A/B switch for benchmarks/replay_micro.py).
    cache_rows = True

    def __init__(self, *, name: str, settings: ServiceSettings, engine: Engine, spec: HandlerSpec[Deps],
                 clock: Clock = utcnow, group_id: str | None = None,
                 decoder: Callable[[Any], Envelope[Any]] | None = None, writer: str | None = None) -> None:
        self.name = name
        # The service this pipeline publishes as (several pipelines of one service share it).
        self.writer = writer or settings.service_name
        self._may_write: set[str] = set()
        self.settings = settings
        self.engine = engine
        self.spec = spec
        self.topics = list(spec.topics)
        # None: every record is for us (e.g. a channel of plain JSON without CloudEvents headers).
        self.event_types = None if spec.event_types is None else {t.encode() for t in spec.event_types}
        self.group_id = group_id or settings.group_id
        self.decoder = decoder or (lambda r: decode(r.key, r.value, r.headers))
        self.clock = clock
        self.source = f"/cityops/{name}"
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

    def context(self, session: Session, rows: BatchRows | None = None) -> HandlerContext[Deps]:
        return HandlerContext(session=session, now=self.clock, source=self.source, settings=self.settings,
                              deps=self.spec.deps, batch_rows=rows)

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

    def _apply(self, wanted: list[tuple[Any, Envelope[Any]]]) -> tuple[Produced, list[str], list[DeadLetter]]:
        """Apply a batch in one transaction.

        First optimistically: no savepoint per event (a handler's effects are its session writes
        and its emits, so a failed attempt leaves nothing behind once rolled back). If a handler
        raises anything but a transient error (NotYet included), the attempt is rolled back and
        the batch applied again carefully, each event in its own savepoint, so that one event can
        be parked or dead-lettered without undoing the others.
        """
        if not wanted:
            return [], [], []
        if self.spec.prepare_batch is not None:
            try:
                self.spec.prepare_batch(self.spec.deps, [envelope for _, envelope in wanted])
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

    def _apply_batch(self, wanted: list[tuple[Any, Envelope[Any]]], careful: bool) -> tuple[Produced, list[str], list[DeadLetter]]:
        outputs: Produced = []
        dead: list[DeadLetter] = []
        cause_ids: list[str] = []
        envelopes = [envelope for _, envelope in wanted]
        with write_lock(self.engine), Session(self.engine) as session, session.begin():
            lock_tickets(session, self.name, (envelope.ticket_id for envelope in envelopes))  # before the ledger read
            rows = BatchRows(session, cached=self.cache_rows and not careful)
            ctx = self.context(session, rows)
            ledger = BatchLedger.read(session.connection(), self.name, envelopes, careful)
            rows.prefetch(self.spec.prefetch, envelopes)
            apply = self._applier(ctx, envelopes, careful)
            for record, envelope in wanted:
                produced = self._apply_one(session, ctx, apply, record, envelope, dead, ledger)
                if produced:
                    cause_ids.append(envelope.id)
                    outputs.extend(produced)
            apply.finish()
            ledger.write(session)
        return outputs, cause_ids, dead

    def _applier(self, ctx: HandlerContext[Deps], envelopes: list[Envelope[Any]], careful: bool) -> _Applier[Deps]:
        """How this pass applies one event: a batched spec's state spans the optimistic pass's whole batch;
        in the careful pass each event is a batch of one, inside its savepoint."""
        spec = self.spec
        if spec.batch is not None and not careful:
            return _BatchApplier(ctx, spec.batch, envelopes)
        return _OneByOne(ctx, spec)

    def _apply_one(self, session: Session, ctx: HandlerContext[Deps], apply: _Applier[Deps], record: Any,
                   envelope: Envelope[Any], dead: list[DeadLetter], ledger: BatchLedger, unpark: bool = True) -> Produced:
        if envelope.id in ledger.processed:
            self.stats["duplicates"] += 1
            return self._stored_outputs(session, envelope.id)
        if envelope.id in ledger.applied or envelope.id in ledger.parked:
            self.stats["duplicates"] += 1  # a second copy in this batch (its outputs are already in it), or parked
            return []
        try:
            with (session.begin_nested() if ledger.careful else contextlib.nullcontext()), bound_event(envelope):
                produced = [(self._owned(e.topic), encode(e.envelope)) for e in apply(envelope)]
        except NotYet as exc:
            if not ledger.careful:
                raise _Careful() from exc
            session.add(parked_row(self.name, record, envelope, str(exc)))
            ledger.parked.add(envelope.id)
            ledger.parked_tickets.add(envelope.ticket_id)
            self.stats["parked"] = self.stats.get("parked", 0) + 1
            return []
        except Exception as exc:
            if _is_transient(exc):
                raise
            if not ledger.careful:
                raise _Careful() from exc
            dead.append(dead_letter_for(record, self.name, self._dead_letter_reason(envelope, exc)))
            ledger.remember(record, envelope, [], "dead-lettered")
            self.stats["dead_lettered"] += 1
            return []
        ledger.remember(record, envelope, produced, "applied")
        self.stats["applied"] += 1
        if unpark and envelope.ticket_id in ledger.parked_tickets:
            produced = produced + self._unpark(session, ctx, apply, envelope.ticket_id, dead, ledger)
        return produced

    def _dead_letter_reason(self, envelope: Envelope[Any], exc: Exception) -> str:
        """Why an event is dead-lettered, logged and put in its DLQ record's `dlq_error` header: a refusal by
        a domain rule is expected (a warning, its reason as the rule wrote it), anything else is a bug."""
        if isinstance(exc, Rejected):
            log.warning("event_rejected", service=self.name, event_id=envelope.id, event_type=envelope.type,
                        ticket_id=envelope.ticket_id, reason=str(exc))
            return f"rejected: {exc}"
        log.error("handler_failed", service=self.name, event_id=envelope.id, event_type=envelope.type,
                  ticket_id=envelope.ticket_id, error=repr(exc))
        return f"handler error: {exc!r}"

    def _unpark(self, session: Session, ctx: HandlerContext[Deps], apply: _Applier[Deps], ticket_id: str,
                dead: list[DeadLetter], ledger: BatchLedger) -> Produced:
        """Retry the events of this ticket that were waiting for something it may just have brought."""
        if not ledger.careful:
            raise _Careful()  # parking and unparking need savepoints
        produced: Produced = []
        progress = True
        while progress:
            progress = False
            parked = session.execute(select(ParkedEvent).where(col(ParkedEvent.consumer) == self.name,
                                                               col(ParkedEvent.ticket_id) == ticket_id)).scalars().all()
            for row in sorted(parked, key=_happened):
                record = ParkedRecord.of(row)
                session.delete(row)
                session.flush()
                ledger.parked.discard(row.event_id)
                before = self.stats["applied"]
                produced += self._apply_one(session, ctx, apply, record, self.decoder(record), dead, ledger, unpark=False)
                progress = progress or self.stats["applied"] > before
        if not progress and not parked:
            ledger.parked_tickets.discard(ticket_id)
        return produced

    def _owned(self, topic: str) -> str:
        """`topic`, if this service is its writer (or it is a DLQ or outside the catalogue); else NotTheWriter."""
        if topic not in self._may_write:
            check_writer(self.writer, topic)
            self._may_write.add(topic)
        return topic

    def _stored_outputs(self, session: Session, cause_id: str) -> Produced:
        rows = session.execute(select(OutboxRecord).where(col(OutboxRecord.consumer) == self.name,
                                                           col(OutboxRecord.cause_id) == cause_id)).scalars().all()
        return [row_to_output(r) for r in rows]

    # ---------------------------------------------------------------- after the batch

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
                session.execute(delete(OutboxRecord).where(col(OutboxRecord.consumer) == self.name,
                                                           col(OutboxRecord.cause_id).in_(cause_ids[chunk:chunk + 500])))

    async def _publish(self, outputs: Produced, dead: list[DeadLetter]) -> None:
        assert self.broker is not None, "subscribe() first"
        futures = []
        for topic, rec in outputs:
            futures.append(await self.broker.publish(rec.value, topic, key=rec.key, headers=str_headers(rec.headers), no_confirm=True))
        for d in dead:
            futures.append(await self.broker.publish(d.value or b"", d.topic, key=d.key, headers=str_headers(d.headers), no_confirm=True))
        if futures:
            await asyncio.gather(*futures)
        self.stats["published"] += len(outputs)

    # ---------------------------------------------------------------- time-driven work

    async def run_ticks(self, tick: TickHandler[Deps], every_s: float, stop: asyncio.Event) -> None:
        """Run a time-driven handler (deadlines, timeouts) every `every_s`, with the same guarantees."""
        while not stop.is_set():
            try:
                await self.tick_once(tick)
            except Exception as exc:  # keep ticking: a broker blip must not end the timer loop
                log.error("tick_failed", service=self.name, error=repr(exc))
            try:
                await asyncio.wait_for(stop.wait(), timeout=every_s)
            except TimeoutError:
                pass
        await self.flush_outbox()

    async def tick_once(self, tick: TickHandler[Deps]) -> int:
        """One round of a time-driven handler: apply it in a transaction (outputs through the outbox), publish
        what it produced, and return how many records that was."""
        emits = await asyncio.to_thread(self._tick_once, tick)
        if emits:
            await self._publish(emits, [])
            self._clear_later([tick_cause(rec) for _, rec in emits])
        return len(emits)

    def _tick_once(self, tick: TickHandler[Deps]) -> Produced:
        with write_lock(self.engine), Session(self.engine) as session, session.begin():
            ctx = self.context(session)
            produced = [(self._owned(e.topic), encode(e.envelope)) for e in tick(ctx)]
            if produced:
                # Through the outbox, so a crash before the publish re-sends at the next start (one
                # executemany on the connection, after the tick's own ORM changes are flushed).
                session.flush()
                session.connection().execute(INSERT_OUTBOX, [outbox_values(self.name, tick_cause(rec), topic, rec)
                                                             for topic, rec in produced])
            return produced

    async def recover_outbox(self) -> int:
        """Publish what a crash left in the outbox (before any new work); return how many."""
        def load() -> tuple[Produced, list[str]]:
            with Session(self.engine) as session:
                rows = session.execute(select(OutboxRecord).where(col(OutboxRecord.consumer) == self.name)).scalars().all()
                return [row_to_output(r) for r in rows], sorted({r.cause_id for r in rows})
        outputs, causes = await asyncio.to_thread(load)
        if outputs:
            await self._publish(outputs, [])
            await asyncio.to_thread(self._clear_outbox, causes)
            log.info("outbox_recovered", service=self.name, records=len(outputs))
        return len(outputs)


class _Applier(Generic[Deps]):
    """Applies one event of a batch pass (`__call__`), then ends the pass (`finish`)."""

    def __call__(self, envelope: Envelope[Any]) -> Iterable[Emit]:
        raise NotImplementedError

    def finish(self) -> None:
        """Nothing to write at the end of the pass."""


class _OneByOne(_Applier[Deps]):
    def __init__(self, ctx: HandlerContext[Deps], spec: HandlerSpec[Deps]) -> None:
        self.ctx, self.spec = ctx, spec

    def __call__(self, envelope: Envelope[Any]) -> Iterable[Emit]:
        return self.spec.apply_one(self.ctx, envelope)


class _BatchApplier(_Applier[Deps]):
    """A batched spec's state for the optimistic pass: started on the whole batch, finished once."""

    def __init__(self, ctx: HandlerContext[Deps], batched: Batched[Deps, Any], envelopes: list[Envelope[Any]]) -> None:
        self.ctx, self.batched = ctx, batched
        self.state = batched.start(ctx, envelopes)

    def __call__(self, envelope: Envelope[Any]) -> Iterable[Emit]:
        return self.batched.apply(self.ctx, self.state, envelope)

    def finish(self) -> None:
        self.batched.finish(self.ctx, self.state)


def _happened(row: ParkedEvent) -> tuple[datetime, str, int, int]:
    """The order to retry a ticket's parked events in: when each happened (its CloudEvents time), then its
    place in its topic. Offsets alone order records within one topic only, and a ticket's parked events
    may come from several (a callback command must not be retried before the handling it answers)."""
    stamp = next((v for k, v in json.loads(row.headers) if k == "ce_time"), None)
    try:
        moment = datetime.fromisoformat(stamp).astimezone(UTC) if stamp else _NEVER
    except ValueError:
        moment = _NEVER  # undecodable: retried first, and dead-lettered by the decoder
    return moment, row.topic, row.partition, row.offset


_NEVER = datetime.min.replace(tzinfo=UTC)
