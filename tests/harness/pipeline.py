"""Run a service's REAL event pipeline, with its real handler and store, without Kafka.

Records in, published records and the store out:

    svc = start("act", tmp_path)
    published = svc.feed(records)        # one batch; feed(records, splits=[3, 5]) cuts it into batches
    svc.rows("act_tasks")                # the store, as plain dicts

Each service is built through its own app factory (`services/<name>/app.py` -> `build_service_app`), so
the wiring under test is the real one: topics, event types, extras, clock, engine. The factory's
startup hooks create its tables (projections and archiver run their Alembic migrations) exactly as
the app does before it connects; the Kafka broker the factory builds is never started: the pipeline
publishes to a `CapturingBroker` instead, whose `publish` returns an already-resolved future (or a
failed one, to simulate a broker that did not confirm).

This module is the ONLY place the tests know how a pipeline is put together (where the app keeps it,
how ticks are run, which attribute is the broker). When that wiring changes, fix it here. Tests pick
an event's topic with `contracts.topics.topic_for_event`, never by name, so they follow the catalogue.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from faststream.kafka import KafkaBroker
from sqlalchemy import MetaData, select
from sqlalchemy.engine import Engine

from contracts import codec
from contracts.envelope import Envelope
from contracts.topics import topic_for_event
from services.common.kafka import kafka_access

# ---------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Record:
    """What a consumer gets from Kafka (the attributes the pipeline and the archiver read)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    # ms, as Kafka's record timestamp; 0 (none, as a replay's) unless a test sets it. The pipeline interleaves a
    # batch's partitions by it (services/common/offsets.py), so records without one keep the order fed.
    timestamp: int = 0

    def header(self, name: str) -> str | None:
        return next((v.decode() for k, v in self.headers if k == name), None)

    @property
    def type(self) -> str | None:
        return self.header("ce_type")

    @property
    def id(self) -> str | None:
        return self.header("ce_id")

    @property
    def ticket_id(self) -> str | None:
        return self.header("ce_ticketid") or (self.key.decode() if self.key else None)

    def envelope(self) -> Envelope[Any]:
        return codec.decode(self.key, self.value, self.headers)

    def at(self, topic: str, offset: int) -> Record:
        """The same record as it sits in a log at this position."""
        return Record(topic, self.partition, offset, self.key, self.value, self.headers, self.timestamp)


def record_of(envelope: Envelope[Any], *, topic: str | None = None, offset: int = 0, key: str | None = None) -> Record:
    """A contract event as a Kafka record, on the topic the catalogue puts its type on (unless told), keyed by
    `key` or else its ticket id (a unit's task topic is keyed by the unit)."""
    rec = codec.encode(envelope, key)
    return Record(topic or topic_for_event(envelope.type), 0, offset, rec.key, rec.value, list(rec.headers))


class Log:
    """An append-only log of records over many topics (one partition each), offsets per topic."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self._next: dict[str, int] = defaultdict(int)

    def append(self, record: Record) -> Record:
        placed = record.at(record.topic, self._next[record.topic])
        self._next[record.topic] += 1
        self.records.append(placed)
        return placed

    def add(self, envelope: Envelope[Any], topic: str | None = None) -> Record:
        return self.append(record_of(envelope, topic=topic))

    def on(self, topics: Iterable[str]) -> list[Record]:
        wanted = set(topics)
        return [r for r in self.records if r.topic in wanted]


def without_time(record: Record) -> tuple[Any, ...]:
    """What must not depend on how records were batched: everything but the production time (`ce_time`),
    which an output takes from the clock when its handler does not copy its cause's time."""
    return (record.topic, record.key, record.value, tuple(sorted((k, v) for k, v in record.headers if k != "ce_time")))


def distinct(records: Iterable[Record]) -> list[Record]:
    """The records without re-sent copies (same topic and event id), first copies kept in place. A
    duplicate input re-sends the outputs of its first copy while they are still in the outbox, which
    depends on when the outbox was last cleared; consumers drop such copies by their id."""
    seen: set[tuple[str, str | None]] = set()
    out = []
    for r in records:
        if (r.topic, r.id) not in seen:
            seen.add((r.topic, r.id))
            out.append(r)
    return out


def by_key(records: Iterable[Record]) -> dict[tuple[str, bytes | None], list[tuple[Any, ...]]]:
    """Records per (topic, key), in order: Kafka keeps the order of one key on one topic, nothing more."""
    out: dict[tuple[str, bytes | None], list[tuple[Any, ...]]] = defaultdict(list)
    for r in records:
        out[(r.topic, r.key)].append(without_time(r))
    return dict(out)


