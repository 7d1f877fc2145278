"""The typed wiring a service hands the pipeline (services/common/handler.py) and the shared batch state
(services/common/batch_state.py): what each promises, and what it costs in statements, no broker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, select

from contracts import codec
from contracts.envelope import Envelope
from services.common import batch_state
from services.common.batch_state import TableRows, rows_where_in, table_of
from services.common.pipeline import HandlerSpec, NoDeps
from services.common.store import create_tables, make_engine
from services.intake.handlers import StatusRow
from services.intake.models import TicketStatus

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)


class _Record:
    def __init__(self, topic: str, offset: int, envelope: Envelope[Any]) -> None:
        rec = codec.encode(envelope)
        self.topic, self.partition, self.offset = topic, 0, offset
        self.key, self.value, self.headers = rec.key, rec.value, rec.headers


class _Broker:
    async def publish(self, *_: Any, **__: Any) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def _statements(engine: Any) -> list[str]:
    """Every SQL statement the engine runs from now on."""
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def test_a_spec_has_either_a_handler_or_batch_hooks():
    with pytest.raises(ValueError):
        HandlerSpec(topics=["t"], event_types=None, deps=NoDeps())


@dataclass(slots=True)
class _Shuffled:
    """The same columns in another order: refused."""

    status: str
    ticket_id: str


def test_table_rows_write_new_rows_with_one_insert_and_changed_rows_with_one_update(tmp_path, monkeypatch):
    table = table_of(TicketStatus)
    engine = make_engine(f"sqlite:///{tmp_path / 'rows.db'}")
    create_tables(engine, [table])
    row_class = StatusRow
    with engine.begin() as connection:
        rows = TableRows(connection, table, row_class)
        rows.load(["A", "B", "C"])
        for key in ("A", "B", "C"):
            rows.add(row_class(ticket_id=key))
        rows.write()
    with engine.begin() as connection:
        rows = TableRows(connection, table, row_class)
        statements = _statements(engine)
        # On SQLite the INSERT and UPDATE go to the driver's cursor (direct_sql), which SQLAlchemy's events do not see.
        insert_values, update_values = batch_state.insert_values, batch_state.update_values
        monkeypatch.setattr(batch_state, "insert_values", lambda *args: (statements.append("INSERT (direct)"),
                                                                         insert_values(*args)))
        monkeypatch.setattr(batch_state, "update_values", lambda *args: (statements.append("UPDATE (direct)"),
                                                                         update_values(*args)))
        rows.load(["A", "B", "C", "D"])
        assert rows.get("D") is None and [r.ticket_id for r in rows.values()] == ["A", "B", "C"]
        rows.rows["A"].status = "closed"  # type: ignore[union-attr]  # loaded just above
        rows.rows["B"].status = "handled"  # type: ignore[union-attr]  # loaded just above
        rows.add(row_class(ticket_id="D"))
        rows.add(row_class(ticket_id="E"))
        rows.write()
        rows.write()  # nothing changed since: no statement
    writes = [s.split()[0].upper() for s in statements if not s.lstrip().upper().startswith("SELECT")]
    assert writes == ["INSERT", "UPDATE"]
    with engine.connect() as connection:
        stored = dict(connection.execute(select(table.c.ticket_id, table.c.status)).all())
    assert stored == {"A": "closed", "B": "handled", "C": "registered", "D": "registered", "E": "registered"}


def test_table_rows_load_by_another_column_in_the_order_asked_with_one_statement_reused_across_batches(tmp_path):
    table = table_of(TicketStatus)
    engine = make_engine(f"sqlite:///{tmp_path / 'rows.db'}")
    create_tables(engine, [table])
    with engine.begin() as connection:
        rows = TableRows(connection, table, StatusRow)
        for key, category in (("C", "roads"), ("A", "roads"), ("B", "noise"), ("D", "water")):
            rows.add(StatusRow(ticket_id=key, category=category))
        rows.write()
    newest_first = (table.c.ticket_id.desc(),)
    with engine.connect() as connection:
        first = TableRows(connection, table, StatusRow).load(["roads", "noise"], by="category", order_by=newest_first)
        second = TableRows(connection, table, StatusRow).load(["water"], by="category", order_by=newest_first)
    assert [r.ticket_id for r in first] == ["C", "B", "A"] and [r.ticket_id for r in second] == ["D"]
    # Two batches, one statement object (SQLAlchemy then finds its compiled form without rebuilding it).
    assert rows_where_in(table, "category", newest_first) is rows_where_in(table, "category", newest_first)
    assert rows_where_in(table, "category") is not rows_where_in(table, "ticket_id")


def test_statements_built_per_call_do_not_grow_the_statement_cache_without_bound():
    table = table_of(TicketStatus)
    for _ in range(batch_state._WHERE_IN_MAX + 50):
        rows_where_in(table, "ticket_id", (table.c.ticket_id.desc(),))  # a new clause each time: a new shape
    assert len(batch_state._WHERE_IN) <= batch_state._WHERE_IN_MAX


def test_table_rows_refuse_a_row_class_that_does_not_match_the_table():
    with pytest.raises(TypeError):
        TableRows(None, table_of(TicketStatus), _Shuffled)  # type: ignore[arg-type]  # checked before any use
