"""Rebuild the SLA store from the log alone: the workflow topics give the timers, the SLA topic gives what they
already fired. Run it with the service stopped; the service then starts where the rebuild stopped reading.

1. every partition of the workflow topics the service reads is read from the start to its current end and
   applied by the service's own handler (its outputs are not published: the SLA topic already has them);
2. the service's own past firings on cityops.sla.v1 are applied as marks (reminder fractions sent, breaches,
   escalation rungs), so nothing that was sent is sent again; then every timer's next due time is set;
3. the consumer group is committed at the ends it read to, so the restarted service goes on from there
   (and its first sweep fires only what fell due since).

The log is read and applied one fetch at a time (a transaction each), so its length is not bounded by the
machine's memory: a city's year is hundreds of millions of records. A copy of an event (an outbox re-send)
is recognised by its id in the store's applied-event ledger, as the live service recognises it. Interrupted,
the store holds part of the log: remove it and run the rebuild again (the group is committed only at the end).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import func, insert, tuple_
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from contracts import codec
from contracts import events as ev
from contracts.envelope import Envelope, utcnow
from contracts.topics import SLA
from services.common.batch_state import table_of
from services.common.bookkeeping import BatchLedger
from services.common.collector import BulkCollector, bulk_collection
from services.common.handler import HandlerContext, Rejected
from services.common.kafka import kafka_access
from services.common.progress import Meter, NullMeter
from services.common.store import ProcessedEvent, create_tables

from . import domain
from .handlers import BATCH, EVENT_TYPES, TOPICS, SlaRuntime
from .models import TABLES, SlaTaskRow, SlaTicketRow, SlaTimerRow, store_timer, to_timer
from .settings import SlaSettings

SOURCE = "/cityops/sla"
OWN_TYPES = {ev.SlaReminderSent.event_type, ev.SlaBreached.event_type, ev.TicketEscalated.event_type}


@dataclass(frozen=True)
class RebuildReport:
    workflow_events: int
    marks: int
    positions: dict[str, int]


async def rebuild_from_log(settings: SlaSettings, engine: Engine, runtime: SlaRuntime,
                           meter: Meter | None = None) -> RebuildReport:
    """Read the log into an empty store (see the module docstring); return what was applied. `meter` shows
    the progress of each phase: the workflow topics' records, the service's own records, the timers."""
    meter = meter or NullMeter()
    create_tables(engine, TABLES)
    consumer = AIOKafkaConsumer(**kafka_access(settings).options, group_id=settings.group_id,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        workflow = await _partitions(settings, TOPICS)
        own = await _partitions(settings, [SLA.name])
        # Every row the rebuild writes is alive until its transaction ends: the collector's full scans of them
        # were a fifth of the CPU (services/common/collector.py).
        with bulk_collection() as collector:
            applied, ends = 0, await _ends(consumer, workflow)
            meter.phase("workflow", await _record_count(consumer, ends))
            async for records in _read(consumer, workflow, ends):
                applied += _apply(engine, settings, runtime, records, collector)
                meter.advance(len(records))
            marks, own_ends = 0, await _ends(consumer, own)
            meter.phase("fired", await _record_count(consumer, own_ends))
            async for records in _read(consumer, own, own_ends):
                marks += _mark(engine, runtime, records)
                meter.advance(len(records))
            meter.phase("timers", _timer_count(engine))
            _reschedule(engine, runtime, collector, meter)
        if workflow:
            consumer.assign(workflow)  # a commit needs its partitions assigned
            await consumer.commit(ends)
    finally:
        await consumer.stop()
    return RebuildReport(applied, marks, {f"{tp.topic}:{tp.partition}": offset for tp, offset in ends.items()})


async def _partitions(settings: SlaSettings, topics: Iterable[str]) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(**kafka_access(settings).options)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return [TopicPartition(t["topic"], p["partition"]) for t in described for p in sorted(
        t.get("partitions", ()), key=lambda p: p["partition"])]


async def _ends(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    return await consumer.end_offsets(partitions) if partitions else {}


async def _record_count(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> int:
    """How many records lie before `ends` (at most: a compacted topic may hold fewer)."""
    starts = await consumer.beginning_offsets(list(ends)) if ends else {}
    return sum(end - starts[tp] for tp, end in ends.items())


async def _read(consumer: AIOKafkaConsumer, partitions: list[TopicPartition],
                ends: dict[TopicPartition, int]) -> AsyncIterator[list[Any]]:
    """The partitions' records from the start up to `ends` (those seen when reading began), a fetch at a time."""
    if not partitions:
        return
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
        fetched = await consumer.getmany(timeout_ms=500, max_records=READ_BATCH)
        records = [r for batch in fetched.values() for r in batch if r.offset < ends[TopicPartition(r.topic, r.partition)]]
        if records:
            yield records


def _decoded(records: Iterable[Any], wanted: set[str]) -> Iterable[tuple[Any, Envelope[Any]]]:
    for record in records:
        ce_type = dict(record.headers or ()).get("ce_type", b"").decode()
        if ce_type in wanted:
            try:
                yield record, codec.decode(record.key, record.value, record.headers)
            except codec.DecodeError:
                continue  # the live service dead-lettered it too