# ---------------------------------------------------------------------------------------------- the broker


class CapturingBroker:
    """Stands in for FastStream's KafkaBroker on the publish side: keeps what would be sent.

    `fail_next` makes the next batch's publishes fail to confirm (the pipeline then raises, as it does
    when Kafka does not acknowledge, and the batch would be redelivered)."""

    def __init__(self) -> None:
        self.published: list[Record] = []
        self.fail_next = False

    async def publish(self, value: bytes, topic: str, *, key: bytes | None = None, headers: dict[str, str] | None = None,
                      **_: Any) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail_next:
            future.set_exception(ConnectionError("simulated: the broker did not confirm"))
        else:
            self.published.append(Record(topic, 0, 0, key, value, [(k, v.encode()) for k, v in (headers or {}).items()]))
            future.set_result(None)
        return future


class Clock:
    """A clock the test moves: what the service's `clock` returns."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2025, 11, 3, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


# ---------------------------------------------------------------------------------------------- one service


class ServiceHarness:
    """One service's real pipeline on its own SQLite store, fed records directly."""

    def __init__(self, name: str, directory: Path, *, pipeline: Any = None, engine: Engine, clock: Clock,
                 ticks: Sequence[Callable[..., Any]] = (), consume: Callable[[Sequence[Record]], Any] | None = None) -> None:
        self.name = name
        self.directory = directory
        self.pipeline = pipeline
        self.engine = engine
        self.clock = clock
        self.ticks = list(ticks)
        self.broker = CapturingBroker()
        self._consume = consume  # services without an EventPipeline (the archiver): how a batch is taken
        if pipeline is not None:
            pipeline.broker = self.broker

    # ------------------------------------------------------------ what it reads

    @property
    def topics(self) -> list[str]:
        return list(self.pipeline.topics) if self.pipeline is not None else []

    def wants(self, record: Record) -> bool:
        """Whether the service consumes this record's topic (it may still skip its type)."""
        return self._consume is not None or record.topic in set(self.topics)

    @property
    def source(self) -> str | None:
        """The CloudEvents source of what the service publishes (None for one that publishes nothing)."""
        return self.pipeline.source if self.pipeline is not None else None

    @property
    def stats(self) -> dict[str, int]:
        return dict(self.pipeline.stats) if self.pipeline is not None else {}

    # ------------------------------------------------------------ feeding

    def feed(self, records: Sequence[Record], *, splits: Iterable[int] = ()) -> list[Record]:
        """Hand the records over as batches (cut at the given positions; one batch without cuts) and return
        what was published. Raises what the pipeline raises (then nothing is acknowledged)."""
        return asyncio.run(self._feed(list(records), sorted(set(splits))))

    def feed_each(self, records: Sequence[Record]) -> list[Record]:
        """One batch per record."""
        return self.feed(records, splits=range(1, len(records)))

    async def _feed(self, records: list[Record], cuts: list[int]) -> list[Record]:
        before = len(self.broker.published)
        bounds = [0] + [c for c in cuts if 0 < c < len(records)] + [len(records)]
        try:
            for start, end in itertools.pairwise(bounds):
                if end > start:
                    await self._batch(records[start:end])
        finally:
            self.broker.fail_next = False
            if self.pipeline is not None:
                await self.pipeline.flush_outbox()
        return self.broker.published[before:]

    async def _batch(self, records: list[Record]) -> None:
        if self._consume is not None:
            await asyncio.to_thread(self._consume, records)
        else:
            await self.pipeline.handle_records(records)

    def tick(self) -> list[Record]:
        """Run the service's time-driven handlers once at the clock's time; return what they published."""
        return asyncio.run(self._tick())

    async def _tick(self) -> list[Record]:
        # One round of EventPipeline.run_ticks, without its loop (and without its catch-all: a failing tick fails the test).
        before = len(self.broker.published)
        for tick in self.ticks:
            await self.pipeline.tick_once(tick)
        await self.pipeline.flush_outbox()
        return self.broker.published[before:]

    # ------------------------------------------------------------ the store

    def rows(self, table: str) -> list[dict[str, Any]]:
        meta = MetaData()
        meta.reflect(self.engine, only=[table])
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(meta.tables[table]))]

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every table's rows, sorted, without what legitimately differs between runs: when a row was
        written (`processed_at`), surrogate keys counting inserts, and Alembic's version rows."""
        meta = MetaData()
        meta.reflect(self.engine)
        out = {}
        with self.engine.connect() as conn:
            for name, table in sorted(meta.tables.items()):
                if name.startswith("alembic_version"):
                    continue
                cols = [c for c in table.columns if c.name != "processed_at" and not _surrogate(c)]
                rows = conn.execute(select(*cols)).all()
                out[name] = sorted((tuple(r) for r in rows), key=repr)
        return out

    def processed(self) -> dict[str, str]:
        """Event id -> outcome (applied, dead-lettered) of every event the pipeline recorded."""
        return {r["event_id"]: r["outcome"] for r in self.rows("processed_events")}

    def parked(self) -> list[str]:
        return [r["event_id"] for r in self.rows("parked_events")]

    def close(self) -> None:
        self.engine.dispose()


