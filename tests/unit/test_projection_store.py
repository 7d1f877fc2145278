"""The projection store on SQLite: exactly-once apply, refolds, migrations, rebuild (resumable) and checksum.

The same functions run against a real broker and PostgreSQL in tests/integration/test_projection_live.py;
here the log is an in-memory fake so that ordering, interruption and failure can be forced.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select
from sqlmodel import Session, SQLModel

from contracts import codec
from services.common.store import make_engine
from services.projections import queries
from services.projections import store as store_module
from services.projections.domain import Fact
from services.projections.logsource import LogRecord, Position
from services.projections.migrate import MIGRATIONS, upgrade
from services.projections.models import PROJECTION_TABLE_NAMES, ProjRebuildPending, ProjTicket, ProjTimelineEntry
from services.projections.rebuild import NotARebuildStore, RebuildInterrupted, checksum, rebuild
from services.projections.store import apply, refold, store_facts
from tools.importers.synthetic import SyntheticHistory

HISTORY = SyntheticHistory(200, seed=11).envelopes()


@pytest.fixture
def engine(tmp_path):
    e = make_engine(f"sqlite:///{tmp_path / 'proj.db'}")
    upgrade(e)
    yield e
    e.dispose()


def _engine(tmp_path, name):
    e = make_engine(f"sqlite:///{tmp_path / name}")
    upgrade(e)
    return e


def _apply_in_batches(engine, envelopes, batch=300):
    """What the pipeline does: one transaction per batch, a savepoint per event."""
    applied = 0
    for start in range(0, len(envelopes), batch):
        with Session(engine) as session, session.begin():
            for envelope in envelopes[start:start + batch]:
                with session.begin_nested():
                    applied += apply(session, envelope)
    return applied


def test_migrations_reach_head_and_match_the_models(engine):
    assert MIGRATIONS.current_revision(engine) == MIGRATIONS.head_revision() == "0005"
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": MIGRATIONS.include_name, "include_object": MIGRATIONS.include_object,
                                                         "compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []
    assert PROJECTION_TABLE_NAMES <= set(inspect(engine).get_table_names())


def test_upgrading_twice_changes_nothing(engine):
    upgrade(engine)
    assert MIGRATIONS.current_revision(engine) == "0005"


def test_live_apply_in_any_order_equals_one_batch_fold(tmp_path, engine):
    shuffled = HISTORY[:]
    random.Random(3).shuffle(shuffled)
    assert _apply_in_batches(engine, shuffled) == len(HISTORY)
    other = _engine(tmp_path, "batch.db")
    with Session(other) as session, session.begin():
        store_facts(session, [Fact.from_envelope(e) for e in HISTORY])
        refold(session, {e.ticket_id for e in HISTORY})
    assert checksum(engine) == checksum(other)
    with Session(engine) as session:
        assert session.execute(select(func.count()).select_from(ProjTicket)).scalar_one() == len({e.ticket_id for e in HISTORY})


def test_a_redelivered_slice_changes_nothing(engine):
    _apply_in_batches(engine, HISTORY)
    before = checksum(engine)
    assert _apply_in_batches(engine, HISTORY[500:1500]) == 0
    assert checksum(engine) == before


def test_a_rolled_back_batch_leaves_no_trace(engine):
    _apply_in_batches(engine, HISTORY[:1000])
    before = checksum(engine)
    with pytest.raises(RuntimeError), Session(engine) as session, session.begin():
        for envelope in HISTORY[1000:1300]:
            apply(session, envelope)
        raise RuntimeError("crash before commit")
    assert checksum(engine) == before
    _apply_in_batches(engine, HISTORY[1000:])  # redelivered after the crash: now applied
    assert checksum(engine).tables["proj_timeline"][0] == len(HISTORY)


def test_an_event_rolled_back_alone_does_not_leave_the_rest_of_its_batch_unfolded(tmp_path, engine):
    """The pipeline rolls back one event's savepoint (dead-lettered) and commits the others."""
    first, poisoned = HISTORY[0], HISTORY[1]
    with Session(engine) as session, session.begin():
        with session.begin_nested():
            apply(session, first)
        with pytest.raises(ValueError), session.begin_nested():
            apply(session, poisoned)
            raise ValueError("handler failed after writing")
    row = queries.ticket(engine, first.ticket_id)
    assert row is not None and row["events"] == 1
    assert [e["event_id"] for e in queries.timeline(engine, first.ticket_id)] == [first.id]


