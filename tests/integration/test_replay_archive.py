"""The archiver keeps every record in the store; replays from the archive equal replays from Kafka.

Also: the archiver is idempotent (a rewound group re-reads, nothing is stored twice), it keeps what
the projections cannot decode, and a whole rebuild works from the archive alone, with no broker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import func, select

from contracts import events as ev
from contracts.topics import INTAKE, TICKETS, TopicSpec, own_task_topic, topic_for_event
from services.archiver.app import create_app
from services.archiver.migrate import MIGRATIONS
from services.archiver.models import ArchivedRecord
from services.archiver.settings import ArchiverSettings
from services.common.kafka import kafka_access
from services.common.store import make_engine
from services.projections.logsource import ArchiveLog, KafkaLog, partitions_of
from services.projections.rebuild import checksum, rebuild
from services.projections.replay import story_from_log
from services.projections.settings import projected_specs
from tests.integration.pg import postgres_server  # noqa: F401 - fixture
from tools.importers.publish import ImportReport, publish
from tools.importers.synthetic import SyntheticHistory

pytestmark = [pytest.mark.kafka]


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(condition):
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def archived(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(ArchivedRecord)).scalar_one()


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_replays_from_the_archive_equal_replays_from_kafka(kafka_bootstrap, postgres_server, tmp_path, store):  # noqa: F811
    prefix = f"arch{uuid.uuid4().hex[:8]}."
    history = SyntheticHistory(300, seed=42).envelopes()
    # The whole log, intake's topic included: the archiver keeps it, the projections do not read it (issue 11).
    specs = [dataclasses.replace(s, name=prefix + s.name) for s in (INTAKE, *projected_specs())]
    await publish(kafka_bootstrap, specs, history, ImportReport("synthetic", "workflow"),
                  topic_for=lambda e: prefix + topic_for_event(e.type))
    projected = [e for e in history if e.type != ev.TicketSubmitted.event_type]
    # Records the projections skip or cannot read are history too: a unit topic copy, a poison record.
    extra_topic = prefix + own_task_topic("water")
    producer = AIOKafkaProducer(**kafka_access(kafka_bootstrap).options, acks="all")
    await producer.start()
    try:
        from services.common.kafka import ensure_topics

        await ensure_topics(kafka_bootstrap, [TopicSpec(extra_topic, "unit topic", (), partitions=1)])
        await producer.send_and_wait(extra_topic, b'{"copy": true}', key=b"T-1", headers=[("x", b"\x00\xff")])
        await producer.send_and_wait(prefix + TICKETS.name, b"{truncated", key=b"T-POISON",
                                     headers=[("ce_type", ev.TicketRegistered.event_type.encode()), ("ce_id", b"p"),
                                              ("ce_source", b"/x"), ("ce_specversion", b"1.0")])
    finally:
        await producer.stop()
    total = len(history) + 2

    url = f"sqlite:///{tmp_path / 'archive.db'}" if store == "sqlite" else postgres_server.new_database("archive")
    engine = make_engine(url)
    settings = ArchiverSettings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix, consumer_group=f"arch-{prefix}",
                                batch_timeout_ms=50, metadata_max_age_ms=2000)
    async with create_app(settings, engine=engine) as app:
        stats = app.context.get("archiver_stats")
        await wait_until(lambda: archived(engine) == total, 300, f"the archive to hold every record ({stats})")
        assert app.context.get("archiver_stats")["stored"] == total
    assert MIGRATIONS.current_revision(engine) == "a0001"

    # A rewound group reads everything again; the archive stores nothing twice.
    await _rewind_to_zero(kafka_bootstrap, settings.group_id, [s.name for s in specs] + [extra_topic])
    async with create_app(settings, engine=engine) as app:
        stats = app.context.get("archiver_stats")
        await wait_until(lambda: stats["records"] >= total, 300, "the rewound records")
        assert stats["stored"] == 0
    assert archived(engine) == total
    with engine.connect() as conn:
        row = conn.execute(select(ArchivedRecord).where(ArchivedRecord.topic == extra_topic)).one()
    assert row.value == b'{"copy": true}' and row.ticket_id == "T-1"

    # The broker is gone for what follows: only the archive is read.
    topics = [prefix + s.name for s in projected_specs()]
    from_archive = make_engine(f"sqlite:///{tmp_path / 'from-archive.db'}")
    report = await rebuild(from_archive, ArchiveLog(engine, topics))
    assert report.records_read == len(projected) + 1 and report.undecodable == 1
    from_kafka = make_engine(f"sqlite:///{tmp_path / 'from-kafka.db'}")
    await rebuild(from_kafka, KafkaLog(kafka_bootstrap, topics))
    assert checksum(from_archive) == checksum(from_kafka)

    reopened = next(e.ticket_id for e in history if isinstance(e.data, ev.TicketReopened))
    story_a = await story_from_log(ArchiveLog(engine, topics), reopened)
    story_k = await story_from_log(KafkaLog(kafka_bootstrap, topics), reopened)
    assert story_a.entries == story_k.entries and len(story_a.entries) > 10
    engine.dispose()


async def _rewind_to_zero(bootstrap: str, group: str, topics: list[str]) -> None:
    partitions = [TopicPartition(t, p) for t, ps in (await partitions_of(bootstrap, topics)).items() for p in ps]
    consumer = AIOKafkaConsumer(**kafka_access(bootstrap).options, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.commit({tp: 0 for tp in partitions})
    finally:
        await consumer.stop()
