"""The pipeline's bookkeeping rows for one batch: what the store already knows of its events (applied
before, parked), the applied-event and outbox rows it writes, and the dead letters it sends.

Read with one statement per 500 events and written with one INSERT per table at the end of the batch's
transaction, instead of two lookups, an ORM object and a flush per event.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, insert, literal_column, select, union_all
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import BindParameter
from sqlmodel import Session

from contracts.codec import KafkaRecord
from contracts.envelope import Envelope, utcnow

from .batch_state import table_of
from .store import OutboxRecord, ParkedEvent, ProcessedEvent


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


@dataclass
class BatchLedger:
    """One batch's view of the store, and its bookkeeping rows, written with one INSERT per table
    at the end of the transaction instead of an ORM object (and a flush) per event."""

    consumer: str
    careful: bool
    processed: set[str] = field(default_factory=set)       # applied (or dead-lettered) before this batch
    parked: set[str] = field(default_factory=set)          # waiting in parked_events
    parked_tickets: set[str] = field(default_factory=set)  # tickets with parked events
    applied: set[str] = field(default_factory=set)         # applied in this batch
    processed_rows: list[dict[str, Any]] = field(default_factory=list)
    outbox_rows: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def read(cls, connection: Connection, consumer: str, envelopes: list[Envelope[Any]], careful: bool) -> BatchLedger:
        """What the store already knows about these events (applied before, parked, tickets with parked
        events), with one statement per 500 events instead of lookups per event."""
        ledger = cls(consumer, careful)
        unique = list({envelope.id: envelope for envelope in envelopes}.values())
        kinds = {"processed": ledger.processed, "parked": ledger.parked, "parked-ticket": ledger.parked_tickets}
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            rows = connection.execute(_KNOWN_OF_BATCH, {"consumer": consumer, "ids": [e.id for e in chunk],
                                                        "tickets": list({e.ticket_id for e in chunk})})
            for kind, key in rows:
                kinds[kind].add(key)
        return ledger

    def remember(self, record: Any, envelope: Envelope[Any], produced: list[tuple[str, KafkaRecord]], outcome: str) -> None:
        self.applied.add(envelope.id)
        self.processed_rows.append({"consumer": self.consumer, "event_id": envelope.id, "topic": record.topic,
                                    "partition": record.partition, "offset": record.offset, "outcome": outcome,
                                    "processed_at": utcnow()})
        self.outbox_rows += [outbox_values(self.consumer, envelope.id, topic, rec) for topic, rec in produced]

    def write(self, session: Session) -> None:
        # On the session's connection: plain Core executemany, without the ORM's statement handling.
        connection = session.connection()
        if self.processed_rows:
            connection.execute(_INSERT_PROCESSED, self.processed_rows)
        if self.outbox_rows:
            connection.execute(INSERT_OUTBOX, self.outbox_rows)


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


_INSERT_PROCESSED = insert(table_of(ProcessedEvent))
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


def parked_row(consumer: str, record: Any, envelope: Envelope[Any], reason: str) -> ParkedEvent:
    return ParkedEvent(consumer=consumer, event_id=envelope.id, ticket_id=envelope.ticket_id, topic=record.topic,
                       partition=record.partition, offset=record.offset, key=record.key or b"",
                       value=record.value or b"", headers=_headers_json(record.headers), reason=reason)


def _headers_json(headers: Any) -> bytes:
    return json.dumps([[k, v.decode(errors="replace")] for k, v in (headers or ())]).encode()


def tick_cause(rec: KafkaRecord) -> str:
    return "tick:" + next(v.decode() for k, v in rec.headers if k == "ce_id")


def outbox_values(consumer: str, cause_id: str, topic: str, rec: KafkaRecord) -> dict[str, Any]:
    return {"consumer": consumer, "cause_id": cause_id, "topic": topic, "key": rec.key, "value": rec.value,
            "headers": json.dumps([[k, v.decode()] for k, v in rec.headers]).encode()}


def row_to_output(row: OutboxRecord) -> tuple[str, KafkaRecord]:
    return row.topic, KafkaRecord(row.key, row.value, [(k, v.encode()) for k, v in json.loads(row.headers)])


def str_headers(headers: list[tuple[str, bytes]]) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in headers}
