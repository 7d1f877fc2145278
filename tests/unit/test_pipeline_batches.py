"""The pipeline's batch hooks (a spec's `Batched` start / apply / finish) through EventPipeline.handle_records, no broker.

A handler that keeps a batch's state in memory must give the same store whatever the batch boundaries, and
an event parked or dead-lettered in a batch must leave no trace in what the batch writes for the others.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlmodel import Session

from contracts import codec
from contracts import events as ev
from contracts.envelope import Envelope
from domain.catalogue import load_catalogue
from services.common.pipeline import (
    Batched,
    EventPipeline,
    HandlerContext,
    HandlerSpec,
    NoDeps,
    NotYet,
)
from services.common.settings import ServiceSettings
from services.common.store import ParkedEvent, create_tables
from services.sla.handlers import build_runtime, spec
from services.sla.models import TABLES, SlaFactRow, all_timers, make_store_engine
from services.sla.settings import SlaSettings
from services.sla.synthetic import TicketStory

SH = ZoneInfo("Asia/Shanghai")


class _Record:
    def __init__(self, topic: str, offset: int, rec: codec.KafkaRecord) -> None:
        self.topic, self.partition, self.offset = topic, 0, offset
        self.key, self.value, self.headers = rec.key, rec.value, rec.headers


class _Broker:
    """Stands in for FastStream's broker: publish returns an already-confirmed future."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, value: bytes, topic: str, **_: Any) -> asyncio.Future[None]:
        self.published.append((topic, value))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def _records(stories: list[TicketStory]) -> list[_Record]:
    ordered = sorted((e for s in stories for e in s.events), key=lambda e: e.time)
    return [_Record("cityops.act.v1", i, codec.encode(e)) for i, e in enumerate(ordered)]


def _stories(n: int) -> list[TicketStory]:
    stories = []
    start = datetime(2025, 11, 3, 9, tzinfo=SH)
    for i in range(n):
        at = start + timedelta(minutes=7 * i)
        story = TicketStory(f"T-{i}")
        story.registered(at)
        story.classified(at + timedelta(minutes=1), lead="housing")
        task = story.assigned(at + timedelta(minutes=2), "housing")
        story.signed_for(at + timedelta(minutes=30), task)
        if i % 3 == 0:
            story.extension_requested(at + timedelta(hours=1), task)
            story.extension_decided(at + timedelta(hours=2), task)
        if i % 4 == 1:
            story.returned(at + timedelta(hours=1), task)
            task = story.assigned(at + timedelta(hours=2), "city-management", round=2)
        story.progress(at + timedelta(hours=3), task, waiting_on_resident=i % 2 == 0)
        story.completed(at + timedelta(hours=5), task)
        story.closed(at + timedelta(hours=6))
        stories.append(story)
    return stories


def _sla_pipeline(tmp_path, name: str) -> EventPipeline:
    settings = SlaSettings()
    engine = make_store_engine(f"sqlite:///{tmp_path / name}.db")
    create_tables(engine, TABLES)
    pipeline = EventPipeline(name="sla", settings=settings, engine=engine, spec=spec(build_runtime(settings, load_catalogue())))
    pipeline.broker = _Broker()  # type: ignore[assignment]  # a stand-in: only its publish is called
    return pipeline


async def _feed(pipeline: EventPipeline, records: list[_Record], batch: int) -> None:
    for i in range(0, len(records), batch):
        await pipeline.handle_records(records[i:i + batch])


def test_sla_store_is_the_same_whatever_the_batch_boundaries(tmp_path):
    records = _records(_stories(12))
    stores = {}
    for batch in (1, 5, len(records)):
        pipeline = _sla_pipeline(tmp_path, f"b{batch}")
        asyncio.run(_feed(pipeline, records, batch))
        with Session(pipeline.engine) as session:
            timers = sorted(all_timers(session), key=lambda t: (t.task_id, t.clock))
            facts = session.execute(select(SlaFactRow.event_id, SlaFactRow.kind)).all()
        stores[batch] = (timers, sorted(facts))
    assert len(stores[1][0]) == 3 * (12 + 3)  # three clocks per task; tickets 1, 5, 9 were handed on once
    assert len(stores[1][1]) == len(records)
    assert {t.status for t in stores[1][0]} >= {"done", "returned"}
    assert stores[1] == stores[5] == stores[len(records)]


