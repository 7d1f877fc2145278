"""Writing the projections: exactly-once apply of events, and (re)folding tickets into their rows.

`apply_facts` is what the live consumer runs once per batch (`apply` for one event): it adds the
events to their tickets' timelines unless their ids are already there (a redelivery changes nothing,
in the same transaction that would have written it) and marks the tickets for refolding. The refold
runs once per ticket when the transaction commits (`refold_marked`, hooked on the session's commit),
so a batch of 500 events refolds each of its tickets once, with a few set-based statements, instead
of once per event. A rebuild runs the same two steps over the whole log (`store_facts`, then `refold`).
A refold reads a ticket's events back; `FACTS` spares it parsing them again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import Any

from sqlalchemy import Table, bindparam, event, select, text
from sqlalchemy.orm import Session

from contracts.envelope import Envelope
from services.common.batch_state import table_of
from services.common.direct_sql import (
    delete_where_in,
    insert_ignoring_stored,
    insert_new,
    insert_or_ignore,
    insert_rows,
    select_rows,
)
from services.common.logs import get_logger

from .domain import Fact, Folded, fold, is_projected, task_row, ticket_row, timeline_row
from .models import ProjRebuildPending, ProjTask, ProjTicket, ProjTicketMetric, ProjTimelineEntry

log = get_logger(__name__)

_IN_CHUNK = 500  # keeps IN (...) lists under SQLite's bound-parameter limit

TIMELINE = table_of(ProjTimelineEntry)
_VIEW_TABLES_BY_TICKET: tuple[Table, ...] = (table_of(ProjTicket), table_of(ProjTask), table_of(ProjTicketMetric))


def insert_ignore(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> int:
    """Insert rows, skipping those whose primary key exists; returns how many were inserted."""
    if not rows:
        return 0
    stmt = _insert_or_ignore(session, table)
    # RETURNING counts what was inserted: psycopg reports no rowcount for a multi-row insert. One row
    # goes as a plain execute, which is much cheaper than an executemany of one.
    stmt = stmt.returning(*table.primary_key.columns)
    params: Any = dict(rows[0]) if len(rows) == 1 else list(rows)
    return len(session.execute(stmt, params).all())


def _insert_or_ignore(session: Session, table: Table) -> Any:
    return insert_or_ignore(session.get_bind().dialect, table)


def lock_tickets(session: Session, ticket_ids: Sequence[str]) -> None:
    """Serialise writers of the same ticket. SQLite has one writer at a time anyway; on PostgreSQL two
    instances could each fold a ticket without the other's uncommitted event. Sorted, so that two
    transactions never wait for each other in a cycle."""
    if session.get_bind().dialect.name == "postgresql" and ticket_ids:
        session.execute(_LOCK_TICKETS, {"ids": sorted(set(ticket_ids))})


_LOCK_TICKETS = text("SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended(t, 0) AS h "
                     "FROM unnest(CAST(:ids AS text[])) AS t ORDER BY h) AS locks")
_MARKED = "cityops.projections.marked"


def apply(session: Session, envelope: Envelope[Any]) -> bool:
    """Add one event to its ticket's timeline; False when it is not a ticket event or was already applied.

    The ticket is refolded when the session's outermost transaction commits."""
    if not is_projected(envelope.type):
        return False
    return apply_facts(session, [Fact.from_envelope(envelope)]) == 1


def apply_facts(session: Session, facts: Sequence[Fact]) -> int:
    """Add ticket facts to their timelines with one statement, skipping those already there, and mark
    the tickets of the added ones for the refold at commit; returns how many were added.

    What the live handler runs once per batch (`handlers.finish_batch`): one insert of 500 rows costs
    a small fraction of 500 single-row inserts."""
    if not facts:
        return 0
    _install_commit_hook()
    rows = [timeline_row(f) for f in facts]
    added = _insert_new(session, rows)
    FACTS.remember(facts, rows)
    if added:
        session.info.setdefault(_MARKED, set()).update(added)
    return len(added)


def _insert_new(session: Session, rows: Sequence[dict[str, Any]]) -> list[str]:
    """Insert timeline rows, skipping event ids already stored; returns the ticket id of each row inserted."""
    connection = session.connection()
    added: list[str] = []
    for start in range(0, len(rows), _IN_CHUNK):
        added += insert_new(connection, TIMELINE, rows[start:start + _IN_CHUNK], "ticket_id")
    return added


def refold_marked(session: Session) -> int:
    """Refold the tickets `apply` marked in this session; returns how many."""
    marked = session.info.pop(_MARKED, set())
    if marked:
        refold(session, marked)
    return len(marked)


