"""Offset commits off the batch's path: a consumer's positions are committed while it fetches the next batch.

A batch's effects are durable before its offsets are committed (its events applied and its outputs in the
outbox, in one transaction, then published and confirmed), so a commit that is late or lost only means the
batch may be delivered again, and the pipeline's ledger skips what it already applied. Awaiting the commit
before the next fetch cost a broker round trip per batch on every hop (about 12 ms at p50 on the benchmark
machine); here at most one commit per consumer is in flight, and the positions of batches handled meanwhile
wait for it and go in the next one (they include the earlier ones).
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka.structs import OffsetAndMetadata, TopicPartition

from .logs import get_logger

log = get_logger(__name__)


def next_positions(records: Sequence[Any]) -> dict[TopicPartition, int]:
    """Per partition, the offset after the batch's last record: what a commit of this batch stores."""
    out: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        out[tp] = max(out.get(tp, 0), r.offset + 1)
    return out


def stamps_by_topic(records: Sequence[Any]) -> dict[str, list[int]]:
    """Per topic, the timestamps (ms, set by their producers) of the batch's records; records that carry none
    (a replay's, a test's: 0 or missing) are left out."""
    out: dict[str, list[int]] = {}
    for r in records:
        stamp = getattr(r, "timestamp", None)
        if isinstance(stamp, int) and stamp > 0:
            out.setdefault(r.topic, []).append(stamp)
    return out


def in_time_order(records: Sequence[Any]) -> Sequence[Any]:
    """The batch's records with its partitions interleaved by record timestamp, each partition's own order kept.

    A fetch hands its records over grouped by partition. Kafka orders records only within a partition, and
    complaints are keyed by ticket, so two complaints sent a few milliseconds apart land on different
    partitions and, when one fetch brings both (a consumer that has just joined its group, or has a
    backlog), the later one could be applied first: discover would then take it as the master of the
    earlier. Across partitions the producers' timestamps are the best order there is; this is also how
    Kafka Streams chooses, taking the partition whose next record is the oldest. Records with the same
    timestamp, or none (a replay's, a test's: time 0), keep the order they came in."""
    runs: dict[tuple[str, int], list[tuple[int, int, Any]]] = {}
    for position, record in enumerate(records):
        runs.setdefault((record.topic, record.partition), []).append((getattr(record, "timestamp", None) or 0, position, record))
    if len(runs) < 2:
        return records
    # (time, position): equal times keep the batch's order, and records are never compared themselves.
    return [record for _, _, record in heapq.merge(*runs.values())]


class BackgroundCommitter:
    """Commits positions with at most one commit in flight; `timed(seconds)` hears how long each took."""

    def __init__(self, name: str, timed: Callable[[float], None]) -> None:
        self._name, self._timed = name, timed
        self._waiting: dict[TopicPartition, int] = {}
        self._consumer: Any = None
        self._running: asyncio.Task[None] | None = None

    def commit_soon(self, consumer: Any, positions: dict[TopicPartition, int]) -> None:
        for tp, offset in positions.items():
            self._waiting[tp] = max(self._waiting.get(tp, 0), offset)
        self._consumer = consumer
        if self._running is None:
            self._running = asyncio.create_task(self._commit_waiting())

    async def flush(self) -> None:
        """Wait for the commits under way (at shutdown, so a clean stop redelivers nothing)."""
        while self._running is not None:
            await asyncio.shield(self._running)

    async def _commit_waiting(self) -> None:
        try:
            while self._waiting:
                positions, self._waiting = self._waiting, {}
                started = time.perf_counter()
                try:
                    await self._consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in positions.items()})
                except Exception as exc:  # noqa: BLE001  # revoked in a rebalance, broker away: redelivered, and skipped
                    log.warning("offsets_not_committed", service=self._name, error=repr(exc))
                else:
                    self._timed(time.perf_counter() - started)
        finally:
            self._running = None