def _surrogate(column: Any) -> bool:
    return column.primary_key and column.name == "id" and str(column.type).upper().startswith("INT")


# ---------------------------------------------------------------------------------------------- building


def _settings(cls: type, directory: Path, db: str, **overrides: Any) -> Any:
    # A store of a fresh SQLite file in the folder, or the `db_url` given (a PostgreSQL database of its own).
    db_url = overrides.pop("db_url", None) or f"sqlite:///{directory / db}"
    return cls(kafka_bootstrap="127.0.0.1:1", state_dir=directory, db_url=db_url, log_level="WARNING", log_json=True,
               **overrides)


def _run_startup_hooks(app: Any) -> None:
    """What the app does before it connects (tables, migrations), without the broker. The hooks configure
    logging for a service process too; the test process keeps its own logging configuration."""
    saved = structlog.get_config()

    async def run() -> None:
        for hook in app._on_startup_calling:
            await hook()
    try:
        asyncio.run(run())
    finally:
        structlog.configure(**saved)


def _from_factory(name: str, directory: Path, create_app: Callable[..., Any], settings: Any, clock: Clock,
                  ticks: Sequence[Callable[..., Any]] = (), **factory_args: Any) -> ServiceHarness:
    app = create_app(settings, broker=KafkaBroker(settings.kafka_bootstrap, security=kafka_access(settings).security, logger=None), clock=clock, **factory_args)
    _run_startup_hooks(app)
    pipeline = app.context.get("pipeline")
    return ServiceHarness(name, directory, pipeline=pipeline, engine=pipeline.engine, clock=clock, ticks=ticks)


_CLASSIFIER: list[Any] = []


def default_classifier() -> Any:
    """The catalogue-trained classifier, trained once per test session (it takes seconds)."""
    if not _CLASSIFIER:
        from domain.catalogue import load_catalogue
        from domain.classifier import default_classifier as train

        _CLASSIFIER.append(train(load_catalogue()))
    return _CLASSIFIER[0]


def _discover(directory: Path, clock: Clock, **kw: Any) -> ServiceHarness:
    from services.discover.app import create_app
    from services.discover.settings import DiscoverSettings

    return _from_factory("discover", directory, create_app, _settings(DiscoverSettings, directory, "discover.db", **kw), clock,
                         classifier=default_classifier())


def _triage(directory: Path, clock: Clock, classifier: Any = None, **kw: Any) -> ServiceHarness:
    from services.triage.app import create_app
    from services.triage.settings import TriageSettings

    return _from_factory("triage", directory, create_app, _settings(TriageSettings, directory, "triage.db", **kw), clock,
                         classifier=classifier or default_classifier())


def _consult(directory: Path, clock: Clock, **kw: Any) -> ServiceHarness:
    from services.consult.app import create_app
    from services.consult.handlers import overdue
    from services.consult.settings import ConsultSettings

    return _from_factory("consult", directory, create_app, _settings(ConsultSettings, directory, "consult.db", **kw), clock,
                         ticks=[overdue])


def _act(directory: Path, clock: Clock, **kw: Any) -> ServiceHarness:
    from services.act.app import create_app
    from services.act.settings import ActSettings

    return _from_factory("act", directory, create_app, _settings(ActSettings, directory, "act.db", **kw), clock)


def _evaluate(directory: Path, clock: Clock, **kw: Any) -> ServiceHarness:
    from services.evaluate.app import create_app
    from services.evaluate.settings import EvaluateSettings

    return _from_factory("evaluate", directory, create_app, _settings(EvaluateSettings, directory, "evaluate.db", **kw), clock)


