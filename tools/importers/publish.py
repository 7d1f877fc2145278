"""Publishing many envelopes fast: send without waiting for each acknowledgement, await them in chunks.

One awaited acknowledgement per record costs an order of magnitude in throughput; here a
chunk of records is handed to the producer, then all its acknowledgements are awaited together,
so nothing is reported as imported before the broker has it.
"""

from __future__ import annotations

import asyncio
import csv
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text

from contracts.codec import encode
from contracts.envelope import Envelope
from contracts.topics import TopicSpec
from services.common.kafka import ensure_topics, kafka_access
from services.common.settings import KafkaClientSettings

from .domain import AreaMapper, SkipRow, row_to_envelope
from .mapping import CsvMapping


@dataclass
class ImportReport:
    source: str
    topic: str
    rows: int = 0
    published: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    first: datetime | None = None
    last: datetime | None = None
    record_time: str = "original"

    @property
    def per_second(self) -> float:
        return self.published / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "topic": self.topic, "rows": self.rows, "published": self.published,
                "skipped": dict(self.skipped), "seconds": round(self.seconds, 3),
                "events_per_second": round(self.per_second, 1), "first": self.first, "last": self.last,
                "record_time": self.record_time}


def read_csv(path: Path) -> Iterator[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        yield from csv.DictReader(handle)


def count_rows(path: Path) -> int:
    with open(path, "rb") as handle:
        return max(sum(1 for _ in handle) - 1, 0)


def envelopes_from_rows(mapping: CsvMapping, rows: Iterable[dict[str, str]], areas: AreaMapper,
                        report: ImportReport) -> Iterator[Envelope[Any]]:
    for row in rows:
        report.rows += 1
        try:
            envelope = row_to_envelope(mapping, row, areas)
        except SkipRow as exc:
            report.skipped[str(exc)] += 1
            continue
        report.first = min(report.first or envelope.time, envelope.time)
        report.last = max(report.last or envelope.time, envelope.time)
        yield envelope


async def topic_keeps_forever(kafka: KafkaClientSettings | str, topic: str) -> bool:
    """Whether the topic never deletes old records (records stamped years ago would go at once otherwise)."""
    admin = AIOKafkaAdminClient(**kafka_access(kafka).options)
    await admin.start()
    try:
        described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    for response in described:
        for resource in response.resources:
            for entry in resource[4]:
                if entry[0] == "retention.ms":
                    return entry[1] == "-1"
    return False


class _RateColumn(ProgressColumn):
    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} ev/s" if speed else "- ev/s", style="progress.data.speed")


def _progress_bar(enabled: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=Console(stderr=True),
                    disable=not enabled)


async def publish(kafka: KafkaClientSettings | str, specs: list[TopicSpec], envelopes: Iterable[Envelope[Any]] | AsyncIterator[Envelope[Any]],
                  report: ImportReport, *, chunk: int = 5000, keep_record_time: bool = True, total: int | None = None,
                  progress: bool = False, topic_for: Callable[[Envelope[Any]], str] | None = None) -> ImportReport:
    """Send every envelope (key = ticket id) to `specs[0]`, or to `topic_for(envelope)`; await the
    acknowledgements chunk by chunk."""
    await ensure_topics(kafka, specs)
    if keep_record_time:
        keeps = [await topic_keeps_forever(kafka, spec.name) for spec in specs]
        keep_record_time = all(keeps)  # original stamps on a topic with retention would be deleted right away
    report.record_time = "original" if keep_record_time else "now"
    producer = AIOKafkaProducer(**kafka_access(kafka).options, acks="all", enable_idempotence=True, linger_ms=20,
                                max_batch_size=512 * 1024, max_request_size=8 * 1024 * 1024)
    bar = _progress_bar(progress)
    task = bar.add_task(f"import {report.source}", total=total)
    started = time.perf_counter()
    bar.start()
    await producer.start()
    try:
        pending: list[asyncio.Future[Any]] = []
        async for envelope in _aiter(envelopes):
            record = encode(envelope)
            stamp = int(envelope.time.timestamp() * 1000) if keep_record_time else None
            pending.append(await producer.send(topic_for(envelope) if topic_for else specs[0].name, value=record.value,
                                               key=record.key, headers=record.headers, timestamp_ms=stamp))
            if len(pending) >= chunk:
                await _settle(pending, report, lambda n: bar.advance(task, n))
        await _settle(pending, report, lambda n: bar.advance(task, n))
    finally:
        await producer.stop()
        bar.stop()
        report.seconds = time.perf_counter() - started
    return report


async def _settle(pending: list[asyncio.Future[Any]], report: ImportReport, advance: Callable[[int], None]) -> None:
    if pending:
        await asyncio.gather(*pending)
        report.published += len(pending)
        advance(len(pending))
        pending.clear()


async def _aiter(items: Iterable[Any] | AsyncIterator[Any]) -> AsyncIterator[Any]:
    if hasattr(items, "__aiter__"):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
