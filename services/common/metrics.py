"""A service's health in Prometheus' terms: lag, batch latency, what was applied, dead-lettered and parked,
and what waits in its store (parked rows, outbox depth, timers due).

Cost per event is nothing: counters move once per batch (`batch_handled`), and the store's gauges are
counted when someone scrapes, not when events flow. Each service has its own registry (`ServiceMetrics`),
so tests can build many services in one process, and serves it:

* a consumer service (a FastStream app) on `metrics_port` (0 = off) with `serve_metrics`, a small HTTP
  server bound to `metrics_host` (127.0.0.1 by default): no token there, the metrics carry no personal
  data (counts by consumer, topic and partition only);
* an HTTP service (intake, the bridge) on its metrics port too, and at `GET /metrics` of its API, where,
  like every route but the health check, it needs a token (`METRICS_READERS`).

Metric names (every one labelled with the pipeline's `consumer` name):
`cityops_consumer_lag{topic,partition}`, `cityops_batch_seconds` (histogram), `cityops_stage_seconds{stage}`
(histogram, STAGES), `cityops_record_wait_seconds{topic}` (histogram),
`cityops_batches_failed_total`, `cityops_records_read_total`, `cityops_records_applied_total`, `cityops_records_dead_lettered_total`,
`cityops_records_parked_total`, `cityops_parked_events`, `cityops_outbox_records`, and the service's own
store gauges (sla: `cityops_timers_due`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from fastapi import Depends, FastAPI
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine
from sqlmodel import col

from .auth import Role, access
from .logs import get_logger
from .store import OutboxRecord, ParkedEvent

log = get_logger(__name__)

# How far a batch may be from instant: a 20 ms poll is the floor, a stuck store the ceiling.
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# One stage of a hop at low load is a few milliseconds; a queue behind a burst, seconds.
STAGE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
# Where a batch's time goes, in the order it passes: `queue` from its oldest record's timestamp (set by the
# producer) to the handler's start, and its two parts: `poll` to the poll that returned the batch (the broker, the
# fetch's gathering, the client's buffer while the previous batch was handled) and `dispatch` from that poll to the
# handler (the framework, and the process's other tasks ahead on the event loop); then `decode`, `apply` (handlers
# and the transaction with the outbox), `publish` (sent and every acknowledgement awaited), `commit` (the offsets).
# `cityops bench` reads them per step.
STAGES = ("queue", "poll", "dispatch", "decode", "apply", "publish", "commit")

# (topic, partition) -> the partition's high watermark (the offset the next record will get), or None if unknown.
Highwater = Callable[[str, int], int | None]
StoreCount = Callable[[Connection], Mapping[str, float]]


@dataclass(frozen=True)
class BatchCounts:
    """What one batch did, as the pipeline counted it."""

    applied: int = 0
    dead_lettered: int = 0
    parked: int = 0


class ServiceMetrics:
    """One service's metrics, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.lag = Gauge("cityops_consumer_lag", "Records on the partition not yet handled (high watermark - next offset).",
                         ["consumer", "topic", "partition"], registry=r)
        self.batch_seconds = Histogram("cityops_batch_seconds", "Time to handle one batch: apply, publish, confirm.",
                                       ["consumer"], buckets=BATCH_BUCKETS, registry=r)
        self.stage_seconds = Histogram("cityops_stage_seconds", "Time of one batch in each stage: " + ", ".join(STAGES) + ".",
                                       ["consumer", "stage"], buckets=STAGE_BUCKETS, registry=r)
        self.record_wait_seconds = Histogram(
            "cityops_record_wait_seconds", "Each record's wait, by topic, from its timestamp to the poll that returned it "
            "(to its batch's handler when that moment is unknown).", ["consumer", "topic"], buckets=STAGE_BUCKETS, registry=r)
        self.failed = Counter("cityops_batches_failed", "Batches that raised (redelivered).", ["consumer"], registry=r)
        self.applied = Counter("cityops_records_applied", "Events applied.", ["consumer"], registry=r)
        self.read = Counter("cityops_records_read", "Records fetched, those of event types the consumer skips undecoded "
                            "included (what the benchmark's CPU budget divides by).", ["consumer"], registry=r)
        self.dead_lettered = Counter("cityops_records_dead_lettered", "Records sent to their topic's DLQ.", ["consumer"], registry=r)
        self.parked = Counter("cityops_records_parked", "Events parked until what they depend on arrives.", ["consumer"], registry=r)
        self._store = _StoreGauges()
        r.register(self._store)

    # ------------------------------------------------------------------ per batch

    def batch_started(self, consumer: str, records: Sequence[Any], highwater: Highwater | None) -> None:
        """The lag including this batch: a batch that keeps failing shows as lag that does not go down."""
        if highwater is not None:
            self._set_lag(consumer, _first_offsets(records), highwater)

    def batch_handled(self, consumer: str, records: Sequence[Any], highwater: Highwater | None, seconds: float,
                      counts: BatchCounts) -> None:
        self.batch_seconds.labels(consumer).observe(seconds)
        self.failed.labels(consumer)  # the series exists at 0, so an alert on its rate sees the first failure
        self.read.labels(consumer).inc(len(records))
        for counter, value in ((self.applied, counts.applied), (self.dead_lettered, counts.dead_lettered),
                               (self.parked, counts.parked)):
            counter.labels(consumer).inc(value)
        if highwater is not None:
            self._set_lag(consumer, {tp: offset + 1 for tp, offset in _last_offsets(records).items()}, highwater)

    def stage(self, consumer: str, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(consumer, stage).observe(max(0.0, seconds))  # clocks of two processes: never below 0

    def record_waits(self, consumer: str, stamps_by_topic: Mapping[str, Sequence[int]], until: float) -> None:
        """Each record's wait from its timestamp (ms) to `until` (epoch seconds), by topic: one observation per record
        (about 1 µs each), the one per-record cost of the metrics."""
        for topic, stamps in stamps_by_topic.items():
            observe = self.record_wait_seconds.labels(consumer, topic).observe
            for stamp in stamps:
                observe(max(0.0, until - stamp / 1000))  # clocks of two processes: never below 0

    def batch_failed(self, consumer: str, seconds: float) -> None:
        self.batch_seconds.labels(consumer).observe(seconds)
        self.failed.labels(consumer).inc()

    def _set_lag(self, consumer: str, next_offsets: Mapping[tuple[str, int], int], highwater: Highwater) -> None:
        for (topic, partition), next_offset in next_offsets.items():
            end = highwater(topic, partition)
            if end is not None:
                self.lag.labels(consumer, topic, str(partition)).set(max(0, end - next_offset))

    # ------------------------------------------------------------------ the store

    def watch_store(self, engine: Engine, consumer: str) -> None:
        """Count this consumer's parked events and outbox rows in `engine` at each scrape."""
        self._store.watch(engine, consumer)

    def add_store_gauge(self, name: str, documentation: str, engine: Engine, count: StoreCount) -> None:
        """A gauge of the service's own store, counted at each scrape: `count(connection)` gives values by consumer."""
        self._store.add(name, documentation, engine, count)

    def text(self) -> bytes:
        """The exposition text (what GET /metrics answers)."""
        return generate_latest(self.registry)


def highwater_of(consumer: Any) -> Highwater:
    """The high watermarks an aiokafka consumer learnt from its last fetch (None for a partition it does not hold)."""
    def highwater(topic: str, partition: int) -> int | None:
        try:
            end = consumer.highwater(TopicPartition(topic, partition))
        except Exception:  # revoked in a rebalance since the fetch
            return None
        return int(end) if end is not None else None
    return highwater


def _first_offsets(records: Sequence[Any]) -> dict[tuple[str, int], int]:
    first: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        first[key] = min(first.get(key, r.offset), r.offset)
    return first


def _last_offsets(records: Sequence[Any]) -> dict[tuple[str, int], int]:
    last: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        last[key] = max(last.get(key, r.offset), r.offset)
    return last


def parked_and_outbox(consumers: set[str]) -> list[tuple[str, str, StoreCount]]:
    """The bookkeeping gauges every pipeline has, by consumer."""
    def count_by_consumer(table: Any) -> StoreCount:
        def count(conn: Connection) -> Mapping[str, float]:
            rows = conn.execute(select(col(table.consumer), func.count()).group_by(col(table.consumer))).all()
            counted = {consumer: float(n) for consumer, n in rows if consumer in consumers}
            return {consumer: counted.get(consumer, 0.0) for consumer in consumers}  # 0, not absent
        return count
    return [("cityops_parked_events", "Events parked now, waiting for what they depend on.", count_by_consumer(ParkedEvent)),
            ("cityops_outbox_records", "Produced records not yet confirmed by the broker (outbox depth).", count_by_consumer(OutboxRecord))]


class _StoreGauges(Collector):
    """Gauges read from the services' stores when scraped; a store that cannot answer is left out (and logged)."""

    def __init__(self) -> None:
        self._engines: dict[Engine, set[str]] = {}
        self._extra: list[tuple[str, str, Engine, StoreCount]] = []
        self._lock = threading.Lock()

    def watch(self, engine: Engine, consumer: str) -> None:
        with self._lock:
            self._engines.setdefault(engine, set()).add(consumer)

    def add(self, name: str, documentation: str, engine: Engine, count: StoreCount) -> None:
        with self._lock:
            self._extra.append((name, documentation, engine, count))

    def describe(self) -> list[Any]:
        return []  # read only at collect time: describing would query the stores at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            sources = [(name, doc, engine, count) for engine, consumers in self._engines.items()
                       for name, doc, count in parked_and_outbox(set(consumers))] + list(self._extra)
        families: dict[str, GaugeMetricFamily] = {}
        for name, doc, engine, count in sources:
            family = families.setdefault(name, GaugeMetricFamily(name, doc, labels=["consumer"]))
            try:
                with engine.connect() as conn:
                    values = count(conn)
            except Exception as exc:  # a store being created or locked: no sample this time
                log.debug("metrics_store_unreadable", metric=name, error=repr(exc))
                continue
            for consumer, value in sorted(values.items()):
                family.add_metric([consumer], value)
        yield from families.values()


