"""Phase 7: every projection rebuilt from the log into a fresh SQLite database (and, with `--rebuild-pg`, a fresh
PostgreSQL database), against a bare read of the same log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.common.batch_state import table_of
from tools.bench.config import BenchConfig, log
from tools.bench.hub import BenchHub
from tools.bench.kafka_io import assigned_consumer


async def dump_log(bootstrap: str, topics: Sequence[str], path: Path) -> int:
    """Every record of the given topics as JSON lines (key, value and header values base64)."""
    import base64

    consumer = await assigned_consumer(bootstrap, topics, from_end=False)
    b64 = lambda b: base64.b64encode(b or b"").decode()  # noqa: E731
    try:
        want = sum((await consumer.end_offsets(list(consumer.assignment()))).values())
        count = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as f:
            while count < want:
                batch = await consumer.getmany(timeout_ms=1000)
                if not batch:
                    break
                for records in batch.values():
                    for r in records:
                        f.write(json.dumps({"topic": r.topic, "partition": r.partition, "offset": r.offset, "ts": r.timestamp,
                                            "key": b64(r.key), "value": b64(r.value),
                                            "headers": [[k, b64(v)] for k, v in r.headers]}) + "\n")
                    count += len(records)
    finally:
        await consumer.stop()
    return count


async def raw_log_read(bootstrap: str, topics: Sequence[str]) -> dict[str, Any]:
    """A bare consumer reading the same log a rebuild reads: the replay's own ceiling."""
    consumer = await assigned_consumer(bootstrap, topics, from_end=False)
    try:
        tps = list(consumer.assignment())
        want = sum((await consumer.end_offsets(tps)).values())
        count = 0
        started = time.perf_counter()
        while count < want:
            batch = await consumer.getmany(timeout_ms=1000)
            if not batch and time.perf_counter() - started > 120:
                break
            count += sum(len(v) for v in batch.values())
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
    return {"records": count, "seconds": round(elapsed, 3), "per_s": round(count / elapsed, 1) if elapsed else None}


async def replay_phase(hub: BenchHub, cfg: BenchConfig) -> dict[str, Any]:
    """Every projection rebuilt from the log into a fresh SQLite database and, with `--rebuild-pg`, into a fresh
    PostgreSQL database as well; both against one bare read of the same log."""
    target = cfg.state_dir / "replay"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    try:
        from services.projections.settings import ProjectionsSettings
    except ImportError as exc:
        return await fallback_replay(hub, target, f"services.projections.rebuild not importable ({exc})")
    settings = ProjectionsSettings(kafka_bootstrap=hub.bootstrap, state_dir=target)
    topics = settings.projected_topics()
    ceiling = await raw_log_read(hub.bootstrap, topics)
    db = target / "projections-rebuild.db"
    try:
        sqlite = await rebuild_from_log(hub.bootstrap, topics, settings, f"sqlite:///{db}", ceiling["records"])
    except Exception as exc:  # the projections service is new: fall back rather than lose the run
        log(f"  projections rebuild failed ({exc!r}); replaying through the shared pipeline instead")
        return await fallback_replay(hub, target, f"services.projections.rebuild failed: {exc!r}")
    result = {"mode": "services.projections.rebuild (every projection, fresh SQLite)", "topics": topics,
              "events_per_s": sqlite["report"].get("events_per_second"), **sqlite, "raw_read_same_log": ceiling}
    if cfg.rebuild_pg:
        sqlite_digest = await store_checksum(f"sqlite:///{db}")
        result["postgresql"] = await postgres_rebuild(hub.bootstrap, topics, settings, cfg.rebuild_pg,
                                                      ceiling["records"], sqlite_digest)
    return result


async def rebuild_from_log(bootstrap: str, topics: Sequence[str], settings: Any, url: str, expected: int) -> dict[str, Any]:
    """`services.projections.rebuild` of the whole log into the (fresh) store at `url`: its report and attempts."""
    from services.common.store import make_engine
    from services.projections.logsource import KafkaLog
    from services.projections.rebuild import rebuild

    attempts = 0
    while True:
        attempts += 1
        engine = make_engine(url)
        source = KafkaLog(bootstrap, topics)
        try:
            report = await rebuild(engine, source, batch=settings.rebuild_batch, fold_batch=settings.fold_batch)
        finally:
            with contextlib.suppress(Exception):
                await source.close()
            engine.dispose()
        # KafkaLog lists partitions from the consumer's cluster metadata right after start; on a busy
        # machine that metadata can still be empty and the rebuild reads nothing: try again (a rebuild resumes).
        if report.records_read or not expected or attempts >= 3:
            return {"report": report.as_dict(), "attempts": attempts}
        log(f"  rebuild read 0 of {expected} records (attempt {attempts}); trying again")


