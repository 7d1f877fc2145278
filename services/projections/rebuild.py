"""Rebuild every projection from offset zero into a fresh database, and prove it equals the live one.

A rebuild runs the live path's own functions (`store.store_facts` then `store.refold`), in two
phases so that each ticket is folded once rather than once per batch:

1. load: read each partition from its stored position to the end seen at the start, and add the
   events to the timelines; the positions reached are stored in the same transaction, so an
   interrupted rebuild (Ctrl-C, a crash) resumes where it stopped and loads nothing twice;
2. fold: fold every ticket loaded but not yet folded; the pending list shrinks in the same
   transaction as the rows are written, so this phase resumes too.

`checksum` hashes the view tables' rows (order-independent, so the database's collation does not
matter) in a canonical text form that SQLite and PostgreSQL produce alike: a rebuild on one may be
compared with the live store on the other.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlmodel import col

from services.common.batch_state import table_of
from services.common.collector import BulkCollector, bulk_collection
from services.common.logs import get_logger
from services.common.progress import Meter, NullMeter
from services.common.store import upsert_rows as upsert

from .domain import PROJECTED_TYPES, Fact, as_utc
from .logsource import LogRecord, LogSource, Position, decode_wanted
from .migrate import upgrade
from .models import VIEW_TABLES, ProjMeta, ProjRebuildPending, ProjRebuildPosition, ProjTimelineEntry
from .store import FACTS, bulk_insert_ignore, refold, store_facts

log = get_logger(__name__)

_WANTED = frozenset(t.encode() for t in PROJECTED_TYPES)
_FACTS_KEPT = 100_000  # facts remembered while rebuilding (about 150 MB when full)
# Columns that record how or when a row was processed rather than what the log says; none of the
# view tables has one today, the list is where one would go.
EXCLUDED_FROM_CHECKSUM: dict[str, frozenset[str]] = {}
# The fold reads and replaces rows by ticket through these; every other index of the view tables is
# dropped for the load and built once at the end, which is cheaper than keeping it up to date per row.
_KEPT_INDEXES = frozenset({"ix_proj_timeline_ticket_id", "ix_proj_tasks_ticket_id"})
DEFERRED_INDEXES = tuple(index for table in VIEW_TABLES for index in sorted(table.indexes, key=lambda i: str(i.name))
                         if index.name not in _KEPT_INDEXES)


class NotARebuildStore(RuntimeError):
    """The target database holds projections that did not come from a rebuild (e.g. the live store)."""


class NotAProjectionStore(LookupError):
    """The database holds no projection tables."""


class RebuildInterrupted(RuntimeError):
    """Stopped part-way; running the same rebuild again resumes from the stored positions."""

    def __init__(self, report: RebuildReport) -> None:
        super().__init__(f"rebuild interrupted after {report.records_read} records; run it again to resume")
        self.report = report


@dataclass
class RebuildReport:
    source: str
    records_read: int = 0
    events_loaded: int = 0
    undecodable: int = 0
    tickets_folded: int = 0
    fold_failures: int = 0
    load_seconds: float = 0.0
    fold_seconds: float = 0.0
    index_seconds: float = 0.0
    resumed: bool = False
    interrupted: bool = False

    @property
    def seconds(self) -> float:
        return self.load_seconds + self.fold_seconds + self.index_seconds

    @property
    def events_per_second(self) -> float:
        return self.records_read / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3), "events_per_second": round(self.events_per_second, 1)}


# ---------------------------------------------------------------------------------------------- rebuild

@dataclass
class _Rebuild:
    engine: Engine
    source: LogSource
    batch: int
    fold_batch: int
    meter: Meter
    report: RebuildReport = field(init=False)
    _fold_cursor: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.report = RebuildReport(self.source.description)

    async def run(self) -> RebuildReport:
        await asyncio.to_thread(self._prepare)
        # The fold phase reads every event back; the facts the load phase remembered spare it parsing
        # them, if they are still there. Keeping them is what the collector would re-scan (common/collector.py).
        with FACTS.at_least(_FACTS_KEPT), bulk_collection() as collector:
            await self._load_and_fold(collector)
        return self.report

    async def _load_and_fold(self, collector: BulkCollector) -> None:
        started = time.perf_counter()
        await self._load(collector)
        self.report.load_seconds = time.perf_counter() - started
        started = time.perf_counter()
        await asyncio.to_thread(self._set_meta, "state", "folding")
        await self._fold(collector)
        self.report.fold_seconds = time.perf_counter() - started
        self.report.fold_failures = await asyncio.to_thread(self._pending_count)
        started = time.perf_counter()
        await asyncio.to_thread(self._build_indexes)
        self.report.index_seconds = time.perf_counter() - started
        await asyncio.to_thread(self._set_meta, "state", "done")

    # -- preparing -------------------------------------------------------------------------

    def _prepare(self) -> None:
        upgrade(self.engine)
        with Session(self.engine) as session, session.begin():
            meta = {m.key: m.value for m in session.execute(select(ProjMeta)).scalars()}
            has_rows = session.execute(select(col(ProjTimelineEntry.event_id)).limit(1)).first() is not None
            if has_rows and meta.get("kind") != "rebuild":
                raise NotARebuildStore(f"{self.engine.url.render_as_string(hide_password=True)} holds projections "
                                       "that are not a rebuild; rebuild into a fresh database")
            self.report.resumed = meta.get("kind") == "rebuild"
            upsert(session, table_of(ProjMeta), [{"key": "kind", "value": "rebuild"},
                                                 {"key": "source", "value": self.source.description},
                                                 {"key": "state", "value": "loading"}], ["key"])
            for index in DEFERRED_INDEXES:
                index.drop(session.connection(), checkfirst=True)

    def _build_indexes(self) -> None:
        with Session(self.engine) as session, session.begin():
            for index in DEFERRED_INDEXES:
                index.create(session.connection(), checkfirst=True)

    def _set_meta(self, key: str, value: str) -> None:
        with Session(self.engine) as session, session.begin():
            upsert(session, table_of(ProjMeta), [{"key": key, "value": value}], ["key"])

    def _stored_positions(self) -> dict[Position, int]:
        with Session(self.engine) as session:
            return {(p.topic, p.partition): p.next_offset for p in session.execute(select(ProjRebuildPosition)).scalars()}

    # -- phase 1: load ---------------------------------------------------------------------

    async def _load(self, collector: BulkCollector) -> None:
        first, end = await self.source.bounds()
        stored = await asyncio.to_thread(self._stored_positions)
        start = {tp: max(stored.get(tp, first.get(tp, 0)), first.get(tp, 0)) for tp in end}
        self.meter.phase("load", sum(max(end[tp] - start[tp], 0) for tp in end))
        async for records, positions in self.source.batches(start, end, self.batch):
            loaded, undecodable = await asyncio.to_thread(self._load_batch, records, positions)
            self.report.records_read += len(records)
            self.report.events_loaded += loaded
            self.report.undecodable += undecodable
            self.meter.advance(sum(positions[tp] - start[tp] for tp in positions))
            start.update(positions)
            collector.unit_done()

    def _load_batch(self, records: Sequence[LogRecord], positions: dict[Position, int]) -> tuple[int, int]:
        decoded, undecodable = decode_wanted(records, _WANTED)
        facts = [Fact.from_envelope(e) for _, e in decoded]
        with Session(self.engine) as session, session.begin():
            loaded = store_facts(session, facts)
            pending = [{"ticket_id": t} for t in sorted({f.ticket_id for f in facts})]
            bulk_insert_ignore(session, table_of(ProjRebuildPending), pending)
            upsert(session, table_of(ProjRebuildPosition),
                   [{"topic": t, "partition": p, "next_offset": o} for (t, p), o in sorted(positions.items())],
                   ["topic", "partition"])
        return loaded, undecodable

    # -- phase 2: fold ---------------------------------------------------------------------

    async def _fold(self, collector: BulkCollector) -> None:
        self.meter.phase("fold", await asyncio.to_thread(self._pending_count))
        while True:
            folded = await asyncio.to_thread(self._fold_some)
            if not folded:
                return
            self.report.tickets_folded += folded
            self.meter.advance(folded)
            collector.unit_done()

    def _pending_count(self) -> int:
        with Session(self.engine) as session:
            return session.execute(select(func.count()).select_from(ProjRebuildPending)).scalar_one()

    def _fold_some(self) -> int:
        # A ticket whose fold fails goes back on the pending list (see store.refold); the cursor
        # moves past it so that the phase ends, and the report counts what is left.
        with Session(self.engine) as session, session.begin():
            ids = list(session.execute(select(col(ProjRebuildPending.ticket_id))
                                       .where(col(ProjRebuildPending.ticket_id) > self._fold_cursor)
                                       .order_by(col(ProjRebuildPending.ticket_id)).limit(self.fold_batch)).scalars())
            if ids:
                session.execute(delete(ProjRebuildPending).where(col(ProjRebuildPending.ticket_id).in_(ids)))
                # Each ticket is folded once here. Remembering the facts parsed for it would evict, once the log
                # holds more events than FACTS keeps, the facts the load phase kept for the tickets still to come.
                refold(session, ids, once=True)
                self._fold_cursor = ids[-1]
            return len(ids)


async def rebuild(engine: Engine, source: LogSource, *, batch: int = 5000, fold_batch: int = 500,
                  meter: Meter | None = None) -> RebuildReport:
    """Rebuild (or resume rebuilding) the projections in `engine` from `source`."""
    job = _Rebuild(engine, source, batch, fold_batch, meter or NullMeter())
    try:
        report = await job.run()
    except (KeyboardInterrupt, asyncio.CancelledError):
        job.report.interrupted = True
        raise RebuildInterrupted(job.report) from None
    finally:
        await source.close()
    log.info("rebuild_finished", **report.as_dict())
    return report


# ---------------------------------------------------------------------------------------------- checksum

@dataclass(frozen=True)
class Checksum:
    tables: dict[str, tuple[int, str]]  # table -> (rows, digest)
    digest: str

    def as_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "tables": {k: {"rows": n, "digest": d} for k, (n, d) in self.tables.items()}}


def _canonical(value: Any) -> str:
    if value is None:
        return "\x00"
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    return str(value)


def checksum(engine: Engine) -> Checksum:
    """A digest of the view tables' contents: equal digests mean equal rows, on any supported database."""
    tables: dict[str, tuple[int, str]] = {}
    missing = [t.name for t in VIEW_TABLES if not inspect(engine).has_table(t.name)]
    if missing:
        raise NotAProjectionStore(f"{engine.url.render_as_string(hide_password=True)} has no {', '.join(missing)}: "
                                  "not a projection store")
    with engine.connect() as conn:
        for table in VIEW_TABLES:
            excluded = EXCLUDED_FROM_CHECKSUM.get(table.name, frozenset())
            columns = [c for c in table.columns if c.name not in excluded]
            total, rows = 0, 0
            # A sum of row hashes is independent of row order, hence of each database's collation.
            for row in conn.execute(select(*columns)).yield_per(5000):
                line = "\x1f".join(_canonical(v) for v in row).encode()
                total = (total + int.from_bytes(hashlib.sha256(line).digest(), "big")) % (1 << 256)
                rows += 1
            tables[table.name] = (rows, f"{total:064x}")
    overall = hashlib.sha256("".join(f"{k}:{n}:{d};" for k, (n, d) in sorted(tables.items())).encode()).hexdigest()
    return Checksum(tables, overall)