# ---------------------------------------------------------------------------------------------- serving

class MetricsServer:
    """The metrics endpoint of one process: GET /metrics on its own port, no token (no personal data there)."""

    def __init__(self, metrics: ServiceMetrics, host: str, port: int) -> None:
        self.metrics, self.host, self.port = metrics, host, port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            self._server, self._thread = start_http_server(self.port, addr=self.host, registry=self.metrics.registry)
        except OSError as exc:
            # Metrics are for watching the work, not part of it: a port taken by another process (a second hub
            # on this machine) costs this process its endpoint, never its service.
            log.error("metrics_not_served", url=f"http://{self.host}:{self.port}/metrics", error=repr(exc))
            return
        log.info("metrics_serving", url=f"http://{self.host}:{self.port}/metrics")

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def serve_metrics(metrics: ServiceMetrics, settings: Any) -> MetricsServer | None:
    """Start the metrics endpoint the settings ask for (`metrics_port`, 0 = none); the caller stops it."""
    port = int(getattr(settings, "metrics_port", 0) or 0)
    if port <= 0:
        return None
    server = MetricsServer(metrics, str(getattr(settings, "metrics_host", "127.0.0.1")), port)
    server.start()
    return server


# Who may read GET /metrics on an HTTP service's API (its own metrics port needs no token).
METRICS_READERS = access(Role.supervisor, Role.auditor)


def metrics_route(api: FastAPI, metrics: ServiceMetrics) -> None:
    """GET /metrics on an HTTP service's own API, behind a token like every route but the health check."""

    @api.get("/metrics", dependencies=[Depends(METRICS_READERS)], tags=["health"],
             summary="Prometheus metrics (lag, batch latency, dead letters, parked, outbox depth)")
    async def metrics_text() -> Response:
        body = await asyncio.to_thread(metrics.text)  # the store gauges query the database
        return Response(body, media_type=CONTENT_TYPE_LATEST)