def _sla(directory: Path, clock: Clock, **kw: Any) -> ServiceHarness:
    from services.sla.app import create_app
    from services.sla.handlers import sweep
    from services.sla.settings import SlaSettings

    return _from_factory("sla", directory, create_app, _settings(SlaSettings, directory, "sla.db", **kw), clock, ticks=[sweep])


def _units(directory: Path, clock: Clock, **kw: Any) -> ServiceHarness:
    from services.units.app import create_app
    from services.units.handlers import send_due
    from services.units.settings import UnitSettings

    return _from_factory("units", directory, create_app, _settings(UnitSettings, directory, "units.db", **kw), clock,
                         ticks=[send_due])


def _projections(directory: Path, clock: Clock, **kw: Any) -> ServiceHarness:
    from services.projections.app import create_app
    from services.projections.settings import ProjectionsSettings

    return _from_factory("projections", directory, create_app,
                         _settings(ProjectionsSettings, directory, "projections.db", **kw), clock)


def _intake_status(directory: Path, clock: Clock, **kw: Any) -> ServiceHarness:
    """Intake's status view: one of the two pipelines of intake's app (a FastAPI app, whose lifespan also
    starts the broker, so its tables are created here as that lifespan does)."""
    from services.common.store import create_tables
    from services.intake.app import create_app
    from services.intake.handlers import STATUS_TABLES
    from services.intake.settings import IntakeSettings

    settings = _settings(IntakeSettings, directory, "intake.db", **kw)
    api = create_app(settings, broker=KafkaBroker(settings.kafka_bootstrap, security=kafka_access(settings).security, logger=None), clock=clock)
    pipeline = api.state.pipelines["status"]
    create_tables(pipeline.engine, [t.__table__ for t in STATUS_TABLES])  # type: ignore[attr-defined]
    return ServiceHarness("intake-status", directory, pipeline=pipeline, engine=pipeline.engine, clock=clock)


def _intake_channel(directory: Path, clock: Clock, **kw: Any) -> ServiceHarness:
    """Intake's machine-channel consumer: the other pipeline of intake's app, with its own decoder (plain JSON
    records, no CloudEvents headers). It writes only the pipeline's bookkeeping tables."""
    from services.common.store import create_tables
    from services.intake.app import create_app
    from services.intake.settings import IntakeSettings

    settings = _settings(IntakeSettings, directory, "intake.db", **kw)
    api = create_app(settings, broker=KafkaBroker(settings.kafka_bootstrap, logger=None), clock=clock)
    pipeline = api.state.pipelines["channel"]
    create_tables(pipeline.engine, [])
    return ServiceHarness("intake-channel", directory, pipeline=pipeline, engine=pipeline.engine, clock=clock)


def _archiver(directory: Path, clock: Clock, **kw: Any) -> ServiceHarness:
    """The archiver has no EventPipeline: its subscriber hands each batch to `archive_records`."""
    from services.archiver.app import create_app
    from services.archiver.handlers import archive_records
    from services.archiver.settings import ArchiverSettings
    from services.common.store import make_engine

    settings = _settings(ArchiverSettings, directory, "archiver.db", **kw)
    engine = make_engine(settings.store_url())
    app = create_app(settings, broker=KafkaBroker(settings.kafka_bootstrap, security=kafka_access(settings).security, logger=None), engine=engine, clock=clock)
    _run_startup_hooks(app)
    return ServiceHarness("archiver", directory, engine=engine, clock=clock,
                          consume=lambda records: archive_records(engine, records, clock))


BUILDERS: dict[str, Callable[..., ServiceHarness]] = {
    "discover": _discover, "triage": _triage, "consult": _consult, "act": _act, "evaluate": _evaluate, "sla": _sla,
    "units": _units, "projections": _projections, "intake-status": _intake_status,
    "intake-channel": _intake_channel, "archiver": _archiver,
}


_SEQUENCE = itertools.count()


def start(name: str, directory: Path, *, clock: Clock | None = None, **settings: Any) -> ServiceHarness:
    """Build service `name` through its app factory, on a fresh store in a new folder under `directory`."""
    folder = Path(directory) / f"{name}-{next(_SEQUENCE)}"
    folder.mkdir(parents=True)
    return BUILDERS[name](folder, clock or Clock(), **settings)