REBUILD_BATCH = 2000  # events per BATCH.start/finish round, as the live service's batches but larger
READ_BATCH = 5000  # records per fetch from Kafka, applied in one transaction


def _apply(engine: Engine, settings: SlaSettings, runtime: SlaRuntime, records: list[Any],
           collector: BulkCollector) -> int:
    """Apply one stretch of the workflow topics' records, in one transaction; return how many were applied."""
    refused: set[str] = set()
    with Session(engine) as session, session.begin():
        unique = _first_copies(session, _decoded(records, set(EVENT_TYPES)))
        ctx = HandlerContext(session=session, now=utcnow, source=SOURCE, settings=settings, deps=runtime)
        for start in range(0, len(unique), REBUILD_BATCH):
            chunk = unique[start:start + REBUILD_BATCH]
            state = BATCH.start(ctx, [envelope for _, envelope in chunk])
            for _, envelope in chunk:
                try:
                    list(BATCH.apply(ctx, state, envelope))
                except Rejected:
                    refused.add(envelope.id)  # refused before it changed anything; the live service dead-lettered it
            BATCH.finish(ctx, state)
            collector.unit_done()
        if unique:
            session.execute(insert(table_of(ProcessedEvent)), [
                {"consumer": "sla", "event_id": envelope.id, "topic": record.topic, "partition": record.partition,
                 "offset": record.offset, "outcome": "dead-lettered" if envelope.id in refused else "applied",
                 "processed_at": utcnow()} for record, envelope in unique])
    return len(unique) - len(refused)


def _first_copies(session: Session, decoded: Iterable[tuple[Any, Envelope[Any]]]) -> list[tuple[Any, Envelope[Any]]]:
    """The first copy of each event: not seen earlier in this stretch, nor applied in an earlier one (the ledger
    the live service reads for the same purpose)."""
    unique: dict[str, tuple[Any, Envelope[Any]]] = {}
    for record, envelope in decoded:
        unique.setdefault(envelope.id, (record, envelope))
    applied = BatchLedger.read(session.connection(), "sla", [envelope for _, envelope in unique.values()],
                               careful=False, now=utcnow()).processed
    return [pair for event_id, pair in unique.items() if event_id not in applied]


def _mark(engine: Engine, runtime: SlaRuntime, records: list[Any]) -> int:
    """Apply the service's own past firings among these records to the timers; return how many."""
    marks = 0
    with Session(engine) as session, session.begin():
        for _, envelope in _decoded(records, OWN_TYPES):
            if envelope.source == SOURCE:
                marks += _mark_one(session, runtime, envelope)
    return marks


TIMER_BATCH = 5000


def _timer_count(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.execute(select(func.count()).select_from(SlaTimerRow)).scalar_one())


def _reschedule(engine: Engine, runtime: SlaRuntime, collector: BulkCollector, meter: Meter | None = None) -> None:
    """Set every timer's next due time from its marks, a few thousand timers per transaction."""
    after: tuple[str, str] | None = None
    while True:
        with Session(engine) as session, session.begin():
            query = select(SlaTimerRow).order_by(SlaTimerRow.task_id, SlaTimerRow.clock).limit(TIMER_BATCH)
            if after is not None:
                query = query.where(tuple_(SlaTimerRow.task_id, SlaTimerRow.clock) > tuple_(*after))
            rows = session.execute(query).scalars().all()
            for row in rows:
                timer = to_timer(row)
                store_timer(row, timer, domain.next_due_at(timer, runtime.calendar, runtime.policy))
            if meter is not None:
                meter.advance(len(rows))
            if len(rows) < TIMER_BATCH:
                return
            after = (rows[-1].task_id, rows[-1].clock)
        collector.unit_done()


def _mark_one(session: Session, runtime: SlaRuntime, envelope: Envelope[Any]) -> int:
    data = envelope.data
    if isinstance(data, ev.TicketEscalated) and data.reason == "ping-pong":
        ticket = session.get(SlaTicketRow, envelope.ticket_id)
        if ticket is not None:
            ticket.pingpong_escalated = True
        return 1
    if isinstance(data, ev.TicketEscalated) and data.task_id:
        return _mark_rung(session, runtime, data)
    if isinstance(data, ev.SlaReminderSent | ev.SlaBreached):
        row = session.get(SlaTimerRow, (data.task_id, data.clock))
        if row is None:
            return 0
        if isinstance(data, ev.SlaReminderSent):
            row.fired = sorted({*row.fired, data.fraction})
        else:
            row.breach_deadline = data.deadline
        return 1
    return 0


def _mark_rung(session: Session, runtime: SlaRuntime, data: ev.TicketEscalated) -> int:
    task = session.get(SlaTaskRow, data.task_id)
    timer = session.get(SlaTimerRow, (data.task_id, "resolution"))
    if task is None or timer is None:
        return 0
    ladder = runtime.policy.ladder
    to_level = str(data.to_level.value if data.to_level else ladder[-1])
    if timer.level in ladder and to_level in ladder and ladder.index(to_level) > ladder.index(timer.level):
        rung = ladder.index(to_level) - ladder.index(timer.level)
    else:
        rung = 1
    task.rung = max(task.rung, rung)
    return 1