def test_a_ticket_whose_fold_fails_keeps_its_rows_and_waits_while_others_go_on(engine, monkeypatch):
    _apply_in_batches(engine, HISTORY[:800])
    victim = HISTORY[900].ticket_id
    real_fold = store_module.fold

    def failing(facts, ticket_id=None):
        if ticket_id == victim:
            raise ValueError("a bug in the fold")
        return real_fold(facts, ticket_id)

    monkeypatch.setattr(store_module, "fold", failing)
    _apply_in_batches(engine, HISTORY[800:])
    with Session(engine) as session:
        pending = session.execute(select(ProjRebuildPending.ticket_id)).scalars().all()
        assert pending == [victim]
        assert session.execute(select(func.count()).select_from(ProjTimelineEntry)).scalar_one() == len(HISTORY)
    monkeypatch.setattr(store_module, "fold", real_fold)
    with Session(engine) as session, session.begin():
        refold(session, pending)
        session.execute(ProjRebuildPending.__table__.delete())
    reference = make_engine(str(engine.url).replace("proj.db", "ref.db"))
    upgrade(reference)
    _apply_in_batches(reference, HISTORY)
    assert checksum(engine) == checksum(reference)


def test_the_facts_remembered_when_writing_are_those_the_rows_parse_back_to(engine):
    """A refold takes the facts of the rows this process wrote from memory (store.FACTS) instead of
    parsing their payloads: they must be the very facts the stored rows parse to."""
    store_module.FACTS.clear()
    with Session(engine) as session, session.begin():
        store_facts(session, [Fact.from_envelope(e) for e in HISTORY])
    with Session(engine) as session:
        rows = [tuple(r) for r in session.execute(select(*store_module._FACT_COLUMNS))]
    assert len(rows) == len(HISTORY)
    for row in rows:
        assert row in store_module.FACTS._facts  # written rows read back as the same key: no parse
        assert store_module.FACTS.of_row(row) == store_module._parse_row(row)


def test_the_fact_memo_holds_more_only_while_a_larger_size_is_leased():
    memo = store_module.FactMemo(2)
    fact = Fact.from_envelope(HISTORY[1])
    with memo.at_least(4):
        memo._put([((str(i),), fact) for i in range(5)])
        assert list(memo._facts) == [("1",), ("2",), ("3",), ("4",)]  # least recently used first out
    assert list(memo._facts) == [("3",), ("4",)]


def test_the_fact_memo_answers_rows_in_order_whether_remembered_or_parsed(engine):
    with Session(engine) as session, session.begin():
        store_facts(session, [Fact.from_envelope(e) for e in HISTORY])
    with Session(engine) as session:
        rows = [tuple(r) for r in session.execute(select(*store_module._FACT_COLUMNS).order_by(store_module.TIMELINE.c.time))]
    memo = store_module.FactMemo(len(rows))
    remembered = rows[::2]
    memo.of_rows(remembered)
    assert list(memo._facts) == remembered
    kept = {row: memo._facts[row] for row in remembered}

    facts = memo.of_rows(rows)

    assert facts == [store_module._parse_row(row) for row in rows]
    assert all(facts[i] is kept[row] for i, row in enumerate(rows) if row in kept)  # hits are not parsed again
    assert set(memo._facts) == set(rows)


def test_facts_read_without_remembering_them_are_parsed_alike_and_leave_the_memo_as_it_was(engine):
    with Session(engine) as session, session.begin():
        store_facts(session, [Fact.from_envelope(e) for e in HISTORY])
    with Session(engine) as session:
        rows = [tuple(r) for r in session.execute(select(*store_module._FACT_COLUMNS))]
    memo = store_module.FactMemo(len(rows))
    memo.of_rows(rows[::3])
    before = set(memo._facts)

    facts = memo.of_rows(rows, remember=False)

    assert facts == [store_module._parse_row(row) for row in rows]
    assert set(memo._facts) == before


# ---------------------------------------------------------------------------------------------- rebuild

class ListLog:
    """A log held in memory: partitions of encoded records, read in batches like Kafka."""

    description = "memory"

    def __init__(self, envelopes, partitions: int = 3) -> None:
        self.parts: dict[Position, list[LogRecord]] = {}
        for envelope in envelopes:
            record = codec.encode(envelope)
            tp = (f"topic-{envelope.type.split('.')[1]}", hash(envelope.ticket_id) % partitions)
            part = self.parts.setdefault(tp, [])
            part.append(LogRecord(tp[0], tp[1], len(part), record.key, record.value, tuple(record.headers), 0))
        self.closed = 0

    async def bounds(self):
        return {tp: 0 for tp in self.parts}, {tp: len(p) for tp, p in self.parts.items()}

    async def batches(self, start, end, max_records) -> AsyncIterator:
        for tp in sorted(end):
            position = start.get(tp, 0)
            while position < end[tp]:
                chunk = self.parts[tp][position:min(position + max_records, end[tp])]
                position += len(chunk)
                yield chunk, {tp: position}

    async def close(self):
        self.closed += 1


