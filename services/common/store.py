"""A service's own store: its state tables plus the bookkeeping that makes effects exactly-once.

`processed_events` remembers every event a consumer has applied, written in the same
transaction as the state change, so a redelivered event changes nothing. `outbox` keeps the
records an event produced until they are confirmed on the broker, so a crash between the
database commit and the publish re-sends them (with the same derived ids) instead of losing them.
"""

from __future__ import annotations

import threading
import weakref
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Column, LargeBinary, event, inspect
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel, create_engine

from contracts.envelope import utcnow

from .batch_state import table_of


class ProcessedEvent(SQLModel, table=True):
    __tablename__ = "processed_events"

    consumer: str = Field(primary_key=True, description="Service that applied the event.")
    event_id: str = Field(primary_key=True, description="CloudEvents id of the applied event.")
    topic: str = Field(description="Topic it was read from.")
    partition: int = Field(description="Partition it was read from.")
    offset: int = Field(description="Offset it was read at.")
    outcome: str = Field(default="applied", description="applied, or dead-lettered with the reason in the DLQ.")
    processed_at: datetime = Field(default_factory=utcnow, description="When it was applied.")


class OutboxRecord(SQLModel, table=True):
    __tablename__ = "outbox"

    id: int | None = Field(default=None, primary_key=True)
    consumer: str = Field(index=True, description="Pipeline that produced it (several may share one store).")
    cause_id: str = Field(index=True, description="Event whose handling produced this record.")
    topic: str = Field(description="Destination topic.")
    key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    value: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    headers: bytes = Field(sa_column=Column(LargeBinary, nullable=False), description="JSON list of [name, value] pairs.")


class ParkedEvent(SQLModel, table=True):
    """An event that arrived before what it depends on (topics are ordered only one by one).

    It waits here and is applied right after the next event of the same ticket is, or dead-lettered once it
    has waited longer than the service's `parked_timeout_s`.
    """

    __tablename__ = "parked_events"

    consumer: str = Field(primary_key=True)
    event_id: str = Field(primary_key=True)
    ticket_id: str = Field(index=True)
    topic: str
    partition: int
    offset: int
    key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    value: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    headers: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    reason: str = ""
    parked_at: datetime = Field(default_factory=utcnow, description="When it was parked (its wait is limited).")


BOOKKEEPING_TABLES = [table_of(ProcessedEvent), table_of(OutboxRecord), table_of(ParkedEvent)]


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (CLI, tests) look while the service writes; NORMAL sync is durable
    # against process crashes, which is the failure the outbox is for.
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()
    dbapi_connection.isolation_level = None  # SQLAlchemy's BEGIN (see make_engine) owns transactions


def make_engine(url: str, *, immediate: bool = False) -> Engine:
    """An engine for the store; nothing connects until first use.

    On SQLite the driver is told to leave transactions to SQLAlchemy and every transaction starts
    with an explicit BEGIN: pysqlite otherwise opens none before a SAVEPOINT, so releasing a
    savepoint would commit and a rolled-back batch would keep half its effects. `immediate` takes
    the write lock at BEGIN, for stores where two threads read-then-write the same rows.
    """
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _tune_sqlite)
        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql(begin))
        return engine
    return create_engine(url, pool_pre_ping=True)


class StoreSchemaMismatch(RuntimeError):
    """A service's own store was made by an older version whose tables lack columns this one needs."""


def create_tables(engine: Engine, tables: list[Any]) -> None:
    """Create the service's tables that are missing, and refuse, with what to do, a store whose existing
    tables lack columns (services' own stores have no migrations: they are rebuilt from the log)."""
    wanted = BOOKKEEPING_TABLES + list(tables)
    SQLModel.metadata.create_all(engine, tables=wanted)
    missing = _missing_columns(engine, wanted)
    if missing:
        where = engine.url.render_as_string(hide_password=True)
        raise StoreSchemaMismatch(
            f"the store {where} was made by an older cityops: {'; '.join(missing)}. A service's own store is "
            "rebuilt from the log: stop the service, delete the store (e.g. `make clean` for the demo hub's "
            ".state/) and start it again; it consumes its topics from the beginning.")


def _missing_columns(engine: Engine, tables: list[Any]) -> list[str]:
    inspector = inspect(engine)
    missing = []
    for table in tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        absent = [column.name for column in table.columns if column.name not in present]
        if absent:
            missing.append(f"table {table.name} lacks {', '.join(absent)}")
    return missing


_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_WRITE_LOCKS_GUARD = threading.Lock()


def write_lock(engine: Engine) -> threading.Lock:
    """One lock per store and process: a service's write transactions (batches, outbox clearing,
    ticks, a second pipeline on the same store) run one at a time. Two concurrent writers on one
    SQLite file otherwise fail with "database is locked" (a deferred transaction that read before
    the other committed cannot upgrade, whatever the busy timeout), and each failure redelivers the
    whole batch."""
    with _WRITE_LOCKS_GUARD:
        lock = _WRITE_LOCKS.get(engine)
        if lock is None:
            lock = _WRITE_LOCKS[engine] = threading.Lock()
        return lock