def test_a_redelivered_batch_changes_nothing(tmp_path):
    records = _records(_stories(4))
    pipeline = _sla_pipeline(tmp_path, "redelivered")
    asyncio.run(_feed(pipeline, records, 50))
    with Session(pipeline.engine) as session:
        before = sorted(all_timers(session), key=lambda t: (t.task_id, t.clock))
    asyncio.run(_feed(pipeline, records, 50))
    with Session(pipeline.engine) as session:
        after = sorted(all_timers(session), key=lambda t: (t.task_id, t.clock))
        facts = session.execute(select(SlaFactRow.id)).all()
    assert after == before
    assert len(facts) == len(records)
    assert pipeline.stats["duplicates"] == len(records)


# ---------------------------------------------------------------------------- the hooks' contract, on a toy handler


class _Counting:
    """Keeps the events it saw in its batch state and writes them at finish (as a fact row each)."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.finishes = 0

    def start(self, ctx: HandlerContext[NoDeps], envelopes: list[Envelope[Any]]) -> list[tuple[str, str]]:
        self.starts.append(len(envelopes))
        return []

    def finish(self, ctx: HandlerContext[NoDeps], seen: list[tuple[str, str]]) -> None:
        self.finishes += 1
        for event_id, ticket_id in seen:
            ctx.session.add(SlaFactRow(event_id=event_id, ticket_id=ticket_id, at=datetime.now(SH), kind="noted"))

    def apply(self, ctx: HandlerContext[NoDeps], seen: list[tuple[str, str]], envelope: Envelope[Any]) -> list[Any]:
        if isinstance(envelope.data, ev.TaskSignedFor) and envelope.ticket_id == "T-1":
            raise NotYet("waiting for something else")
        seen.append((envelope.id, envelope.ticket_id))
        return []


@pytest.mark.parametrize("batch", [3, 100])
def test_a_parked_event_leaves_no_trace_in_what_the_batch_writes_for_the_others(tmp_path, batch):
    records = _records(_stories(3))
    engine = make_store_engine(f"sqlite:///{tmp_path / 'toy.db'}")
    create_tables(engine, TABLES)
    handler = _Counting()
    spec = HandlerSpec(topics=["cityops.act.v1"], event_types=None, deps=NoDeps(),
                       batch=Batched(start=handler.start, apply=handler.apply, finish=handler.finish))
    pipeline = EventPipeline(name="toy", settings=ServiceSettings(), engine=engine, spec=spec)
    pipeline.broker = _Broker()  # type: ignore[assignment]  # a stand-in: only its publish is called
    asyncio.run(_feed(pipeline, records, batch))
    with Session(engine) as session:
        written = {row.event_id for row in session.execute(select(SlaFactRow)).scalars()}
        parked = session.execute(select(ParkedEvent.event_id)).scalars().all()
    expected = {codec.decode(r.key, r.value, r.headers).id for r in records} - set(parked)
    assert len(parked) == 1
    assert written == expected
    assert 1 in handler.starts  # the careful pass wrapped each event of the failed batch in its own start/finish


# ---------------------------------------------------------------------------- the collector after each batch


def test_a_started_service_freezes_what_survives_each_batch_it_handled(tmp_path):
    import gc

    from services.common import collector

    pipeline = _sla_pipeline(tmp_path, "frozen")
    records = _records(_stories(3))
    try:
        collector.freeze_startup_heap()
        collector.freeze_batch_survivors(600)
        before = gc.get_freeze_count()
        asyncio.run(_feed(pipeline, records, len(records)))
        after_on = gc.get_freeze_count()
        collector.freeze_batch_survivors(0)
        asyncio.run(_feed(pipeline, _records(_stories(3)), len(records)))
        after_off = gc.get_freeze_count()
    finally:
        collector.freeze_batch_survivors(0)
        collector._startup_frozen = False
        gc.unfreeze()
    assert after_on > before  # the batch's survivors (the store's clocks, the session's caches) left the scans
    assert after_off == after_on  # switched off: the collector's own thresholds again
