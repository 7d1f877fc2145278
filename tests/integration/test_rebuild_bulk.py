"""The bulk rebuild (executemany on SQLite, COPY on PostgreSQL, secondary indexes built after the load)
equals the live projection, on both databases, without a broker: the log is held in memory so that a
duplicated and an undecodable record, and an interruption, can be placed where they hurt."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from sqlalchemy import inspect
from sqlmodel import Session

from services.common.store import make_engine
from services.projections.migrate import upgrade
from services.projections.models import VIEW_TABLES
from services.projections.rebuild import DEFERRED_INDEXES, RebuildInterrupted, checksum, rebuild
from services.projections.store import apply
from tests.integration.pg import postgres_server  # noqa: F401 - fixture
from tests.unit.test_projection_store import HISTORY, ListLog, StopAfter

pytestmark = [pytest.mark.postgres]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The live projection of HISTORY: one transaction per batch, a savepoint per event."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('live') / 'live.db'}")
    upgrade(engine)
    for start in range(0, len(HISTORY), 300):
        with Session(engine) as session, session.begin():
            for envelope in HISTORY[start:start + 300]:
                with session.begin_nested():
                    apply(session, envelope)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'rebuilt.db'}")
    else:
        engine = make_engine(request.getfixturevalue("postgres_server").new_database("rebuild"))
    yield engine
    engine.dispose()


def _index_names(engine) -> set[str]:
    inspector = inspect(engine)
    return {str(i["name"]) for table in VIEW_TABLES for i in inspector.get_indexes(table.name)}


def test_a_bulk_rebuild_skips_a_duplicated_record_and_equals_live(live, target):
    log = ListLog(HISTORY)
    tp = next(iter(log.parts))
    part = log.parts[tp]
    part.insert(len(part) // 2, part[3])  # a producer's retry: the same event twice, mid-batch
    part[:] = [dataclasses.replace(r, offset=i) for i, r in enumerate(part)]
    report = asyncio.run(rebuild(target, log, batch=1000))
    assert report.records_read == len(HISTORY) + 1 and report.events_loaded == len(HISTORY)
    assert checksum(target) == checksum(live)
    assert {str(i.name) for i in DEFERRED_INDEXES} <= _index_names(target) == _index_names(live)


def test_an_interrupted_bulk_rebuild_resumes_and_equals_live(live, target):
    log = ListLog(HISTORY)
    with pytest.raises(RebuildInterrupted):
        asyncio.run(rebuild(target, log, batch=300, meter=StopAfter(4)))
    assert not {str(i.name) for i in DEFERRED_INDEXES} & _index_names(target)  # dropped for the load
    with pytest.raises(RebuildInterrupted):
        asyncio.run(rebuild(target, log, batch=300, fold_batch=20, meter=StopAfter(3, phase="fold")))
    report = asyncio.run(rebuild(target, log, batch=300))
    assert report.resumed and report.fold_failures == 0
    assert checksum(target) == checksum(live)
    assert _index_names(target) == _index_names(live)
