"""The SLA service on the real broker, time under the test's control: reminders, breach and escalation reach
the topics; a crash after the commit and a kill -9 mid-sweep lose and duplicate nothing.

Counting is by (task, clock, fraction) for reminders, (task, clock) for breaches and (task, level) for
escalations, over distinct CloudEvents ids, and the raw record count is checked too (a copy can only exist
when the process died between the publish and the outbox clean-up, and then it carries the same id).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import func, select
from sqlmodel import Session

from contracts import codec
from contracts import events as ev
from contracts.topics import AREA_TASKS, SLA, WORKFLOW_TOPICS, unit_topic_spec
from domain.catalogue import load_catalogue
from services.common.kafka import ensure_topics, kafka_access
from services.common.store import create_tables, make_engine
from services.sla import rebuild as sla_rebuild
from services.sla.app import create_app
from services.sla.handlers import TOPICS, build_runtime
from services.sla.models import TABLES, SlaFactRow, SlaTaskRow, SlaTimerRow, make_store_engine
from services.sla.rebuild import rebuild_from_log
from services.sla.settings import SlaSettings
from services.sla.synthetic import TicketStory
from tests.harness.topics import start_group_at_the_end

pytestmark = pytest.mark.kafka

SH = ZoneInfo("Asia/Shanghai")
REPO = Path(__file__).resolve().parents[2]
GRIDS = ("grid-east-1-a-1", "grid-east-2-a-1")
SUPERVISORS = ("community-east-1-a", "community-east-2-a", "street-east-1", "street-east-2", "district-east", "hotline")
# The grids, communities and streets share the area task topic; the district centre and the hotline have their own.
UNIT_TOPICS = [AREA_TASKS, *(unit_topic_spec(u) for u in SUPERVISORS if u in load_catalogue().own_topic_units())]
LIMITS = ev.Limits(sign_for=ev.TimeLimitSpec(amount=2, unit="wh"), response=ev.TimeLimitSpec(amount=4, unit="wh"),
                   resolution=ev.TimeLimitSpec(amount=1, unit="wd"))
N = 24  # tickets whose resolution clock runs


def at(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2025, month, day, hour, minute, tzinfo=SH)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def stories(prefix: str) -> tuple[list[TicketStory], str, str]:
    """N tickets signed for and answered on Monday 3 Nov 2025 (only their 1-working-day resolution clock runs:
    50% at Mon 17:30, 80% at Tue 14:42, deadline Tue 17:30), one paused by a consultation that never ends,
    one completed at once."""
    out = []
    for i in range(N + 2):
        story = TicketStory(f"{prefix}-{i:03d}", limits=LIMITS)
        story.registered(at(11, 3, 8))
        story.classified(at(11, 3, 8, 30), lead=GRIDS[i % 2], level=ev.Level.grid)
        task = story.assigned(at(11, 3, 9), GRIDS[i % 2])
        story.signed_for(at(11, 3, 9, 5), task)
        story.progress(at(11, 3, 9, 10), task)
        out.append(story)
    paused, done = out[N], out[N + 1]
    paused.consultation_requested(at(11, 3, 9, 30), (GRIDS[0], "water"), due=at(11, 10))
    done.completed(at(11, 3, 12), f"{done.ticket_id}:{GRIDS[(N + 1) % 2]}:1")
    return out, paused.ticket_id, done.ticket_id


async def publish(bootstrap: str, all_stories: list[TicketStory]) -> int:
    producer = AIOKafkaProducer(**kafka_access(bootstrap).options, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = []
        for story in all_stories:
            for topic, envelope in story.records():
                rec = codec.encode(envelope)
                futures.append(await producer.send(topic, rec.value, key=rec.key, headers=rec.headers))
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


class SlaTopic:
    """Everything on cityops.sla.v1 (or a unit's topic) about our tickets, read from the start each time."""

    def __init__(self, bootstrap: str, prefix: str, name: str = SLA.name) -> None:
        self.bootstrap, self.prefix, self.name = bootstrap, prefix, name
        self.records: list = []

    async def read(self, settle_s: float = 1.0) -> list:
        consumer = AIOKafkaConsumer(self.name, **kafka_access(self.bootstrap).options, auto_offset_reset="earliest",
                                    enable_auto_commit=False, group_id=None)
        await consumer.start()
        out, quiet_since = [], asyncio.get_running_loop().time()
        try:
            while asyncio.get_running_loop().time() - quiet_since < settle_s:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    quiet_since = asyncio.get_running_loop().time()
                    out += [r for r in records if r.key and r.key.decode().startswith(self.prefix)]
        finally:
            await consumer.stop()
        self.records = out
        return out

    def counts(self) -> tuple[Counter, Counter]:
        """(distinct events per identity, raw records per identity)."""
        distinct: dict[tuple, set] = {}
        raw: Counter = Counter()
        for record in self.records:
            envelope = codec.decode(record.key, record.value, record.headers)
            identity = identity_of(envelope.data)
            distinct.setdefault(identity, set()).add(envelope.id)
            raw[identity] += 1
        return Counter({k: len(v) for k, v in distinct.items()}), raw

    async def wait_for(self, predicate, timeout: float = 120.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            await self.read(settle_s=0.5)
            if predicate(*self.counts()):
                return
            if asyncio.get_running_loop().time() > deadline:
                distinct, raw = self.counts()
                raise AssertionError(f"timed out; distinct={sorted(Counter(k[0] for k in distinct.elements()).items())}")
            await asyncio.sleep(0.3)


def identity_of(data: ev.Event) -> tuple:
    match data:
        case ev.SlaReminderSent():
            return ("reminder", data.task_id, data.clock, data.fraction)
        case ev.SlaBreached():
            return ("breach", data.task_id, data.clock)
        case ev.TicketEscalated():
            return ("escalation", data.task_id, str(data.to_level), data.to_unit)
    raise AssertionError(f"unexpected {data!r}")


def of_kind(counter: Counter, kind: str, *rest) -> Counter:
    return Counter({k: v for k, v in counter.items() if k[0] == kind and k[2:2 + len(rest)] == rest})


def wait_store(engine, predicate, timeout: float = 120.0, poll_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Session(engine) as session:
            if predicate(session):
                return
        time.sleep(poll_s)
    raise AssertionError("store never reached the expected state")


def settings_for(bootstrap: str, unique: str, db_url: str, **extra) -> SlaSettings:
    return SlaSettings(kafka_bootstrap=bootstrap, consumer_group=f"sla-{unique}", db_url=db_url, tick_s=0.2,
                       batch_timeout_ms=50, log_level="WARNING", **extra)


async def test_reminders_breach_escalation_and_a_crash_after_commit_lose_and_duplicate_nothing(
        kafka_bootstrap, unique, tmp_path):
    prefix = f"SLA{unique}"
    await ensure_topics(kafka_bootstrap, list(WORKFLOW_TOPICS) + UNIT_TOPICS)
    all_stories, paused, done = stories(prefix)
    await start_group_at_the_end(kafka_bootstrap, f"sla-{unique}", TOPICS)
    published = await publish(kafka_bootstrap, all_stories)
    db_url = f"sqlite:///{tmp_path / 'sla.db'}"
    engine = make_engine(db_url)  # the test's own reader; the service builds its engine from db_url
    clock = FakeClock(at(11, 3, 9, 0))
    topic = SlaTopic(kafka_bootstrap, prefix)
    tasks = {f"{s.ticket_id}:{GRIDS[i % 2]}:1" for i, s in enumerate(all_stories[:N])}

    # ---- phase 1: the store catches up, then Monday evening: the 50% reminders, nothing for the others
    app = create_app(settings_for(kafka_bootstrap, unique, db_url), clock=clock)
    await app.start()
    try:
        await asyncio.to_thread(wait_store, engine, lambda s: s.execute(
            select(func.count()).select_from(SlaFactRow).where(SlaFactRow.ticket_id.startswith(prefix))).scalar() == published)
        assert (await topic.read()) == []  # Monday 09:10: nothing is due yet
        clock.now = at(11, 3, 18)
        await topic.wait_for(lambda d, r: len(of_kind(d, "reminder")) == N)
        distinct, raw = topic.counts()
        assert {k[1] for k in distinct} == tasks and set(of_kind(distinct, "reminder")) == {
            ("reminder", t, "resolution", 0.5) for t in tasks}
        assert all(n == 1 for n in raw.values())

        # ---- phase 2: a crash right after the sweep committed: the 80% reminders are in the store and the
        # outbox, and never reached the broker
        pipeline = app.context.get("pipeline")
        real_publish = pipeline._publish

        async def broker_gone(outputs, dead):
            raise ConnectionError("process died before the publish")

        pipeline._publish = broker_gone
        clock.now = at(11, 4, 15)
        await asyncio.to_thread(wait_store, engine, lambda s: s.execute(
            select(func.count()).select_from(SlaTimerRow).where(
                SlaTimerRow.ticket_id.startswith(prefix), SlaTimerRow.clock == "resolution",
                func.json_array_length(SlaTimerRow.fired) == 2)).scalar() == N)
    finally:
        await app.stop()
    pipeline._publish = real_publish
    await topic.read()
    assert not of_kind(topic.counts()[0], "reminder", "resolution", 0.8)

    # ---- phase 3: restart on the same store: the outbox is published once, then the breach and the first rung
    clock.now = at(11, 4, 15)
    app = create_app(settings_for(kafka_bootstrap, unique, db_url), clock=clock)
    await app.start()
    try:
        await topic.wait_for(lambda d, r: len(of_kind(d, "reminder", "resolution", 0.8)) == N)
        clock.now = at(11, 4, 17, 31)
        await topic.wait_for(lambda d, r: len(of_kind(d, "escalation")) == N)
    finally:
        await app.stop()
    await topic.read()
    distinct, raw = topic.counts()
    assert set(of_kind(distinct, "breach")) == {("breach", t, "resolution") for t in tasks}
    assert {k[2:] for k in of_kind(distinct, "escalation")} == {("community", "community-east-1-a"),
                                                                 ("community", "community-east-2-a")}
    assert all(n == 1 for n in distinct.values()) and all(n == 1 for n in raw.values())
    assert not [k for k in distinct if k[1].startswith((paused, done))]  # paused by consultation; completed
    # The units and their supervisors receive them on their own topics, through act (the one writer of those
    # topics, which forwards what sla addresses to them: services/act/handlers.addressees); sla writes none.
    from services.act.handlers import addressees

    unit_of_task = {t: t.split(":")[1] for t in tasks}.get
    received: dict[str, Counter] = {}
    for record in topic.records:
        envelope = codec.decode(record.key, record.value, record.headers)
        for unit in addressees(envelope.data, unit_of_task):
            received.setdefault(unit, Counter())[identity_of(envelope.data)[0]] += 1
    assert received["community-east-1-a"] == {"escalation": N // 2}
    assert received[GRIDS[0]] == {"reminder": N, "escalation": N // 2}  # no breach there
    community = SlaTopic(kafka_bootstrap, prefix, load_catalogue().task_topic_of("community-east-1-a"))
    assert await community.read() == []


def _spawn(env: dict[str, str], log: Path) -> subprocess.Popen:
    code = "import asyncio; from services.sla.app import create_app; asyncio.run(create_app().run())"
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _set_clock(path: Path, moment: datetime) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(moment.isoformat(), encoding="utf-8")
    tmp.replace(path)  # atomic: the service never reads half a timestamp


async def test_kill_minus_nine_mid_sweep_and_restart_fire_every_escalation_exactly_once(kafka_bootstrap, unique, tmp_path,
                                                                                     monkeypatch):
    prefix = f"KILL{unique}"
    await ensure_topics(kafka_bootstrap, list(WORKFLOW_TOPICS) + UNIT_TOPICS)
    all_stories, _, _ = stories(prefix)
    await start_group_at_the_end(kafka_bootstrap, f"sla-{unique}", TOPICS)
    published = await publish(kafka_bootstrap, all_stories)
    db_url = f"sqlite:///{tmp_path / 'sla.db'}"
    clock_file = tmp_path / "now.txt"
    _set_clock(clock_file, at(11, 3, 9, 20))
    env = {**os.environ, "CITYOPS_SLA_KAFKA_BOOTSTRAP": kafka_bootstrap, "CITYOPS_SLA_DB_URL": db_url,
           "CITYOPS_SLA_CONSUMER_GROUP": f"sla-{unique}", "CITYOPS_SLA_CLOCK_FILE": str(clock_file),
           "CITYOPS_SLA_TICK_S": "0.25", "CITYOPS_SLA_TICK_BATCH": "2", "CITYOPS_SLA_BATCH_TIMEOUT_MS": "50",
           "CITYOPS_SLA_LOG_LEVEL": "WARNING", "CITYOPS_SLA_LOG_JSON": "true"}
    engine = make_engine(db_url)
    create_tables(engine, TABLES)  # so the test can watch the store before the service has started
    topic = SlaTopic(kafka_bootstrap, prefix)
    log = tmp_path / "sla.log"
    process = _spawn(env, log)
    try:
        await asyncio.to_thread(wait_store, engine, lambda s: s.execute(
            select(func.count()).select_from(SlaFactRow).where(SlaFactRow.ticket_id.startswith(prefix))).scalar() == published)
        # Friday evening at once: per task 2 reminders, a breach and all four rungs; 2 timers per sweep.
        _set_clock(clock_file, at(11, 7, 18))
        await asyncio.to_thread(wait_store, engine, lambda s: s.execute(
            select(func.count()).select_from(SlaTimerRow).where(
                SlaTimerRow.ticket_id.startswith(prefix), SlaTimerRow.rung == 4)).scalar() >= 2, 120, 0.01)
        os.killpg(process.pid, signal.SIGKILL)  # mid-sweep, no goodbye
        process.wait(timeout=10)
        with Session(engine) as session:
            swept_before_kill = session.execute(select(func.count()).select_from(SlaTimerRow).where(
                SlaTimerRow.ticket_id.startswith(prefix), SlaTimerRow.rung == 4)).scalar()
        assert swept_before_kill < N, "the kill came too late to land mid-sweep"
        process = _spawn(env, log)
        await topic.wait_for(lambda d, r: len(of_kind(d, "escalation")) == 4 * N, timeout=120)
        await asyncio.sleep(1.5)  # anything late would be a duplicate: give it the chance to show
        await topic.read(settle_s=1.5)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
    distinct, raw = topic.counts()
    expected_per_task = 2 + 1 + 4  # reminders at 50% and 80%, the breach, four rungs up to the city
    assert sum(distinct.values()) == len(distinct) == expected_per_task * N, log.read_text()[-3000:]
    assert Counter(k[0] for k in distinct) == {"reminder": 2 * N, "breach": N, "escalation": 4 * N}
    levels = Counter(k[2] for k in of_kind(distinct, "escalation"))
    assert levels == {"community": N, "street": N, "district": N, "city": N}
    copies = sum(raw.values()) - len(distinct)
    print(f"killed with {swept_before_kill}/{N} timers swept; {len(distinct)} distinct events, {copies} same-id copies")
    # A copy exists only if the kill fell between a sweep's publish and its outbox clean-up: at most one
    # sweep (2 timers x 7 events) re-sent, every copy with the id of the original.
    assert copies <= 2 * 7

    # ---- the store lost: rebuilt from the log alone, the service fires nothing it had already sent
    rebuilt_url = f"sqlite:///{tmp_path / 'rebuilt.db'}"
    settings = settings_for(kafka_bootstrap, unique, rebuilt_url)
    # A fetch of 50 records at a time, each applied in its own transaction, as a log too long to hold is read.
    monkeypatch.setattr(sla_rebuild, "READ_BATCH", 50)
    stretches: list[int] = []
    apply_stretch = sla_rebuild._apply
    monkeypatch.setattr(sla_rebuild, "_apply", lambda *args: stretches.append(len(args[3])) or apply_stretch(*args))
    meter = PhaseMeter()
    await rebuild_from_log(settings, make_store_engine(rebuilt_url), build_runtime(settings, load_catalogue()), meter)
    assert len(stretches) > 1 and max(stretches) <= 50
    assert list(meter.phases) == ["workflow", "fired", "timers"]
    assert meter.phases["workflow"] == [meter.totals["workflow"], sum(stretches)]  # every record read, counted
    assert meter.phases["timers"][0] == meter.phases["timers"][1] > 0
    assert _marks(make_engine(rebuilt_url), prefix) == _marks(engine, prefix)
    records_before = len(topic.records)
    app = create_app(settings, clock=FakeClock(at(11, 7, 18)))
    await app.start()
    try:
        await asyncio.sleep(2.0)  # ten sweeps
    finally:
        await app.stop()
    assert len(await topic.read()) == records_before


class PhaseMeter:
    """A progress meter that keeps each phase's [total, advanced]."""

    def __init__(self) -> None:
        self.phases: dict[str, list[int]] = {}
        self.totals: dict[str, int] = {}
        self._current = ""

    def phase(self, name, total):
        self._current, self.totals[name], self.phases[name] = name, total, [total, 0]

    def advance(self, amount):
        self.phases[self._current][1] += amount

    def close(self):
        return None


def _marks(engine, prefix: str) -> dict:
    with Session(engine) as session:
        timers = session.execute(select(SlaTimerRow).where(SlaTimerRow.ticket_id.startswith(prefix))).scalars().all()
        tasks = session.execute(select(SlaTaskRow).where(SlaTaskRow.ticket_id.startswith(prefix))).scalars().all()
        marks = {(t.task_id, t.clock): (tuple(t.fired), t.breach_deadline, t.status) for t in timers}
        return {"timers": marks, "rungs": {t.task_id: t.rung for t in tasks}}
