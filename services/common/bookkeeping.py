"""The pipeline's bookkeeping rows for one batch: what the store already knows of its events (applied
before, parked), the applied-event and outbox rows it writes, and the dead letters it sends.

Read with one statement per 500 events and written with one INSERT per table at the end of the batch's
transaction, instead of two lookups, an ORM object and a flush per event.

A dead letter is an outbox row like any output (topic `<source>.dlq`, cause: the event's id, or the
record's position when it could not even be decoded): it is written in the transaction that decided
it and published with the batch's outputs, so a crash in between re-sends it instead of losing it.

`processed_events` is pruned by age (`prune_processed`): an id is kept `processed_retention_s` (30 days by
default) after it was applied. Ids exist to drop a second copy of an event, and every way a copy
arrives is bounded far below that: a batch whose offsets were not committed is redelivered within
seconds to minutes, a producer's retried send within its delivery timeout, an outbox row left by a
crash at the next start. Per-partition positions would not do: a copy re-sent from an outbox sits at
a later offset than the original, so only the id recognises it. What an age window does not cover is
a deliberate rewind of the consumer group over older records: that is a rebuild, done on an empty
store (services' stores are rebuilt from the log).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, literal_column, select, union_all, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import BindParameter
from sqlmodel import Session

from contracts.codec import KafkaRecord
from contracts.envelope import Envelope

from .batch_state import table_of
from .direct_sql import insert_rows, select_rows
from .store import OutboxRecord, ParkedEvent, ProcessedEvent

# A record to publish: the id of the event (or tick) whose handling produced it, its topic, the record.
Output = tuple[str, str, KafkaRecord]


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def dead_letter_for(record: Any, consumer: str, reason: str) -> DeadLetter:
    headers = list(record.headers or ())
    headers += [
        ("dlq_error", reason.encode()[:4000]),
        ("dlq_topic", record.topic.encode()),
        ("dlq_partition", str(record.partition).encode()),
        ("dlq_offset", str(record.offset).encode()),
        ("dlq_consumer", consumer.encode()),
    ]
    return DeadLetter(record.topic + ".dlq", record.key, record.value, headers)


def stand_in_cause(connection: Connection, consumer: str, cause_id: str, topic: str, rec: KafkaRecord,
                   too_large: bool) -> ParkedRecord:
    """What to dead-letter for an output that cannot be published when the event that caused it is not at hand
    (re-sent from the outbox at a start, or a tick's): the output, under its cause's position when the store
    remembers it (so it lands in the DLQ of the topic the cause came from), else under its own topic. Without
    its value when that is what is too large (its headers still name it and its cause)."""
    processed = table_of(ProcessedEvent).c
    position = connection.execute(select(processed.topic, processed.partition, processed.offset).where(
        processed.consumer == consumer, processed.event_id == cause_id)).first()
    source, partition, offset = (position.topic, position.partition, position.offset) if position else (topic, -1, -1)
    return ParkedRecord(source, partition, offset, rec.key, b"" if too_large else rec.value,
                        list(rec.headers) + [("dlq_output_topic", topic.encode())])


def undecodable_cause(record: Any) -> str:
    """The outbox cause of a record that could not be decoded (it has no event id): its position."""
    return f"record:{record.topic}:{record.partition}:{record.offset}"


@dataclass
class BatchLedger:
    """One batch's view of the store, and its bookkeeping rows, written with one INSERT per table
    at the end of the transaction instead of an ORM object (and a flush) per event."""

    consumer: str
    careful: bool
    now: datetime
    processed: set[str] = field(default_factory=set)       # applied (or dead-lettered) before this batch
    parked: set[str] = field(default_factory=set)          # waiting in parked_events
    parked_tickets: set[str] = field(default_factory=set)  # tickets with parked events
    applied: set[str] = field(default_factory=set)         # applied in this batch
    processed_rows: list[dict[str, Any]] = field(default_factory=list)
    outbox_rows: list[dict[str, Any]] = field(default_factory=list)
    causes: dict[str, Any] = field(default_factory=dict)  # event id -> its record, to dead-letter it if its output cannot be sent

    @classmethod
    def read(cls, connection: Connection, consumer: str, envelopes: list[Envelope[Any]], careful: bool,
             now: datetime) -> BatchLedger:
        """What the store already knows about these events (applied before, parked, tickets with parked
        events), with one statement per 500 events instead of lookups per event."""
        ledger = cls(consumer, careful, now)
        unique = list({envelope.id: envelope for envelope in envelopes}.values())
        kinds = {"processed": ledger.processed, "parked": ledger.parked, "parked-ticket": ledger.parked_tickets}
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            rows = select_rows(connection, _KNOWN_OF_BATCH, {"consumer": consumer, "ids": [e.id for e in chunk],
                                                             "tickets": list({e.ticket_id for e in chunk})})
            for kind, key in rows:
                kinds[kind].add(key)
        return ledger

    def remember(self, record: Any, envelope: Envelope[Any], produced: list[Output], outcome: str) -> None:
        self.applied.add(envelope.id)
        self.causes[envelope.id] = record
        self.processed_rows.append({"consumer": self.consumer, "event_id": envelope.id, "topic": record.topic,
                                    "partition": record.partition, "offset": record.offset, "outcome": outcome,
                                    "processed_at": self.now})
        self.outbox_rows += [outbox_values(self.consumer, cause, topic, rec) for cause, topic, rec in produced]

    def dead_letter(self, cause_id: str, letter: DeadLetter) -> Output:
        """A dead letter through the outbox, written with the batch; returned to be published with its outputs."""
        output = letter_output(cause_id, letter)
        self.outbox_rows.append(outbox_values(self.consumer, *output))
        return output

    def write(self, session: Session) -> None:
        # On the session's connection, one executemany per table, without the ORM's statement handling.
        connection = session.connection()
        insert_rows(connection, table_of(ProcessedEvent), self.processed_rows)
        insert_rows(connection, table_of(OutboxRecord), self.outbox_rows)


def _known_of_batch() -> Any:
    processed, parked = table_of(ProcessedEvent).c, table_of(ParkedEvent).c
    consumer: BindParameter[str] = bindparam("consumer")
    ids: BindParameter[list[str]] = bindparam("ids", expanding=True)
    tickets: BindParameter[list[str]] = bindparam("tickets", expanding=True)
    return union_all(
        select(literal_column("'processed'"), processed.event_id).where(processed.consumer == consumer, processed.event_id.in_(ids)),
        select(literal_column("'parked'"), parked.event_id).where(parked.consumer == consumer, parked.event_id.in_(ids)),
        select(literal_column("'parked-ticket'"), parked.ticket_id).where(parked.consumer == consumer, parked.ticket_id.in_(tickets)),
    )


INSERT_OUTBOX = insert(table_of(OutboxRecord))
# Built once: SQLAlchemy compiles it once and caches it (expanding IN parameters keep one cache entry).
_KNOWN_OF_BATCH = _known_of_batch()


def chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


@dataclass(frozen=True)
class ParkedRecord:
    """A parked event's record as it came from the broker (what the decoder reads)."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]

    @classmethod
    def of(cls, row: ParkedEvent) -> ParkedRecord:
        return cls(row.topic, row.partition, row.offset, row.key, row.value,
                   [(k, v.encode()) for k, v in json.loads(row.headers)])


def parked_row(consumer: str, record: Any, envelope: Envelope[Any], reason: str, now: datetime) -> ParkedEvent:
    return ParkedEvent(consumer=consumer, event_id=envelope.id, ticket_id=envelope.ticket_id, topic=record.topic,
                       partition=record.partition, offset=record.offset, key=record.key or b"",
                       value=record.value or b"", headers=_headers_json(record.headers), reason=reason, parked_at=now)


def _headers_json(headers: Any) -> bytes:
    return json.dumps([[k, v.decode(errors="replace")] for k, v in (headers or ())]).encode()


def letter_output(cause_id: str, letter: DeadLetter) -> Output:
    return cause_id, letter.topic, KafkaRecord(letter.key or b"", letter.value or b"", letter.headers)


def expired_parked(session: Session, consumer: str, parked_before: datetime) -> list[ParkedEvent]:
    return list(session.execute(select(ParkedEvent).where(table_of(ParkedEvent).c.consumer == consumer,
                                                          table_of(ParkedEvent).c.parked_at < parked_before)).scalars())


def mark_dead_lettered(connection: Connection, consumer: str, event_ids: list[str]) -> None:
    """Record that these events ended in the DLQ (an output they produced could not be published)."""
    processed = table_of(ProcessedEvent).c
    for chunk in chunks(event_ids):
        connection.execute(update(table_of(ProcessedEvent)).where(processed.consumer == consumer, processed.event_id.in_(chunk))
                           .values(outcome="dead-lettered"))


def prune_processed(connection: Connection, consumer: str, applied_before: datetime) -> int:
    """Forget the ids of events applied before `applied_before` (see the module's docstring for why that is safe)."""
    processed = table_of(ProcessedEvent).c
    result = connection.execute(delete(table_of(ProcessedEvent)).where(processed.consumer == consumer,
                                                                      processed.processed_at < applied_before))
    return int(result.rowcount or 0)


def tick_cause(rec: KafkaRecord) -> str:
    return "tick:" + next(v.decode() for k, v in rec.headers if k == "ce_id")


def outbox_values(consumer: str, cause_id: str, topic: str, rec: KafkaRecord) -> dict[str, Any]:
    # surrogateescape: a dead letter keeps the headers of the record it carries, which may not be UTF-8.
    return {"consumer": consumer, "cause_id": cause_id, "topic": topic, "key": rec.key, "value": rec.value,
            "headers": json.dumps([[k, v.decode(errors="surrogateescape")] for k, v in rec.headers]).encode()}


def row_to_output(row: OutboxRecord) -> Output:
    return row.cause_id, row.topic, KafkaRecord(row.key, row.value, [(k, v.encode(errors="surrogateescape"))
                                                                     for k, v in json.loads(row.headers)])


def str_headers(headers: list[tuple[str, bytes]]) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in headers}


def parked_order(row: ParkedEvent) -> tuple[datetime, str, int, int]:
    """The order to retry a ticket's parked events in: when each happened (its CloudEvents time), then its
    place in its topic. Offsets alone order records within one topic only, and a ticket's parked events
    may come from several (a callback command must not be retried before the handling it answers)."""
    stamp = next((v for k, v in json.loads(row.headers) if k == "ce_time"), None)
    try:
        moment = datetime.fromisoformat(stamp).astimezone(UTC) if stamp else _NEVER
    except ValueError:
        moment = _NEVER  # undecodable: retried first, and dead-lettered by the decoder
    return moment, row.topic, row.partition, row.offset


_NEVER = datetime.min.replace(tzinfo=UTC)
