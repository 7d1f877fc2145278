"""Storing a batch of records: insert-or-ignore on (topic, partition, offset), one transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from services.common.batch_state import table_of

from .domain import archive_row
from .models import ArchivedRecord

_CHUNK = 1000


def archive_records(engine: Engine, records: Sequence[Any], now: Callable[[], datetime]) -> int:
    """Store the records; returns how many were new (a redelivered record is already there)."""
    rows = [archive_row(r, now()) for r in records]
    if not rows:
        return 0
    table = table_of(ArchivedRecord)
    dialect = engine.dialect.name
    stmt = (postgresql if dialect == "postgresql" else sqlite).insert(table).on_conflict_do_nothing()
    stored = 0
    with Session(engine) as session, session.begin():
        for start in range(0, len(rows), _CHUNK):
            # RETURNING counts what was new: psycopg reports no rowcount for a multi-row insert.
            stored += len(session.execute(stmt.returning(table.c.offset), rows[start:start + _CHUNK]).all())
    return stored
