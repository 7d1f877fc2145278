"""The projections on the real broker, on SQLite and on a real PostgreSQL, over thousands of tickets.

A synthetic history of whole ticket lifecycles is published in two parts around a cut-off time. Two
live projection services (one per database) consume it; at the cut-off their state is noted. Then:
rebuild from offset zero equals live on both databases (and the two databases equal each other);
redelivering a slice of the log changes nothing; a ticket's story read from Kafka matches its live
timeline; as-of the cut-off returns what the live projections showed then.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from contracts import events as ev
from contracts.topics import INTAKE, topic_for_event
from services.common.kafka import kafka_access
from services.common.store import make_engine
from services.projections import queries
from services.projections.app import create_app
from services.projections.logsource import KafkaLog, partitions_of
from services.projections.models import ProjTimelineEntry
from services.projections.rebuild import RebuildInterrupted, checksum, rebuild
from services.projections.replay import AsOfQuestion, as_of_log, as_of_store, events_from_log, story_from_log
from services.projections.settings import ProjectionsSettings, projected_specs
from tests.integration.pg import postgres_server  # noqa: F401 - fixture
from tools.importers.publish import ImportReport, publish
from tools.importers.synthetic import SyntheticHistory

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

TICKETS = int(os.environ.get("CITYOPS_TEST_PROJECTION_TICKETS", "2000"))
START = datetime(2026, 5, 4, tzinfo=UTC)
SPAN = timedelta(days=14)
CUT = START + timedelta(days=8, hours=3)
MIN_N = 10


@dataclass
class Live:
    """One live projections service and its store."""

    name: str
    engine: Engine
    settings: ProjectionsSettings
    app: Any = None

    @property
    def pipeline(self) -> Any:
        return self.app.context.get("pipeline")

    def events(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(ProjTimelineEntry)).scalar_one()


@dataclass
class Snapshot:
    tickets: dict[str, tuple[dict[str, Any] | None, list[dict[str, Any]]]]
    queues: dict[str, list[dict[str, Any]]]
    rankings: list[dict[str, Any]]


@dataclass
class World:
    bootstrap: str
    prefix: str
    history: list[Any]
    lives: dict[str, Live]
    snapshot: Snapshot
    sample: list[str]
    units: list[str]
    stack: AsyncExitStack
    measured: dict[str, Any] = field(default_factory=dict)

    def log(self) -> KafkaLog:
        return KafkaLog(self.bootstrap, [self.prefix + s.name for s in projected_specs()])


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(condition):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def projected(envelopes: list[Any]) -> list[Any]:
    """What the projections read of a history: all but intake's records, whose topic only intake, discover and
    the archiver read (issue 11)."""
    return [e for e in envelopes if e.type != ev.TicketSubmitted.event_type]


async def publish_history(bootstrap: str, prefix: str, envelopes: list[Any]) -> ImportReport:
    # The whole log, intake's topic included: the projections must leave it unread.
    specs = [dataclasses.replace(s, name=prefix + s.name) for s in (INTAKE, *projected_specs())]
    report = ImportReport(source="synthetic", topic="workflow", rows=len(envelopes))
    return await publish(bootstrap, specs, envelopes, report, chunk=5000,
                         topic_for=lambda e: prefix + topic_for_event(e.type))


def _sample(history: list[Any]) -> list[str]:
    """Tickets with varied stories: reopened, returned, merged, consulted, breached, and in flight at the cut."""
    picks: list[str] = []
    for kind in (ev.TicketReopened, ev.TaskReturned, ev.TicketMerged, ev.SupervisorDecided, ev.SlaBreached,
                 ev.PlanAgreed, ev.ManualTriageResolved, ev.ReturnRejected):
        found = [e.ticket_id for e in history if isinstance(e.data, kind)]
        picks += [t for t in found[len(found) // 3:len(found) // 3 + 2] if t not in picks]
    in_flight = [e.ticket_id for e in history if isinstance(e.data, ev.TaskAssigned) and CUT - timedelta(hours=6) < e.time <= CUT]
    picks += [t for t in in_flight[:3] if t not in picks]
    return picks


def take_snapshot(engine: Engine, sample: list[str], units: list[str]) -> Snapshot:
    return Snapshot(tickets={t: (queries.ticket(engine, t), queries.ticket_tasks(engine, t)) for t in sample},
                    queues={u: queries.unit_queue(engine, u) for u in units},
                    rankings=[r.as_dict() for r in queries.rankings(engine, MIN_N)])


@pytest_asyncio.fixture(scope="module")
async def world(kafka_bootstrap, postgres_server, tmp_path_factory) -> AsyncIterator[World]:  # noqa: F811
    prefix = f"live{uuid.uuid4().hex[:8]}."
    history = SyntheticHistory(TICKETS, seed=2026, start=START, span=SPAN).envelopes()
    before, after = [e for e in history if e.time <= CUT], [e for e in history if e.time > CUT]
    state = tmp_path_factory.mktemp("projections")
    lives = {
        "sqlite": Live("sqlite", make_engine(f"sqlite:///{state / 'live.db'}"), ProjectionsSettings()),
        "postgres": Live("postgres", make_engine(postgres_server.new_database("live")), ProjectionsSettings()),
    }
    stack = AsyncExitStack()
    measured: dict[str, Any] = {"tickets": TICKETS, "events": len(history)}
    try:
        measured["publish"] = (await publish_history(kafka_bootstrap, prefix, before)).as_dict()
        started = time.perf_counter()
        for live in lives.values():
            live.settings = ProjectionsSettings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix, batch_timeout_ms=50,
                                                consumer_group=f"proj-{live.name}-{prefix}", min_rank_sample=MIN_N)
            live.app = create_app(live.settings, engine=live.engine)
            await stack.enter_async_context(live.app)
        for live in lives.values():
            await wait_until(lambda live=live: live.events() == len(projected(before)), 900, f"{live.name} to catch up to the cut")
        measured["live_catch_up_seconds"] = round(time.perf_counter() - started, 1)
        sample = _sample(history)
        busiest = queries.rankings(lives["sqlite"].engine, MIN_N, "unit")
        units = [r.key for r in sorted(busiest, key=lambda r: -r.n)[:4]]
        snapshot = take_snapshot(lives["sqlite"].engine, sample, units)
        assert snapshot == take_snapshot(lives["postgres"].engine, sample, units)
        await publish_history(kafka_bootstrap, prefix, after)
        for live in lives.values():
            await wait_until(lambda live=live: live.events() == len(projected(history)), 900, f"{live.name} to catch up to the end")
        world = World(kafka_bootstrap, prefix, history, lives, snapshot, sample, units, stack, measured)
        yield world
        await world.stack.aclose()  # a test may have restarted a service on a new stack
    finally:
        await stack.aclose()
        print("\nprojection measurements:", json.dumps(measured, default=str))
        for live in lives.values():
            live.engine.dispose()


async def test_the_live_projections_on_sqlite_and_postgresql_are_equal(world):
    sqlite, postgres = (world.lives[n].engine for n in ("sqlite", "postgres"))
    digest = checksum(sqlite)
    assert digest == checksum(postgres)
    assert digest.tables["proj_tickets"][0] == TICKETS
    assert digest.tables["proj_timeline"][0] == len(projected(world.history))
    statuses = {r["status"] for r in [queries.ticket(sqlite, t) for t in world.sample] if r}
    assert {"closed", "merged"} <= statuses or "closed" in statuses


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_rebuild_from_offset_zero_equals_live(world, store, postgres_server, tmp_path):  # noqa: F811
    live = world.lives[store]
    target = make_engine(f"sqlite:///{tmp_path / 'rebuilt.db'}") if store == "sqlite" else \
        make_engine(postgres_server.new_database("rebuilt"))
    report = await rebuild(target, world.log(), batch=5000)
    world.measured[f"rebuild_{store}"] = report.as_dict()
    assert report.records_read == len(projected(world.history)) and report.undecodable == 0 and report.fold_failures == 0
    assert checksum(target) == checksum(live.engine)
    target.dispose()


class _StopAfterBatches:
    def __init__(self, batches: int) -> None:
        self.left = batches

    def phase(self, name: str, total: int | None) -> None:
        return None

    def advance(self, amount: int) -> None:
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt

    def close(self) -> None:
        return None


async def test_an_interrupted_rebuild_from_kafka_resumes_and_still_equals_live(world, tmp_path):
    target = make_engine(f"sqlite:///{tmp_path / 'resumed.db'}")
    with pytest.raises(RebuildInterrupted) as stopped:
        await rebuild(target, world.log(), batch=1000, meter=_StopAfterBatches(4))
    assert 0 < stopped.value.report.records_read < len(projected(world.history))
    report = await rebuild(target, world.log(), batch=1000)
    assert report.resumed and report.records_read == len(projected(world.history)) - stopped.value.report.records_read
    assert checksum(target) == checksum(world.lives["sqlite"].engine)


async def test_redelivering_a_slice_of_the_log_changes_nothing(world):
    digests = {name: checksum(live.engine) for name, live in world.lives.items()}
    # 1. A producer retry publishes a slice again (same event ids).
    slice_ = world.history[len(world.history) // 3: len(world.history) // 3 + 2000]
    before = {n: live.pipeline.stats["duplicates"] for n, live in world.lives.items()}
    await publish_history(world.bootstrap, world.prefix, slice_)
    for name, live in world.lives.items():
        await wait_until(lambda live=live, name=name: live.pipeline.stats["duplicates"] >= before[name] + len(projected(slice_)),
                         600, f"{name} to see the redelivered slice")
    # 2. The consumer group is rewound (what a crash before the offset commit amounts to): the sqlite
    #    service restarts from its stored position, set back by 500 records per partition.
    live = world.lives["sqlite"]
    await world.stack.aclose()
    world.stack = AsyncExitStack()
    await _rewind(world.bootstrap, live.settings.group_id, [world.prefix + s.name for s in projected_specs()], 500)
    live.app = create_app(live.settings, engine=live.engine)
    await world.stack.enter_async_context(live.app)
    await wait_until(lambda: live.pipeline.stats["duplicates"] >= 500, 600, "the rewound records to come back")
    assert live.pipeline.stats["applied"] == 0
    for name, engine in ((n, lv.engine) for n, lv in world.lives.items()):
        assert checksum(engine) == digests[name]


async def _rewind(bootstrap: str, group: str, topics: list[str], by: int) -> None:
    partitions = [TopicPartition(t, p) for t, ps in (await partitions_of(bootstrap, topics)).items() for p in ps]
    consumer = AIOKafkaConsumer(**kafka_access(bootstrap).options, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        committed = {tp: await consumer.committed(tp) for tp in partitions}
        await consumer.commit({tp: max((o or 0) - by, 0) for tp, o in committed.items()})
    finally:
        await consumer.stop()


async def test_a_story_read_from_kafka_matches_the_live_timeline(world):
    engine = world.lives["postgres"].engine
    for ticket_id in world.sample[:8]:
        story = await story_from_log(world.log(), ticket_id)
        live = queries.timeline(engine, ticket_id)
        columns = ("event_id", "time", "kind", "unit", "summary")
        assert [tuple(e[c] for c in columns) for e in story.entries] == [tuple(e[c] for c in columns) for e in live]
        assert story.folded is not None and story.folded.ticket.status == queries.ticket(engine, ticket_id)["status"]
        held = story.holdings
        assert held and held[0].holder == "hotline" and all(h.end is None or h.end >= h.start for h in held)


async def test_as_of_the_cut_returns_what_the_live_projections_showed_then(world):
    question = AsOfQuestion(CUT, rankings=True, min_n=MIN_N)
    for source, answer in (("sqlite", as_of_store(world.lives["sqlite"].engine, question)),
                           ("postgres", as_of_store(world.lives["postgres"].engine, question)),
                           ("kafka", await as_of_log(world.log(), question))):
        assert [r.as_dict() for r in answer.rankings] == world.snapshot.rankings, source
    for ticket_id, (row, tasks) in world.snapshot.tickets.items():
        answer = as_of_store(world.lives["postgres"].engine, AsOfQuestion(CUT, ticket_id=ticket_id))
        assert (answer.ticket, answer.tasks) == (row, tasks), ticket_id
    for unit, queue in world.snapshot.queues.items():
        answer = as_of_store(world.lives["sqlite"].engine, AsOfQuestion(CUT, unit=unit))
        assert answer.queue == queue, unit
    from_log = await as_of_log(world.log(), AsOfQuestion(CUT, unit=world.units[0]))
    assert from_log.queue == world.snapshot.queues[world.units[0]]


async def test_events_of_a_time_range_from_kafka_equal_those_of_the_store(world):
    flt = queries.EventFilter(since=CUT - timedelta(hours=12), until=CUT, types=("TaskAssigned", "TaskReturned"))
    from_store = queries.events(world.lives["sqlite"].engine, flt)
    from_kafka = await events_from_log(world.log(), flt)
    assert from_store and sorted(r["event_id"] for r in from_kafka) == sorted(r["event_id"] for r in from_store)
    district = await events_from_log(world.log(), dataclasses.replace(flt, district="district-east"))
    assert {r["district"] for r in district} == {"district-east"}
    assert sorted(r["event_id"] for r in district) == sorted(
        r["event_id"] for r in queries.events(world.lives["sqlite"].engine, dataclasses.replace(flt, district="district-east")))