async def postgres_rebuild(bootstrap: str, topics: Sequence[str], settings: Any, admin_url: str, expected: int,
                           sqlite_digest: str) -> dict[str, Any]:
    """The same rebuild into a database created for it through `admin_url` (dropped afterwards, failures included),
    and whether it holds what the SQLite rebuild holds (the projections' checksum)."""
    from tools.postgres import create_database, drop_database, server_version

    url = await asyncio.to_thread(create_database, admin_url, "cityops_bench_rebuild")
    try:
        rebuilt = await rebuild_from_log(bootstrap, topics, settings, url, expected)
        digest = await store_checksum(url)
    finally:
        await asyncio.to_thread(drop_database, admin_url, url)
    return {"mode": "services.projections.rebuild (every projection, fresh PostgreSQL database)",
            "events_per_s": rebuilt["report"].get("events_per_second"), **rebuilt,
            "server_version": await asyncio.to_thread(server_version, admin_url),
            "checksum": digest, "same_checksum_as_sqlite": digest == sqlite_digest}


async def store_checksum(url: str) -> str:
    """The projections' checksum (services.projections.rebuild `checksum`) of the store at `url`."""
    from services.common.store import make_engine
    from services.projections.rebuild import checksum

    engine = make_engine(url)
    try:
        return (await asyncio.to_thread(checksum, engine)).digest
    finally:
        engine.dispose()


async def fallback_replay(hub: BenchHub, target: Path, why: str) -> dict[str, Any]:
    """The whole log through a projection-like consumer on the shared pipeline, into a fresh SQLite DB."""
    from sqlmodel import Field as SqlField
    from sqlmodel import Session, SQLModel, select

    from contracts.envelope import Envelope
    from contracts.topics import WORKFLOW_TOPICS
    from services.common.handler import Emit, HandlerContext, HandlerSpec, NoDeps
    from services.common.pipeline import EventPipeline
    from services.common.settings import ServiceSettings
    from services.common.store import create_tables, make_engine

    class BenchTicketView(SQLModel, table=True):
        __tablename__ = "bench_ticket_view"
        __table_args__ = {"extend_existing": True}
        ticket_id: str = SqlField(primary_key=True)
        last_type: str
        events: int = 0

    def handle(ctx: HandlerContext[NoDeps], envelope: Envelope[Any]) -> list[Emit]:
        row = ctx.session.get(BenchTicketView, envelope.ticket_id) or BenchTicketView(ticket_id=envelope.ticket_id, last_type="")
        row.last_type, row.events = envelope.type, row.events + 1
        ctx.session.add(row)
        return []

    topics = [s.name for s in WORKFLOW_TOPICS if s.events]
    types = [t for s in WORKFLOW_TOPICS for t in s.event_types]
    ceiling = await raw_log_read(hub.bootstrap, topics)
    engine = make_engine(f"sqlite:///{target / 'replay-fallback.db'}")
    await asyncio.to_thread(create_tables, engine, [table_of(BenchTicketView)])
    settings = ServiceSettings(kafka_bootstrap=hub.bootstrap, state_dir=target)
    pipeline = EventPipeline(name="bench-replay", settings=settings, engine=engine,
                             spec=HandlerSpec(topics=topics, event_types=types, deps=NoDeps(), handle=handle))
    pipeline.broker = object()  # type: ignore[assignment]  # nothing is published: _publish only checks it is set
    consumer = await assigned_consumer(hub.bootstrap, topics, from_end=False)
    try:
        want = sum((await consumer.end_offsets(list(consumer.assignment()))).values())
        count = 0
        started = time.perf_counter()
        while count < want:
            batch = await consumer.getmany(timeout_ms=1000, max_records=settings.batch_max_records)
            records = [r for v in batch.values() for r in v]
            if not records and time.perf_counter() - started > 120:
                break
            await pipeline.handle_records(records)
            count += len(records)
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
        engine.dispose()
    with Session(make_engine(f"sqlite:///{target / 'replay-fallback.db'}")) as session:
        rows = len(session.exec(select(BenchTicketView)).all())
    return {"mode": "fallback: whole log through the shared pipeline into a fresh SQLite ticket view", "why": why,
            "topics": topics, "events_per_s": round(count / elapsed, 1) if elapsed else None, "records": count,
            "seconds": round(elapsed, 3), "tickets": rows, "raw_read_same_log": ceiling}
