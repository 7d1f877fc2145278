"""The policy finds the person on a real broker: `cityops residents import` publishes a small CSV (its bad rows
reported, the rest published), discover stores the base records, a scan for a fixed day registers one ticket per
entitlement, triage routes each to the resident's grid; the same scan again registers nothing new."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from contracts import events as ev
from contracts.codec import DecodeError, decode
from contracts.envelope import Envelope
from contracts.topics import REGISTRY, RESIDENTS_BASE, TICKETS, TRIAGE, WORKFLOW_TOPICS
from domain.residents.records import RESIDENT_COLUMNS
from services.common.kafka import ensure_topics, kafka_access
from services.common.settings import KafkaClientSettings
from services.discover.app import create_app as discover_app
from services.discover.handlers import TOPICS as DISCOVER_TOPICS
from services.discover.settings import DiscoverSettings
from services.triage.app import create_app as triage_app
from services.triage.handlers import TOPICS as TRIAGE_TOPICS
from services.triage.settings import TriageSettings
from tests.harness.pipeline import default_classifier
from tests.harness.topics import start_group_at_the_end
from tools.importers.publish import ImportReport, publish
from tools.residents_cli import import_file

pytestmark = pytest.mark.kafka
DAY = date(2026, 12, 20)


def residents_csv(path: Path, u: str) -> Path:
    rows = [f"{u}-1,张三,1947-01-10,F,HH1,H1,桂花社区1号楼,grid-east-1-a-1,,,,,,,0,,",  # 80 on 2027-01-10
            f"{u}-2,李四,1980-05-05,M,HH2,H2,湖光社区3号楼,grid-east-2-a-1,physical,1,,,,,0,,",  # care subsidy
            f"{u}-3,王五,1990-05-05,M,HH3,H3,湖光社区3号楼,grid-east-2-a-1,,,,,,,0,,",  # nothing
            f"{u}-4,赵六,1990-13-05,M,HH3,H3,x,grid-east-2-a-1,,,,,,,0,,"]  # bad birth date: line 5
    path.write_text(",".join(RESIDENT_COLUMNS) + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


async def read(bootstrap: str, topic: str, prefix_of: object, settle_s: float = 2.0) -> list[Envelope[ev.Event]]:
    """Every envelope on `topic` whose resident (caller pseudonym) starts with the test's prefix."""
    consumer = AIOKafkaConsumer(topic, **kafka_access(bootstrap).options, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out, loop = [], asyncio.get_running_loop()
    quiet = loop.time()
    try:
        while loop.time() - quiet < settle_s:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                quiet = loop.time()
                for r in records:
                    try:
                        env = decode(r.key, r.value, r.headers)
                    except DecodeError:  # another test's deliberately malformed record on the shared broker
                        continue
                    ticket = getattr(env.data, "ticket", None)
                    if ticket is not None and (ticket.caller.pseudonym or "").startswith(str(prefix_of)):
                        out.append(env)
    finally:
        await consumer.stop()
    return out


async def scan(bootstrap: str, day: date, n: int) -> str:
    envelope = Envelope.origin(ev.ProactiveScanRequested(day=day), source=REGISTRY, ticket_id=f"scan-{day}-{n}")
    await publish(bootstrap, [RESIDENTS_BASE], [envelope], ImportReport(source="scan", topic=RESIDENTS_BASE.name),
                  keep_record_time=False)
    return envelope.id


async def until(check, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await check():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.5)


async def test_import_scan_route_and_rescan(kafka_bootstrap, unique, tmp_path) -> None:
    await ensure_topics(kafka_bootstrap, list(WORKFLOW_TOPICS))
    await start_group_at_the_end(kafka_bootstrap, f"discover-{unique}", DISCOVER_TOPICS)
    await start_group_at_the_end(kafka_bootstrap, f"triage-{unique}", TRIAGE_TOPICS)
    report = await asyncio.to_thread(import_file, residents_csv(tmp_path / "residents.csv", unique),
                                     KafkaClientSettings(kafka_bootstrap=kafka_bootstrap), today=DAY)
    assert (report["published"], report["bad_rows"]) == (3, 1) and report["errors"][0].startswith("line 5: birth_date")

    common = {"kafka_bootstrap": kafka_bootstrap, "batch_timeout_ms": 50, "log_level": "WARNING", "state_dir": tmp_path}
    discover = discover_app(DiscoverSettings(consumer_group=f"discover-{unique}", db_url=f"sqlite:///{tmp_path / 'd.db'}",
                                             **common), classifier=default_classifier())
    triage = triage_app(TriageSettings(consumer_group=f"triage-{unique}", db_url=f"sqlite:///{tmp_path / 't.db'}", **common),
                        classifier=default_classifier())
    await discover.start()
    await triage.start()
    try:
        await scan(kafka_bootstrap, DAY, 1)

        async def routed() -> bool:
            return len(await read(kafka_bootstrap, TRIAGE.name, unique, 0.5)) >= 2
        await until(routed)
        registered = await read(kafka_bootstrap, TICKETS.name, unique)
        assert sorted((e.data.ticket.caller.pseudonym, e.data.ticket.proactive_rule) for e in registered) == [
            (f"{unique}-1", "old-age-allowance-80"), (f"{unique}-2", "disability-care-subsidy")]
        classified = {e.data.ticket.caller.pseudonym: e.data.routing for e in await read(kafka_bootstrap, TRIAGE.name, unique)
                      if isinstance(e.data, ev.TicketClassified)}
        assert {k: (r.lead, r.level) for k, r in classified.items()} == {
            f"{unique}-1": ("grid-east-1-a-1", "grid"), f"{unique}-2": ("grid-east-2-a-1", "grid")}

        second = await scan(kafka_bootstrap, DAY, 2)  # the same scan again

        async def applied() -> bool:
            return _applied(discover, second)
        await until(applied)
        assert len(await read(kafka_bootstrap, TICKETS.name, unique)) == 2
    finally:
        await triage.stop()
        await discover.stop()


def _applied(app, event_id: str) -> bool:
    from sqlalchemy import text

    with app.context.get("pipeline").engine.connect() as conn:
        return bool(conn.execute(text("select count(*) from processed_events where event_id = :i"), {"i": event_id}).scalar())