class StopAfter:
    """A progress meter that presses Ctrl-C after some batches of a phase (load or fold)."""

    def __init__(self, batches: int, phase: str = "load") -> None:
        self.left, self.stop_in, self.current = batches, phase, ""

    def phase(self, name, total):
        self.current = name

    def advance(self, amount):
        if self.current == self.stop_in:
            self.left -= 1
            if self.left == 0:
                raise KeyboardInterrupt

    def close(self):
        return None


def test_rebuild_equals_the_live_projection(tmp_path, engine):
    _apply_in_batches(engine, HISTORY)
    rebuilt = make_engine(f"sqlite:///{tmp_path / 'rebuilt.db'}")
    report = asyncio.run(rebuild(rebuilt, ListLog(HISTORY), batch=250))
    assert report.records_read == report.events_loaded == len(HISTORY)
    assert report.tickets_folded == len({e.ticket_id for e in HISTORY}) and report.fold_failures == 0
    assert checksum(rebuilt) == checksum(engine)


def test_an_interrupted_rebuild_resumes_where_it_stopped(tmp_path, engine):
    _apply_in_batches(engine, HISTORY)
    rebuilt = make_engine(f"sqlite:///{tmp_path / 'rebuilt.db'}")
    log = ListLog(HISTORY)
    with pytest.raises(RebuildInterrupted) as stopped:
        asyncio.run(rebuild(rebuilt, log, batch=200, meter=StopAfter(5)))
    assert stopped.value.report.interrupted and 0 < stopped.value.report.records_read < len(HISTORY)
    assert log.closed == 1
    with pytest.raises(RebuildInterrupted):  # now stop in the fold phase
        asyncio.run(rebuild(rebuilt, log, batch=200, fold_batch=20, meter=StopAfter(3, phase="fold")))
    report = asyncio.run(rebuild(rebuilt, log, batch=200))
    assert report.resumed and report.events_loaded + stopped.value.report.events_loaded <= len(HISTORY)
    assert checksum(rebuilt) == checksum(engine)


class ParsesPerPhase:
    """A progress meter that notes how many timeline rows had been parsed when each phase began."""

    def __init__(self, parses: list[int]) -> None:
        self.parses, self.at_start = parses, {}

    def phase(self, name, total):
        self.at_start[name] = len(self.parses)

    def advance(self, amount):
        return None

    def close(self):
        return None


def test_a_rebuild_longer_than_the_fact_memo_still_finds_every_fact_the_load_kept(tmp_path, engine, monkeypatch):
    """The fold reads each ticket once: the facts it has to parse must not push out those the load kept for
    tickets still to come (which made a rebuild of a log longer than the memo parse nearly every event)."""
    _apply_in_batches(engine, HISTORY)
    kept = 300
    parses: list[int] = []
    real_parse = store_module._parse_row
    monkeypatch.setattr(store_module, "_parse_row", lambda row: parses.append(1) or real_parse(row))
    monkeypatch.setattr("services.projections.rebuild._FACTS_KEPT", kept)
    monkeypatch.setattr(store_module.FACTS, "size", kept)
    store_module.FACTS.clear()
    rebuilt = make_engine(f"sqlite:///{tmp_path / 'rebuilt.db'}")
    meter = ParsesPerPhase(parses)

    asyncio.run(rebuild(rebuilt, ListLog(HISTORY), batch=250, fold_batch=20, meter=meter))

    assert len(parses) - meter.at_start["fold"] == len(HISTORY) - kept  # the kept facts were all found
    assert checksum(rebuilt) == checksum(engine)
    store_module.FACTS.clear()


def test_rebuild_refuses_a_store_that_is_not_a_rebuild(engine):
    _apply_in_batches(engine, HISTORY[:100])
    with pytest.raises(NotARebuildStore):
        asyncio.run(rebuild(engine, ListLog(HISTORY)))


def test_undecodable_records_are_skipped_by_a_rebuild_as_the_live_consumer_dead_letters_them(tmp_path):
    log = ListLog(HISTORY[:300])
    tp = next(iter(log.parts))
    part = log.parts[tp]
    part.append(LogRecord(tp[0], tp[1], len(part), b"T-X", b"{not json", (("ce_type", HISTORY[0].type.encode()),
                                                                              ("ce_id", b"x"), ("ce_source", b"/x"),
                                                                              ("ce_specversion", b"1.0")), 0))
    report = asyncio.run(rebuild(make_engine(f"sqlite:///{tmp_path / 'r.db'}"), log))
    assert report.undecodable == 1 and report.events_loaded == 300


def test_checksum_sees_a_single_changed_value(engine):
    _apply_in_batches(engine, HISTORY[:500])
    before = checksum(engine)
    with Session(engine) as session, session.begin():
        row = session.execute(select(ProjTicket).limit(1)).scalar_one()
        row.reminders += 1
    after = checksum(engine)
    assert after.digest != before.digest
    assert after.tables["proj_tasks"] == before.tables["proj_tasks"]