def _refold_before_commit(session: Session) -> None:
    # Fires for savepoint releases too; only the outermost commit ends the batch.
    if session.info.get(_MARKED) and session.get_nested_transaction() is None:
        refold_marked(session)


def _forget_marks(session: Session, transaction: Any) -> None:
    # Only when the outermost transaction ends: a rolled-back savepoint (one event dead-lettered)
    # must not make the batch forget the tickets its other events touched. A ticket marked by a
    # rolled-back event is refolded for nothing, which is harmless.
    if transaction.parent is None:
        session.info.pop(_MARKED, None)


def _install_commit_hook() -> None:
    if not event.contains(Session, "before_commit", _refold_before_commit):
        event.listen(Session, "before_commit", _refold_before_commit)
        event.listen(Session, "after_transaction_end", _forget_marks)


def store_facts(session: Session, facts: Sequence[Fact]) -> int:
    """Add facts to the timelines without folding (a rebuild folds each ticket once, afterwards)."""
    rows = [timeline_row(f) for f in facts]
    FACTS.remember(facts, rows)
    return bulk_insert_ignore(session, TIMELINE, rows)


def bulk_insert_ignore(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> int:
    """`insert_ignore` for many rows at once: one executemany, no RETURNING (which made the driver send
    them 500 at a time and build a result row for each); returns how many were inserted."""
    if not rows:
        return 0
    if len(rows) == 1:
        return insert_ignore(session, table, rows)
    if session.get_bind().dialect.name == "postgresql":
        return _copy_insert_ignore(session, table, rows)
    return insert_ignoring_stored(session.connection(), table, rows)


def _copy_insert_ignore(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> int:
    """PostgreSQL: COPY the rows into a scratch table, then one INSERT ... SELECT that skips the keys
    already stored (COPY itself cannot skip a duplicate: a log may hold an event twice)."""
    connection = session.connection()
    dialect = connection.dialect
    columns = list(table.columns)
    # The columns' own conversions (e.g. UTC times), as an INSERT through SQLAlchemy would apply them.
    convert = [c.type.bind_processor(dialect) for c in columns]
    names = ", ".join(f'"{c.name}"' for c in columns)
    scratch = f'"load_{table.name}"'
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(f'CREATE TEMP TABLE IF NOT EXISTS {scratch} (LIKE "{table.name}") ON COMMIT DELETE ROWS')
        with cursor.copy(f"COPY {scratch} ({names}) FROM STDIN") as copy:
            for row in rows:
                values = [row.get(c.name) for c in columns]
                copy.write_row([f(v) if f and v is not None else v for f, v in zip(convert, values, strict=True)])
        cursor.execute(f'INSERT INTO "{table.name}" ({names}) SELECT {names} FROM {scratch} ON CONFLICT DO NOTHING')
        inserted = cursor.rowcount
        cursor.execute(f"DELETE FROM {scratch}")  # the next call in this transaction starts empty
    finally:
        cursor.close()
    return int(inserted)


def load_facts(session: Session, ticket_ids: Iterable[str], *, remember: bool = True) -> dict[str, list[Fact]]:
    ids = sorted(set(ticket_ids))
    out: dict[str, list[Fact]] = defaultdict(list)
    connection = session.connection()
    for start in range(0, len(ids), _IN_CHUNK):
        rows = select_rows(connection, _FACTS_OF_TICKETS, {"tickets": ids[start:start + _IN_CHUNK]})
        for fact in FACTS.of_rows(rows, remember=remember):
            out[fact.ticket_id].append(fact)
    return out


# The timeline columns a Fact is made of, in `_parse_row`'s order.
_FACT_NAMES = ("event_id", "type", "time", "ticket_id", "payload", "source", "correlation_id", "causation_id")
_FACT_COLUMNS = tuple(TIMELINE.c[name] for name in _FACT_NAMES)
# Built once, as the other per-batch statements (batch_state.rows_where_in): the IN list expands at execution.
_FACTS_OF_TICKETS = select(*_FACT_COLUMNS).where(TIMELINE.c.ticket_id.in_(bindparam("tickets", expanding=True)))
_fact_key = itemgetter(*_FACT_NAMES)  # a timeline row dict -> its columns as `load_facts` reads them


def _parse_row(row: tuple[Any, ...]) -> Fact:
    event_id, type_, time, ticket_id, payload, source, correlation_id, causation_id = row
    return Fact.from_payload(id=event_id, type=type_, time=time, ticket_id=ticket_id, payload=payload, source=source,
                             correlation_id=correlation_id, causation_id=causation_id)


class FactMemo:
    """The facts of timeline rows, by the rows' whole content: a fact is a function of its row alone,
    so an entry is never stale, whatever other writers or rolled-back transactions did.

    A live ticket is refolded in every batch that brings it an event, and each refold reads all its
    events again; a rebuild reads every event back to fold it. Parsing their payloads was the largest
    cost of a refold. The rows this process writes are remembered with the facts it wrote them from,
    so most are never parsed at all. Least recently used entries go first (an entry takes about 1.5 KB).
    Folds do not modify facts. Pipelines on other stores may share it from their own threads.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._facts: OrderedDict[tuple[Any, ...], Fact] = OrderedDict()
        self._lock = threading.Lock()
        self._leases: list[int] = []  # larger sizes asked for a while (`at_least`)

    def of_row(self, row: tuple[Any, ...]) -> Fact:
        return self.of_rows([row])[0]

    def of_rows(self, rows: Sequence[tuple[Any, ...]], *, remember: bool = True) -> list[Fact]:
        """The facts of these rows, in their order; those not remembered are parsed, and remembered together
        (one `_put` per row cost 12 us) unless `remember` is False: a reader that will not read them again
        (a rebuild's fold) would only push out facts that are still to be read."""
        found: list[Fact | None] = []
        with self._lock:
            for row in rows:
                fact = self._facts.get(row)
                if fact is not None:
                    self._facts.move_to_end(row)
                found.append(fact)
        parsed = [(row, _parse_row(row)) for row, fact in zip(rows, found, strict=True) if fact is None]
        if parsed:
            if remember:
                self._put(parsed)
            new = iter(fact for _, fact in parsed)
            return [fact if fact is not None else next(new) for fact in found]
        return found  # type: ignore[return-value]  # every row was remembered

    def remember(self, facts: Sequence[Fact], rows: Sequence[dict[str, Any]]) -> None:
        """Remember what the timeline rows written from these facts will read back as."""
        keys = [_fact_key(row) for row in rows]
        self._put([(key, fact if fact.data_is_stored_as_is else _parse_row(key))
                   for key, fact in zip(keys, facts, strict=True)])

    @contextmanager
    def at_least(self, size: int) -> Iterator[None]:
        """Hold up to `size` facts for a while (a rebuild: until its fold phase has read them back)."""
        with self._lock:
            self._leases.append(size)
        try:
            yield
        finally:
            with self._lock:
                self._leases.remove(size)
            self._put([])

    def _put(self, entries: Iterable[tuple[tuple[Any, ...], Fact]]) -> None:
        with self._lock:
            self._facts.update(entries)
            for _ in range(len(self._facts) - max([self.size, *self._leases])):
                self._facts.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._facts.clear()


FACTS = FactMemo(20_000)  # about 30 MB when full


def refold(session: Session, ticket_ids: Iterable[str], *, once: bool = False) -> list[Folded]:
    """Recompute the rows of these tickets from their stored events and replace the old ones.

    A ticket whose fold fails keeps its old rows and is listed in `proj_rebuild_pending` for a
    later refold, so one bad ticket never blocks the others or the partition. `once`: these tickets
    will not be refolded again soon (a rebuild), so the facts parsed for them are not remembered."""
    ids = sorted(set(ticket_ids))
    lock_tickets(session, ids)
    facts = load_facts(session, ids, remember=not once)
    folds, failed = [], []
    for ticket_id in ids:
        try:
            folded = fold(facts.get(ticket_id, []), ticket_id)
        except Exception as exc:  # a fold bug must not stop the projection
            log.error("ticket_fold_failed", ticket_id=ticket_id, error=repr(exc))
            failed.append(ticket_id)
            continue
        if folded is not None:
            folds.append(folded)
    failed_set = set(failed)
    good = [t for t in ids if t not in failed_set]
    write_folds(session, good, folds)
    insert_ignore(session, table_of(ProjRebuildPending), [{"ticket_id": t} for t in failed])
    return folds


def write_folds(session: Session, ticket_ids: Sequence[str], folds: Sequence[Folded]) -> None:
    connection = session.connection()
    for table in _VIEW_TABLES_BY_TICKET:
        delete_where_in(connection, table, "ticket_id", ticket_ids)
    tickets = [ticket_row(f.ticket) for f in folds]
    tasks = [task_row(k) for f in folds for k in f.tasks]
    metrics = [{"ticket_id": f.ticket.ticket_id, "scope": scope, "key": key, **counts}
               for f in folds for (scope, key), counts in sorted(f.metrics.items())]
    for table, rows in zip(_VIEW_TABLES_BY_TICKET, (tickets, tasks, metrics), strict=True):
        insert_rows(connection, table, rows)
