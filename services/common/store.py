"""A service's own store: its state tables plus the bookkeeping that makes effects exactly-once.

`processed_events` remembers every event a consumer has applied, written in the same
transaction as the state change, so a redelivered event changes nothing. `outbox` keeps the
records an event produced until they are confirmed on the broker, so a crash between the
database commit and the publish re-sends them (with the same derived ids) instead of losing them.

One SQLite store has one running service process (`claim_store`): a second instance pointed at the
same file refuses to start, naming the file and the pid that holds it. Several instances of a service
share one consumer group on PostgreSQL instead.

Several instances on PostgreSQL: row locks on the tickets, not partition-owned state. While partitions
move between instances, the instance that lost a partition may still be committing its last batch
while the new owner receives the same records again; and one ticket's events come from several topics,
whose partitions may belong to different instances. So every batch transaction first takes a
transaction-scoped advisory lock per ticket of the batch (`lock_tickets`, sorted so two batches never
wait for each other in a cycle), before it reads which events were already applied: a second writer of
the same ticket waits for the first one's commit, then sees its `processed_events` rows and skips those
events. Effects stay exactly-once without tying a ticket's state to a partition assignment; SQLite needs
none of this (one writer per file, one process per store).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TypeVar

import orjson
from sqlalchemy import Column, LargeBinary, Table, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Field, Session, SQLModel, create_engine

from contracts.envelope import utcnow

from . import direct_sql
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
        engine = create_engine(url, connect_args={"check_same_thread": False}, json_deserializer=read_json)
        event.listen(engine, "connect", _tune_sqlite)
        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"
        event.listen(engine, "begin", lambda conn: _begin_on_the_driver(conn, begin))
        return engine
    return create_engine(url, pool_pre_ping=True, json_deserializer=read_json)


def _begin_on_the_driver(connection: Any, begin: str) -> None:
    # Every batch of every service begins a transaction: SQLAlchemy's execution of the one statement cost several
    # times what SQLite spends on it (as the hot paths' statements in direct_sql).
    connection.connection.dbapi_connection.execute(begin)


# orjson reads an integer past 64 bits as a float without a word (-2**63 - 1 comes back as -9.223372036854776e+18),
# so text with a run of 19 digits or more, where such an integer could be, goes to the json module; a long run
# inside a string or a float's mantissa only costs the slower parse. The run is found by mapping every digit to
# "0" with bytes.translate and looking for nineteen of them: a regular expression took longer than orjson's parse.
_DIGITS_AS_ZERO = bytes(ord("0") if chr(code) in "0123456789" else code for code in range(256))
_LONG_DIGIT_RUN = b"0" * 19


def read_json(text: str | bytes) -> Any:
    """A JSON column's value: orjson's parse, with the json module's for what orjson refuses (NaN, lone
    surrogates) or would read differently (integers past 64 bits), so every stored value reads back as before.
    The stores' JSON values are mostly small lists and maps, and the json module's Python wrapper around its parser
    was most of their cost: in sla's read of a ticket's clocks, half the CPU (benchmarks/select_cpu.py)."""
    if _has_long_digit_run(text):
        return json.loads(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _has_long_digit_run(text: str | bytes) -> bool:
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    return _LONG_DIGIT_RUN in raw.translate(_DIGITS_AS_ZERO)


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


T = TypeVar("T")

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


def short_writes_on_loop(engine: Engine) -> bool:
    """Whether a short write transaction on `engine` may run on the event loop itself rather than in a worker thread.

    Only on SQLite (a local file: no network round trip to wait on) while nobody in this process holds the store's
    write lock (else the loop would wait for another transaction). There a batch of intake's sealing is a few
    hundred microseconds of work, and handing it to a thread cost more: the hop through the executor, the wake-ups
    and the GIL passed back and forth between the thread and a loop busy with sockets (measured: intake's CPU
    per HTTP submission 20 % lower on the loop, docs/performance.md "Stop 27"). A thread that takes the lock
    between this check and the caller's own `with write_lock` makes the loop wait one transaction: rare, bounded."""
    return engine.dialect.name == "sqlite" and not write_lock(engine).locked()


async def short_write(engine: Engine, work: Callable[..., T], *args: Any, small: bool = True) -> T:
    """`work(*args)`, a write transaction on `engine`: on the event loop when it is `small` and the store allows it
    (`short_writes_on_loop`), else in a worker thread, so the loop keeps serving its sockets meanwhile."""
    if small and short_writes_on_loop(engine):
        return work(*args)
    return await asyncio.to_thread(work, *args)


class StoreInUse(RuntimeError):
    """Another running process already serves this SQLite store."""


@dataclass
class _Claim:
    file: IO[str]
    holders: int


_claims: dict[Path, _Claim] = {}
_claims_lock = threading.Lock()


def sqlite_path(engine: Engine) -> Path | None:
    """The file of a SQLite store (None: another database, or SQLite in memory)."""
    if engine.url.get_backend_name() != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    return Path(str(engine.url.database)).resolve()


def claim_store(engine: Engine, service: str) -> None:
    """Make this process the one service process of its SQLite store, until `release_store` or its exit.

    Two processes on one SQLite file would each consume their share of the partitions yet write one state,
    and wait on each other's write lock; so the second one refuses to start. The lock is the kernel's
    (flock on `<store>.lock`): it goes with the process, so a crashed instance never leaves a stale one.
    Claims within one process nest (intake's two consumers, tests that build several apps on one store)."""
    path = sqlite_path(engine)
    if path is None:
        return
    with _claims_lock:
        if path in _claims:
            _claims[path].holders += 1
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_file = open(f"{path}.lock", "a+")  # noqa: SIM115 - held open for as long as the claim lasts
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "another process"
            lock_file.close()
            raise StoreInUse(
                f"{service} refuses to start: its store {path} is in use by {holder}. One SQLite store serves one "
                "process; stop the other instance, give this one its own CITYOPS_STATE_DIR, or run several "
                "instances on PostgreSQL (CITYOPS_DB_URL).") from None
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(f"{service} (pid {os.getpid()})\n")
        lock_file.flush()
        _claims[path] = _Claim(lock_file, 1)


def release_store(engine: Engine) -> None:
    """End one `claim_store` of this process; the last one lets another process claim the store."""
    path = sqlite_path(engine)
    with _claims_lock:
        claim = _claims.get(path) if path is not None else None
        if claim is None:
            return
        claim.holders -= 1
        if claim.holders == 0:
            del _claims[path]  # type: ignore[arg-type]
            claim.file.close()  # closing the descriptor releases the flock


_LOCK_TICKETS = text("SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended(t, 0) AS h "
                     "FROM unnest(CAST(:ids AS text[])) AS t ORDER BY h) AS locks")


def lock_tickets(session: Session, consumer: str, ticket_ids: Iterable[str]) -> None:
    """On PostgreSQL, make this transaction the one writer of these tickets' state for `consumer` until it
    ends (see the module docstring); nothing on SQLite. Call it first in the transaction."""
    ids = sorted({f"{consumer}:{ticket_id}" for ticket_id in ticket_ids})
    if ids and session.get_bind().dialect.name == "postgresql":
        session.execute(_LOCK_TICKETS, {"ids": ids})


def upsert_rows(session: OrmSession, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE for many rows in one executemany (SQLite and PostgreSQL):
    what `Session.merge` does one row and two statements at a time."""
    if rows:
        # On SQLite inside the session's transaction, straight to the driver (services/common/direct_sql.py).
        direct_sql.upsert_rows(session.connection(), table, rows, keys)
