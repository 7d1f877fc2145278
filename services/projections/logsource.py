"""Reading the event log itself: straight from Kafka, or from the archiver's durable copy.

Both sources give the same thing: batches of raw records of a fixed set of partitions, from given
start positions up to the end positions seen when reading began (so a replay of a live system
ends). A reader of the log remembers positions per partition, which is what makes a long replay
resumable.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import MetaData, Table, and_, func, select
from sqlalchemy.engine import Engine

from contracts.codec import DecodeError, decode, encode
from contracts.envelope import Envelope
from services.common.kafka import kafka_access

Position = tuple[str, int]  # (topic, partition)


@dataclass(frozen=True)
class LogRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:  # a plain loop: a generator per call was a tenth of a rebuild's load
            if key == name:
                return value
        return None


class LogSource(Protocol):
    description: str

    async def bounds(self) -> tuple[dict[Position, int], dict[Position, int]]:
        """(first offset, end offset) of every partition read; end is exclusive."""
        ...

    def batches(self, start: dict[Position, int], end: dict[Position, int],
                max_records: int) -> AsyncIterator[tuple[list[LogRecord], dict[Position, int]]]:
        """Records from `start` up to `end`, each batch with the positions it advanced to."""
        ...

    async def close(self) -> None: ...


def decode_wanted(records: Iterable[LogRecord], wanted_types: set[bytes] | frozenset[bytes],
                  ) -> tuple[list[tuple[LogRecord, Envelope[Any]]], int]:
    """Decode the records of the wanted event types; count (and skip) those that do not decode, as
    the live consumer dead-letters them."""
    out: list[tuple[LogRecord, Envelope[Any]]] = []
    undecodable = 0
    for record in records:
        ce_type = record.header("ce_type")
        if ce_type is not None and ce_type not in wanted_types:
            continue
        try:
            out.append((record, decode(record.key, record.value, list(record.headers))))
        except DecodeError:
            undecodable += 1
    return out, undecodable


# ---------------------------------------------------------------------------------------------- Kafka

class KafkaLog:
    """The topics as the broker holds them, read without a consumer group (nothing is committed)."""

    def __init__(self, bootstrap: str, topics: Iterable[str], *, fetch_max_bytes: int = 64 * 1024 * 1024) -> None:
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.description = f"kafka {bootstrap}: {', '.join(self.topics)}"
        self.fetch_max_bytes = fetch_max_bytes
        self._consumer: AIOKafkaConsumer | None = None
        self._started = False
        self._partitions: list[TopicPartition] = []

    async def _start(self) -> AIOKafkaConsumer:
        if self._started and self._consumer is not None:
            return self._consumer
        # Created here, inside the running loop: aiokafka binds a consumer to the loop it is made in.
        self._consumer = AIOKafkaConsumer(**kafka_access(self.bootstrap).options, group_id=None, enable_auto_commit=False,
                                          auto_offset_reset="earliest", fetch_max_bytes=self.fetch_max_bytes,
                                          max_partition_fetch_bytes=8 * 1024 * 1024)
        await self._consumer.start()
        self._started = True
        for topic, partitions in sorted((await partitions_of(self.bootstrap, self.topics)).items()):
            self._partitions += [TopicPartition(topic, p) for p in partitions]
        self._consumer.assign(self._partitions)
        return self._consumer

    async def bounds(self) -> tuple[dict[Position, int], dict[Position, int]]:
        consumer = await self._start()
        if not self._partitions:
            return {}, {}
        first = await consumer.beginning_offsets(self._partitions)
        end = await consumer.end_offsets(self._partitions)
        return ({(tp.topic, tp.partition): o for tp, o in first.items()},
                {(tp.topic, tp.partition): o for tp, o in end.items()})

    async def offsets_at(self, timestamp_ms: int) -> dict[Position, int]:
        """The first offset of each partition whose record timestamp is at or after the time (else its end)."""
        consumer = await self._start()
        found = await consumer.offsets_for_times({tp: timestamp_ms for tp in self._partitions})
        _, end = await self.bounds()
        return {(tp.topic, tp.partition): (o.offset if o is not None else end[(tp.topic, tp.partition)])
                for tp, o in found.items()}

    async def batches(self, start: dict[Position, int], end: dict[Position, int],
                      max_records: int) -> AsyncIterator[tuple[list[LogRecord], dict[Position, int]]]:
        consumer = await self._start()
        pending: dict[TopicPartition, int] = {}
        for tp in self._partitions:
            begin, stop = start.get((tp.topic, tp.partition), 0), end.get((tp.topic, tp.partition), 0)
            if begin < stop:
                consumer.seek(tp, begin)
                pending[tp] = stop
            else:
                consumer.pause(tp)
        while pending:
            fetched = await consumer.getmany(*pending, timeout_ms=1000, max_records=max_records)
            records: list[LogRecord] = []
            for tp, items in fetched.items():
                stop = pending.get(tp, 0)
                records += [_from_kafka(r) for r in items if r.offset < stop]
            positions: dict[Position, int] = {}
            for tp in list(pending):
                position = min(await consumer.position(tp), pending[tp])
                positions[(tp.topic, tp.partition)] = position
                if position >= pending[tp]:
                    consumer.pause(tp)
                    del pending[tp]
            yield records, positions

    async def close(self) -> None:
        if self._started and self._consumer is not None:
            await self._consumer.stop()
        self._started, self._consumer, self._partitions = False, None, []


async def partitions_of(bootstrap: str, topics: list[str]) -> dict[str, list[int]]:
    """Partitions of each existing topic (a topic nobody created yet holds no history)."""
    admin = AIOKafkaAdminClient(**kafka_access(bootstrap).options)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {d["topic"]: sorted(p["partition"] for p in d.get("partitions", ())) for d in described
            if d.get("error_code") == 0}


def _from_kafka(record: Any) -> LogRecord:
    return LogRecord(record.topic, record.partition, record.offset, record.key, record.value,
                     tuple(record.headers or ()), record.timestamp)


# ---------------------------------------------------------------------------------------------- memory

class MemoryLog:
    """Envelopes held in memory as one partition of encoded records (tests, small exports)."""

    description = "memory"

    def __init__(self, envelopes: Iterable[Envelope[Any]], topic: str = "memory") -> None:
        self.records: list[LogRecord] = []
        for envelope in envelopes:
            record = encode(envelope)
            self.records.append(LogRecord(topic, 0, len(self.records), record.key, record.value, tuple(record.headers),
                                          int(envelope.time.timestamp() * 1000)))
        self.position: Position = (topic, 0)

    async def bounds(self) -> tuple[dict[Position, int], dict[Position, int]]:
        return {self.position: 0}, {self.position: len(self.records)}

    async def batches(self, start: dict[Position, int], end: dict[Position, int],
                      max_records: int) -> AsyncIterator[tuple[list[LogRecord], dict[Position, int]]]:
        position, stop = start.get(self.position, 0), end.get(self.position, 0)
        while position < stop:
            chunk = self.records[position:min(position + max_records, stop)]
            position += len(chunk)
            yield chunk, {self.position: position}

    async def close(self) -> None:
        return None


# ---------------------------------------------------------------------------------------------- archive

def encode_headers(headers: Iterable[tuple[str, bytes]]) -> str:
    """Headers as JSON text; values base64 so that any bytes survive."""
    return json.dumps([[k, base64.b64encode(v or b"").decode()] for k, v in headers])


def decode_headers(text: str) -> tuple[tuple[str, bytes], ...]:
    return tuple((k, base64.b64decode(v)) for k, v in json.loads(text))


ARCHIVE_TABLE = "archive"


class ArchiveLog:
    """The archiver's copy (table `archive`), read by table reflection: the archive is the archiver's
    store, and this module only needs its documented columns."""

    def __init__(self, engine: Engine, topics: Iterable[str]) -> None:
        self.engine = engine
        self.topics = list(topics)
        self.description = f"archive {engine.url.render_as_string(hide_password=True)}"
        self._table: Table | None = None

    @property
    def table(self) -> Table:
        if self._table is None:
            self._table = Table(ARCHIVE_TABLE, MetaData(), autoload_with=self.engine)
        return self._table

    async def bounds(self) -> tuple[dict[Position, int], dict[Position, int]]:
        a = self.table
        query = (select(a.c.topic, a.c.partition, func.min(a.c.offset), func.max(a.c.offset))
                 .where(a.c.topic.in_(self.topics)).group_by(a.c.topic, a.c.partition))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return ({(t, p): lo for t, p, lo, _ in rows}, {(t, p): hi + 1 for t, p, _, hi in rows})

    async def batches(self, start: dict[Position, int], end: dict[Position, int],
                      max_records: int) -> AsyncIterator[tuple[list[LogRecord], dict[Position, int]]]:
        a = self.table
        for (topic, partition), stop in sorted(end.items()):
            position = start.get((topic, partition), 0)
            while position < stop:
                query = (select(a).where(and_(a.c.topic == topic, a.c.partition == partition, a.c.offset >= position,
                                              a.c.offset < stop)).order_by(a.c.offset).limit(max_records))
                with self.engine.connect() as conn:
                    rows = conn.execute(query).mappings().all()
                if not rows:
                    break
                position = rows[-1]["offset"] + 1
                yield [_from_archive(r) for r in rows], {(topic, partition): position}

    async def close(self) -> None:
        return None


def _from_archive(row: Any) -> LogRecord:
    return LogRecord(row["topic"], row["partition"], row["offset"], row["key"], row["value"],
                     decode_headers(row["headers"]), row["timestamp_ms"])
