"""Rebuild the SLA store from the log alone: the workflow topics give the timers, the SLA topic gives what they
already fired. Run it with the service stopped; the service then starts where the rebuild stopped reading.

1. every partition of the workflow topics the service reads is read from the start to its current end and
   applied by the service's own handler (its outputs are not published: the SLA topic already has them);
2. the service's own past firings on cityops.sla.v1 are applied as marks (reminder fractions sent, breaches,
   escalation rungs), so nothing that was sent is sent again;
3. the consumer group is committed at the ends it read to, so the restarted service goes on from there
   (and its first sweep fires only what fell due since).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from contracts import codec
from contracts import events as ev
from contracts.envelope import Envelope, utcnow
from contracts.topics import SLA
from services.common.batch_state import table_of
from services.common.collector import BulkCollector, bulk_collection
from services.common.handler import HandlerContext, Rejected
from services.common.kafka import kafka_access
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


async def rebuild_from_log(settings: SlaSettings, engine: Engine, runtime: SlaRuntime) -> RebuildReport:
    """Read the log into an empty store (see the module docstring); return what was applied."""
    create_tables(engine, TABLES)
    consumer = AIOKafkaConsumer(**kafka_access(settings).options, group_id=settings.group_id,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        own, _ = await _read_to_end(consumer, await _partitions(settings, [SLA.name]))
        # Last: a commit needs its partitions assigned.
        workflow, ends = await _read_to_end(consumer, await _partitions(settings, TOPICS))
        # The whole log and every row it makes are held until the end: the collector's full scans of them were
        # a fifth of the CPU (services/common/collector.py).
        with bulk_collection() as collector:
            applied = _apply(engine, settings, runtime, workflow, collector)
            marks = _mark(engine, runtime, own)
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


async def _read_to_end(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> tuple[list[Any], dict[TopicPartition, int]]:
    if not partitions:
        return [], {}
    consumer.assign(partitions)
    ends = await consumer.end_offsets(partitions)
    await consumer.seek_to_beginning(*partitions)
    records: list[Any] = []
    while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
        for batch in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
            records += [r for r in batch if r.offset < ends[TopicPartition(r.topic, r.partition)]]
    return records, ends


def _decoded(records: Iterable[Any], wanted: set[str]) -> Iterable[tuple[Any, Envelope[Any]]]:
    for record in records:
        ce_type = dict(record.headers or ()).get("ce_type", b"").decode()
        if ce_type in wanted:
            try:
                yield record, codec.decode(record.key, record.value, record.headers)
            except codec.DecodeError:
                continue  # the live service dead-lettered it too


REBUILD_BATCH = 2000  # events per BATCH.start/finish round, as the live service's batches but larger


def _apply(engine: Engine, settings: SlaSettings, runtime: SlaRuntime, records: list[Any],
           collector: BulkCollector) -> int:
    seen: set[str] = set()
    unique = []
    for record, envelope in _decoded(records, set(EVENT_TYPES)):
        if envelope.id not in seen:  # else a redelivered copy
            seen.add(envelope.id)
            unique.append((record, envelope))
    refused: set[str] = set()
    with Session(engine) as session, session.begin():
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
        session.execute(insert(table_of(ProcessedEvent)), [
            {"consumer": "sla", "event_id": envelope.id, "topic": record.topic, "partition": record.partition,
             "offset": record.offset, "outcome": "dead-lettered" if envelope.id in refused else "applied",
             "processed_at": utcnow()} for record, envelope in unique])
    return len(unique) - len(refused)


def _mark(engine: Engine, runtime: SlaRuntime, records: list[Any]) -> int:
    marks = 0
    with Session(engine) as session, session.begin():
        for _, envelope in _decoded(records, OWN_TYPES):
            if envelope.source == SOURCE:
                marks += _mark_one(session, runtime, envelope)
        for row in session.execute(select(SlaTimerRow)).scalars().all():
            timer = to_timer(row)
            store_timer(row, timer, domain.next_due_at(timer, runtime.calendar, runtime.policy))
    return marks


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
