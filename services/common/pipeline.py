"""The consume → apply → publish → commit loop every workflow service runs.

One batch at a time (up to `batch_max_records`):
1. records of event types this service does not handle are skipped without decoding;
2. each remaining record is decoded, the partitions interleaved by record time (offsets.in_time_order);
   one that cannot be decoded goes to `<topic>.dlq`;
3. in ONE database transaction, each new event is applied by the service's handler, and the
   event id plus the records it produced (the outbox) are stored; an event already applied is
   not applied again, its stored output is re-sent instead; dead letters are outbox rows too;
4. every produced record is sent without waiting for each acknowledgement, then all are awaited;
   an output the broker will never take (too large, no such topic, not authorised) dead-letters
   the event that produced it, with the reason, instead of failing the batch (delivery.py);
5. only then are its offsets committed, in the background while the next batch is fetched
   (offsets.py: a late or lost commit only redelivers what step 3 skips); if anything above raises,
   the batch is logged once as an error and, after a backoff, its offsets are rewound and it is
   redelivered;
6. the outbox rows of the confirmed records are deleted afterwards, off the batch's path.

A handler error that is not transient (a bug, an impossible state, an integrity or data error of
its rows) dead-letters that one event with its reason, so it never blocks its partition; so does
`Rejected`, a domain rule refusing the event (a unit reporting on another unit's task), logged as a
warning rather than an error. Emitting to a topic whose writer (in the topic catalogue) is another
service is such a bug: `NotTheWriter` is raised before anything is stored. A database that cannot
take any write (down, locked, disk full) fails the whole batch, retried with backoff (delivery.py).

Nothing waits for ever (`run_upkeep`, every `upkeep_every_s`): a parked event whose dependency has
not come after `parked_timeout_s` is dead-lettered ("dependency never arrived"), the ids of events
applied longer ago than `processed_retention_s` are pruned (why that is safe: bookkeeping.py), and a
tick re-sends what an earlier tick could not publish before it runs.

What the pipeline runs is the service's `HandlerSpec` (services/common/handler.py): its handler,
topics, event types, typed dependencies and optional batch-wide parts.

What keeps it cheap per event (measured with `cityops bench` and benchmarks/replay_micro.py):
the batch's already-applied and parked ids are read with one query each, not two lookups per
event; the bookkeeping rows are written with one INSERT per table at the end (bookkeeping.py);
the batch is first applied without a savepoint per event, and again with savepoints only when a
handler raised; a spec may declare `prepare_batch` (batch-wide work such as classifying every text
at once), and keeps the batch's rows in memory (`Batched` with batch_state.TableRows: loaded with one
query per table, written with one statement per table and kind of change); one write
lock per store keeps a service's own transactions (batches, ticks, outbox clean-up) from failing
each other with "database is locked".

Its length (a little over 500 lines) is the loop with its recovery, ticks and upkeep, which read together;
what could leave did: the appliers (handler.py), delivery and its refusals (delivery.py), upkeep (upkeep.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from typing import Any, Generic

from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.middlewares import AckPolicy
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from contracts.codec import DecodeError, decode, encode
from contracts.envelope import Envelope, utcnow
from contracts.topics import check_writer

from .bookkeeping import (
    INSERT_OUTBOX,
    BatchLedger,
    DeadLetter,
    Output,
    ParkedRecord,
    dead_letter_for,
    outbox_values,
    parked_order,
    parked_row,
    row_to_output,
    tick_cause,
    undecodable_cause,
)
from .collector import settle_after_batch
from .delivery import (
    OutputTooLarge,
    backoff_s,
    check_size,
    dead_letter_refused,
    failure_kind,
    positions,
    send_all,
    stops_the_batch,
)
from .handler import (
    Applier,
    BatchApplier,
    Batched,
    Clock,
    Deps,
    Emit,
    Handler,
    HandlerContext,
    HandlerSpec,
    NoDeps,
    NotYet,
    OneByOne,
    Rejected,
    Tick,
    TickHandler,
)
from .kafka import fetch_pacing, lenient_batch_parser, poll_without_naps
from .logs import bound_event, get_logger
from .metrics import BatchCounts, Highwater, ServiceMetrics, highwater_of
from .offsets import BackgroundCommitter, in_time_order, next_positions, stamps_by_topic
from .settings import ServiceSettings
from .store import OutboxRecord, ParkedEvent, lock_tickets, short_write, write_lock
from .upkeep import expire_parked, prune_applied_ids

# Re-exported: services and tests import the handler's vocabulary from here.
__all__ = ["Batched", "Clock", "DeadLetter", "Emit", "EventPipeline", "Handler", "HandlerContext", "HandlerSpec",
           "NoDeps", "NotYet", "Rejected", "Tick", "TickHandler", "dead_letter_for", "write_lock"]

log = get_logger(__name__)

Produced = list[Output]
Causes = dict[str, Any]  # event id -> the record it came in, to dead-letter it if an output of it cannot be sent


class _Careful(Exception):
    """The optimistic attempt at a batch cannot go on: apply it again with a savepoint per event."""


class EventPipeline(Generic[Deps]):
    """Binds a service's handler spec to its topics with exactly-once effects."""

    def __init__(self, *, name: str, settings: ServiceSettings, engine: Engine, spec: HandlerSpec[Deps],
                 clock: Clock = utcnow, group_id: str | None = None,
                 decoder: Callable[[Any], Envelope[Any]] | None = None, writer: str | None = None,
                 metrics: ServiceMetrics | None = None) -> None:
        self.name = name
        # Several pipelines of one service share its metrics; per batch, never per event (metrics.py).
        self.metrics = metrics or ServiceMetrics()
        self.metrics.watch_store(engine, name)
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
        self.keys_by_topic = {t: frozenset(k.encode() for k in keys) for t, keys in spec.keys_by_topic.items()}
        self.clock = clock
        self.source = f"/cityops/{name}"
        self.broker: KafkaBroker | None = None
        self._to_clear: list[str] = []
        self._clearing: asyncio.Task[None] | None = None
        self._clear_now: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None  # flush_outbox cuts the wait short
        self.stats = {"batches": 0, "applied": 0, "duplicates": 0, "dead_lettered": 0, "skipped": 0, "published": 0}
        self._failures = 0  # consecutive failed batches: the backoff before the next redelivery
        self.committer = BackgroundCommitter(name, lambda seconds: self.metrics.stage(self.name, "commit", seconds))

    # ---------------------------------------------------------------- wiring

    def subscribe(self, broker: KafkaBroker) -> None:
        self.broker = broker

        async def _no_decode(_msg: Any) -> None:
            return None  # we decode ourselves, only the event types we handle

        subscriber = poll_without_naps(broker.subscriber(
            *self.topics, group_id=self.group_id, batch=True,
            max_records=self.settings.batch_max_records, batch_timeout_ms=self.settings.batch_timeout_ms,
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
            auto_offset_reset="earliest", ack_policy=AckPolicy.MANUAL, decoder=_no_decode,
            parser=lenient_batch_parser,
            title=f"{self.name}", description=f"{self.name}: {', '.join(sorted(t.decode() for t in self.event_types or ()))}",
        ), fetch_pacing(self.settings))

        @subscriber
        async def on_batch(message: KafkaMessage) -> None:
            try:
                await self.handle_records(message.raw_message, highwater_of(message.consumer))
            except Exception:
                await message.nack()  # rewinds to the batch's first records: redelivered after the backoff
                raise
            self.committer.commit_soon(message.consumer, next_positions(message.raw_message))

    def context(self, session: Session) -> HandlerContext[Deps]:
        return HandlerContext(session=session, now=self.clock, source=self.source, settings=self.settings,
                              deps=self.spec.deps)

    # ---------------------------------------------------------------- the loop

    async def handle_records(self, records: Sequence[Any], highwater: Highwater | None = None) -> None:
        started, before = time.perf_counter(), dict(self.stats)
        self.metrics.batch_started(self.name, records, highwater)
        try:
            await self._handle(records, started)
        except Exception as exc:
            self.metrics.batch_failed(self.name, time.perf_counter() - started)
            await self._pause_after(records, exc)
            raise
        self._failures = 0
        settle_after_batch()
        dead = self.stats["dead_lettered"] - before["dead_lettered"]
        self.metrics.batch_handled(self.name, records, highwater, time.perf_counter() - started, BatchCounts(
            self.stats["applied"] - before["applied"], dead, self.stats.get("parked", 0) - before.get("parked", 0)))

    async def _handle(self, records: Sequence[Any], started: float) -> None:
        """Handle one batch (see the module docstring)."""
        stage = self.metrics.stage
        stamps = stamps_by_topic(records)
        if stamps:  # records from the broker; a replay's or a test's may have none
            self._time_the_wait(stamps, getattr(records, "polled_at", None))
        wanted, undecodable = self._decode_wanted(in_time_order(records))
        decoded = time.perf_counter()
        stage(self.name, "decode", decoded - started)
        outputs, cause_ids, causes = await self._apply_where_cheapest(wanted, undecodable)
        applied = time.perf_counter()
        stage(self.name, "apply", applied - decoded)
        await self._publish(outputs, causes)
        stage(self.name, "publish", time.perf_counter() - applied)
        if cause_ids:
            self._clear_later(cause_ids)
        self.stats["batches"] += 1
        log.debug("batch_handled", service=self.name, records=len(records), applied=len(wanted),
                  published=len(outputs), ms=round((time.perf_counter() - started) * 1000, 1))

    def _time_the_wait(self, stamps: dict[str, list[int]], polled_at: float | None) -> None:
        """The batch's wait from its oldest record's timestamp: in all (`queue`), and split at the poll that
        returned it when the subscriber noted that moment (kafka.py `PolledRecords`). Then each record's own wait to
        that poll, by topic (`record_waits`): the per-batch figures weigh a batch of one record as much as one of
        fifty, while the batches that waited longest carry the most records, and a consumer of several topics
        handles many batches without the record a ticket's next step waits for."""
        now = time.time()
        oldest = min(min(topic_stamps) for topic_stamps in stamps.values()) / 1000
        self.metrics.stage(self.name, "queue", now - oldest)
        if polled_at is not None:
            self.metrics.stage(self.name, "poll", polled_at - oldest)
            self.metrics.stage(self.name, "dispatch", now - polled_at)
        self.metrics.record_waits(self.name, stamps, now if polled_at is None else polled_at)

    async def _apply_where_cheapest(self, wanted: list[tuple[Any, Envelope[Any]]],
                                    undecodable: list[tuple[Any, str]]) -> tuple[Produced, list[str], Causes]:
        """A small batch on SQLite is applied on the event loop (`short_writes_on_loop`): its transaction is a few
        milliseconds, less than what the hop to a worker thread and back cost. A larger batch, or any on
        PostgreSQL, goes to a worker thread so that the loop keeps fetching and confirming meanwhile."""
        small = len(wanted) + len(undecodable) <= self.settings.apply_on_loop_max_records
        return await short_write(self.engine, self._apply, wanted, undecodable, small=small)

    async def _pause_after(self, records: Sequence[Any], exc: Exception) -> None:
        """Log a failing batch once, then wait before it is redelivered: without the pause a database that is down
        or full, or a broker that does not confirm, would be retried in a tight loop."""
        self._failures += 1
        delay = backoff_s(self._failures, self.settings.retry_backoff_s, self.settings.retry_backoff_max_s)
        log.error("batch_failed", service=self.name, positions=positions(records), records=len(records),
                  cause=failure_kind(exc), error=repr(exc), attempt=self._failures, retry_in_s=round(delay, 3))
        await asyncio.sleep(delay)

    def _key_wanted(self, record: Any) -> bool:
        """False for another unit's record on a shared, keyed topic (HandlerSpec.keys_by_topic)."""
        keys = self.keys_by_topic.get(record.topic)
        return keys is None or record.key in keys

    def _decode_wanted(self, records: Sequence[Any]) -> tuple[list[tuple[Any, Envelope[Any]]], list[tuple[Any, str]]]:
        """The records this service handles, decoded, and those it cannot decode, with why."""
        wanted: list[tuple[Any, Envelope[Any]]] = []
        dead: list[tuple[Any, str]] = []
        for record in records:
            ce_type = next((v for k, v in (record.headers or ()) if k == "ce_type"), None)
            if self.event_types is not None and ce_type is not None and ce_type not in self.event_types:
                self.stats["skipped"] += 1
                continue
            if not self._key_wanted(record):
                self.stats["skipped"] += 1
                continue
            try:
                wanted.append((record, self.decoder(record)))
            except DecodeError as exc:
                log.warning("record_dead_lettered", service=self.name, topic=record.topic,
                            partition=record.partition, offset=record.offset, error=str(exc))
                dead.append((record, str(exc)))
        return wanted, dead

    def _apply(self, wanted: list[tuple[Any, Envelope[Any]]],
               undecodable: list[tuple[Any, str]]) -> tuple[Produced, list[str], Causes]:
        """Apply a batch in one transaction.

        First optimistically: no savepoint per event (a handler's effects are its session writes
        and its emits, so a failed attempt leaves nothing behind once rolled back). If a handler
        raises anything but a transient error (NotYet included), the attempt is rolled back and
        the batch applied again carefully, each event in its own savepoint, so that one event can
        be parked or dead-lettered without undoing the others.
        """
        if not wanted:
            return self._apply_batch(wanted, undecodable, careful=True) if undecodable else ([], [], {})
        if self.spec.prepare_batch is not None:
            try:
                self.spec.prepare_batch(self.spec.deps, [envelope for _, envelope in wanted])
            except Exception as exc:  # only an optimisation: the handler still works event by event
                log.warning("prepare_batch_failed", service=self.name, error=repr(exc))
        stats = dict(self.stats)
        try:
            return self._apply_batch(wanted, undecodable, careful=False)
        except _Careful:
            pass
        except Exception as exc:
            if stops_the_batch(exc):
                raise
        self.stats.clear()
        self.stats.update(stats)  # the rolled-back attempt counted nothing
        return self._apply_batch(wanted, undecodable, careful=True)

    def _apply_batch(self, wanted: list[tuple[Any, Envelope[Any]]], undecodable: list[tuple[Any, str]],
                     careful: bool) -> tuple[Produced, list[str], Causes]:
        outputs: Produced = []
        envelopes = [envelope for _, envelope in wanted]
        with write_lock(self.engine), Session(self.engine) as session, session.begin():
            lock_tickets(session, self.name, (envelope.ticket_id for envelope in envelopes))  # before the ledger read
            ctx = self.context(session)
            ledger = BatchLedger.read(session.connection(), self.name, envelopes, careful, self.clock())
            for record, reason in undecodable:
                # A redelivered one re-sends its dead letter if that is still in the outbox, rather than a second one.
                cause = undecodable_cause(record)
                outputs += self._stored_outputs(session, cause) or [ledger.dead_letter(cause, dead_letter_for(record, self.name, reason))]
            apply = self._applier(ctx, envelopes, careful)
            for record, envelope in wanted:
                outputs.extend(self._apply_one(session, ctx, apply, record, envelope, ledger))
            apply.finish()
            ledger.write(session)
        self.stats["dead_lettered"] += len(undecodable)
        return outputs, sorted({cause for cause, _, _ in outputs}), ledger.causes

    def _applier(self, ctx: HandlerContext[Deps], envelopes: list[Envelope[Any]], careful: bool) -> Applier[Deps]:
        """How this pass applies one event: a batched spec's state spans the optimistic pass's whole batch;
        in the careful pass each event is a batch of one, inside its savepoint."""
        spec = self.spec
        if spec.batch is not None and not careful:
            return BatchApplier(ctx, spec.batch, envelopes)
        return OneByOne(ctx, spec)

    def _apply_one(self, session: Session, ctx: HandlerContext[Deps], apply: Applier[Deps], record: Any,
                   envelope: Envelope[Any], ledger: BatchLedger, unpark: bool = True) -> Produced:
        if envelope.id in ledger.processed:
            self.stats["duplicates"] += 1
            ledger.causes[envelope.id] = record
            return self._stored_outputs(session, envelope.id)
        if envelope.id in ledger.applied or envelope.id in ledger.parked:
            self.stats["duplicates"] += 1  # a second copy in this batch (its outputs are already in it), or parked
            return []
        try:
            with (session.begin_nested() if ledger.careful else contextlib.nullcontext()), bound_event(envelope):
                produced = [(envelope.id, self._owned(e.topic), encode(e.envelope, e.key)) for e in apply(envelope)]
                for _, topic, rec in produced:
                    check_size(topic, rec, self.settings.max_record_bytes)
        except NotYet as exc:
            if not ledger.careful:
                raise _Careful() from exc
            session.add(parked_row(self.name, record, envelope, str(exc), ledger.now))
            ledger.parked.add(envelope.id)
            ledger.parked_tickets.add(envelope.ticket_id)
            self.stats["parked"] = self.stats.get("parked", 0) + 1
            return []
        except Exception as exc:
            if stops_the_batch(exc):
                raise
            if not ledger.careful:
                raise _Careful() from exc
            ledger.remember(record, envelope, [], "dead-lettered")
            self.stats["dead_lettered"] += 1
            return [ledger.dead_letter(envelope.id, dead_letter_for(record, self.name, self._dead_letter_reason(envelope, exc)))]
        ledger.remember(record, envelope, produced, "applied")
        self.stats["applied"] += 1
        if unpark and envelope.ticket_id in ledger.parked_tickets:
            produced = produced + self._unpark(session, ctx, apply, envelope.ticket_id, ledger)
        return produced

    def _dead_letter_reason(self, envelope: Envelope[Any], exc: Exception) -> str:
        """Why an event is dead-lettered, logged and put in its DLQ record's `dlq_error` header: a refusal by
        a domain rule is expected (a warning, its reason as the rule wrote it), anything else is a bug."""
        if isinstance(exc, Rejected):
            log.warning("event_rejected", service=self.name, event_id=envelope.id, event_type=envelope.type,
                        ticket_id=envelope.ticket_id, reason=str(exc))
            return f"rejected: {exc}"
        if isinstance(exc, OutputTooLarge):
            log.error("output_too_large", service=self.name, event_id=envelope.id, event_type=envelope.type,
                      ticket_id=envelope.ticket_id, error=str(exc))
            return f"output too large: {exc}"
        log.error("handler_failed", service=self.name, event_id=envelope.id, event_type=envelope.type,
                  ticket_id=envelope.ticket_id, error=repr(exc))
        return f"handler error: {exc!r}"

    def _unpark(self, session: Session, ctx: HandlerContext[Deps], apply: Applier[Deps], ticket_id: str,
                ledger: BatchLedger) -> Produced:
        """Retry the events of this ticket that were waiting for something it may just have brought."""
        if not ledger.careful:
            raise _Careful()  # parking and unparking need savepoints
        produced: Produced = []
        progress = True
        while progress:
            progress = False
            parked = session.execute(select(ParkedEvent).where(col(ParkedEvent.consumer) == self.name,
                                                               col(ParkedEvent.ticket_id) == ticket_id)).scalars().all()
            for row in sorted(parked, key=parked_order):
                record = ParkedRecord.of(row)
                session.delete(row)
                session.flush()
                ledger.parked.discard(row.event_id)
                before = self.stats["applied"]
                produced += self._apply_one(session, ctx, apply, record, self.decoder(record), ledger, unpark=False)
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
        is acknowledged now, and rows confirmed during the clean-up's wait (`outbox_clear_delay_s`) or
        while it runs are deleted together by it. A row left behind (a crash in between) is only re-sent
        at the next start, with its original id, and dropped downstream as a duplicate."""
        self._to_clear.extend(cause_ids)
        if self._clearing is None or self._clearing.done():
            self._clearing = asyncio.get_running_loop().create_task(self._clear_pending())

    async def _clear_pending(self) -> None:
        # One delete transaction per batch cost about 1 ms of CPU (a thread hop, the write lock, a commit): at
        # a city's normal rate, a batch of one or two records. Waiting gathers several batches' rows into one.
        now = self._clear_signal()
        if not now.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(now.wait(), timeout=self.settings.outbox_clear_delay_s)
        while self._to_clear:
            ids, self._to_clear = self._to_clear, []
            try:
                await asyncio.to_thread(self._clear_outbox, ids)
            except Exception as exc:
                log.warning("outbox_clear_failed", service=self.name, causes=len(ids), error=repr(exc))

    async def flush_outbox(self) -> None:
        """Run the outbox clean-up now, without its wait, and wait for it (e.g. before stopping)."""
        now = self._clear_signal()
        now.set()
        try:
            while self._clearing is not None and not self._clearing.done():
                await asyncio.shield(self._clearing)
        finally:
            now.clear()

    def _clear_signal(self) -> asyncio.Event:
        """The running loop's "clear now" event (tests run one pipeline in several loops, one after another)."""
        loop = asyncio.get_running_loop()
        if self._clear_now is None or self._clear_now[0] is not loop:
            self._clear_now = (loop, asyncio.Event())
        return self._clear_now[1]

    def _clear_outbox(self, cause_ids: list[str]) -> None:
        with write_lock(self.engine), Session(self.engine) as session, session.begin():
            for chunk in range(0, len(cause_ids), 500):
                session.execute(delete(OutboxRecord).where(col(OutboxRecord.consumer) == self.name,
                                                           col(OutboxRecord.cause_id).in_(cause_ids[chunk:chunk + 500])))

    async def _publish(self, outputs: Produced, causes: Causes | None = None) -> None:
        """Send the outputs and await their confirmation; an output the broker will never take dead-letters its
        cause (the record in `causes`, else the output itself) through the outbox. Raises on a transient failure."""
        assert self.broker is not None, "subscribe() first"
        refused = await send_all(self.broker, outputs)
        self.stats["published"] += len(outputs) - len(refused)
        if refused:
            letters = await asyncio.to_thread(dead_letter_refused, self.engine, self.name, refused, causes or {})
            self.stats["dead_lettered"] += len(letters)
            refused_again = await send_all(self.broker, letters)
            if refused_again:  # a DLQ the broker refuses too: logged as lost, not retried for ever
                await asyncio.to_thread(dead_letter_refused, self.engine, self.name, refused_again, causes or {})

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
        """One round of a time-driven handler: first re-send what an earlier round could not publish (a tick has
        no redelivery to do it), then apply it in a transaction (outputs through the outbox), publish what it
        produced, and return how many records that was."""
        await self.flush_outbox()
        await self._resend_tick_outputs()
        emits = await asyncio.to_thread(self._tick_once, tick)
        if emits:
            await self._publish(emits)
            self._clear_later(sorted({cause for cause, _, _ in emits}))
        return len(emits)

    async def _resend_tick_outputs(self) -> None:
        def load() -> Produced:
            with Session(self.engine) as session:
                rows = session.execute(select(OutboxRecord).where(col(OutboxRecord.consumer) == self.name,
                                                                   col(OutboxRecord.cause_id).startswith("tick:"))).scalars().all()
                return [row_to_output(r) for r in rows]
        left = await asyncio.to_thread(load)
        if left:
            await self._publish(left)
            await asyncio.to_thread(self._clear_outbox, sorted({cause for cause, _, _ in left}))
            log.info("tick_outputs_resent", service=self.name, records=len(left))

    def _tick_once(self, tick: TickHandler[Deps]) -> Produced:
        with write_lock(self.engine), Session(self.engine) as session, session.begin():
            ctx = self.context(session)
            produced = [(self._owned(e.topic), encode(e.envelope, e.key)) for e in tick(ctx)]
            outputs = [(tick_cause(rec), topic, rec) for topic, rec in produced]
            if outputs:
                # Through the outbox, so a crash or a failed publish re-sends them (one executemany on the
                # connection, after the tick's own ORM changes are flushed).
                session.flush()
                session.connection().execute(INSERT_OUTBOX, [outbox_values(self.name, *output) for output in outputs])
            return outputs

    async def recover_outbox(self) -> int:
        """Publish what a crash left in the outbox (before any new work); return how many."""
        def load() -> Produced:
            with Session(self.engine) as session:
                rows = session.execute(select(OutboxRecord).where(col(OutboxRecord.consumer) == self.name)).scalars().all()
                return [row_to_output(r) for r in rows]
        outputs = await asyncio.to_thread(load)
        if outputs:
            await self._publish(outputs)
            await asyncio.to_thread(self._clear_outbox, sorted({cause for cause, _, _ in outputs}))
            log.info("outbox_recovered", service=self.name, records=len(outputs))
        return len(outputs)

    # ---------------------------------------------------------------- upkeep

    async def run_upkeep(self, stop: asyncio.Event) -> None:
        """Every `upkeep_every_s` while the service runs: expire parked events, prune old applied-event ids."""
        while not stop.is_set():
            try:
                await self.upkeep_once()
            except Exception as exc:  # keep going: the next round retries
                log.error("upkeep_failed", service=self.name, error=repr(exc))
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.settings.upkeep_every_s)
            except TimeoutError:
                pass

    @contextlib.asynccontextmanager
    async def upkeep_running(self) -> AsyncIterator[None]:
        """`run_upkeep` for as long as the block runs (apps that manage their own lifespan: intake, the bridge)."""
        stop = asyncio.Event()
        task = asyncio.create_task(self.run_upkeep(stop))
        try:
            yield
        finally:
            stop.set()
            await task

    async def upkeep_once(self) -> tuple[int, int]:
        """One round of upkeep; returns (parked events dead-lettered, applied-event ids pruned)."""
        letters = await asyncio.to_thread(expire_parked, self.engine, self.name, self.clock(), self.settings.parked_timeout_s)
        self.stats["dead_lettered"] += len(letters)
        if letters:
            await self._publish(letters)
            self._clear_later(sorted({cause for cause, _, _ in letters}))
            await self.flush_outbox()
        applied_before = self.clock() - timedelta(seconds=self.settings.processed_retention_s)
        pruned = await asyncio.to_thread(prune_applied_ids, self.engine, self.name, applied_before)
        return len(letters), pruned
