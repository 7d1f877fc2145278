"""Phase 2, the ceiling: raw aiokafka produce, consume and produce+consume on the same broker with
the records our events really are, and one raw hop's latency at the fixed offered load."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from tools.bench.kafka_io import assigned_consumer, header_value, make_producer
from tools.bench.probe_hop import HOP_TOPIC, relay_latency


async def harvest_records(bootstrap: str, topics: Sequence[str]) -> tuple[list[tuple[bytes, bytes, list[tuple[str, bytes]]]], dict[str, Any]]:
    """Every record the warm-up wrote (all topics), as the raw benchmark's record mix."""
    consumer = await assigned_consumer(bootstrap, topics, from_end=False)
    try:
        tps = list(consumer.assignment())
        ends = await consumer.end_offsets(tps)
        want = sum(ends.values())
        got: list[Any] = []
        deadline = time.monotonic() + 30
        while len(got) < want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                got += records
    finally:
        await consumer.stop()
    mix = [(r.key or b"", r.value or b"", list(r.headers)) for r in got if not r.topic.endswith(".dlq")]
    sizes: dict[str, list[int]] = {}
    for key, value, headers in mix:
        t = (header_value(headers, "ce_type") or b"?").decode()
        sizes.setdefault(t, []).append(len(key) + len(value) + sum(len(k) + len(v) for k, v in headers))
    every = [s for v in sizes.values() for s in v]
    summary = {"records": len(mix), "mean_bytes": round(sum(every) / len(every), 1) if every else 0,
               "min_bytes": min(every, default=0), "max_bytes": max(every, default=0),
               "by_type": {t: {"count": len(v), "mean_bytes": round(sum(v) / len(v))} for t, v in sorted(sizes.items())}}
    return mix, summary


async def raw_ceiling(bootstrap: str, mix: list[tuple[bytes, bytes, list[tuple[str, bytes]]]], n: int, hop_rate: float,
                      hop_s: float, linger_ms: int, progress: Callable[[str], None], broker_pid: int | None = None) -> dict[str, Any]:
    from contracts.topics import TopicSpec
    from services.common.kafka import ensure_topics

    topics = {"produce": "bench.raw.v1", "pipe": "bench.pipe.v1", "hop": HOP_TOPIC}
    await ensure_topics(bootstrap, [TopicSpec(t, "benchmark scratch", ()) for t in topics.values()])
    out: dict[str, Any] = {"records": n, "linger_ms": linger_ms, "partitions": 3,
                           "producer": "aiokafka, acks=all, idempotent (as the services)"}
    rng = random.Random(7)
    records = mix * max(1, (n // max(len(mix), 1)) + 1)
    rng.shuffle(records)
    records = records[:n]
    total_bytes = sum(len(k) + len(v) + sum(len(a) + len(b) for a, b in h) for k, v, h in records)
    out["mean_record_bytes"] = round(total_bytes / n, 1)

    # produce
    producer = make_producer(bootstrap, linger_ms)
    await producer.start()
    try:
        started = time.perf_counter()
        futures = []
        for key, value, headers in records:
            futures.append(await producer.send(topics["produce"], value, key=key, headers=headers))
            if len(futures) >= 20_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    out["produce_per_s"] = round(n / elapsed, 1)
    out["produce_mb_per_s"] = round(total_bytes / elapsed / 1e6, 2)
    progress(f"raw produce: {out['produce_per_s']:,.0f} records/s")

    # consume
    consumer = await assigned_consumer(bootstrap, [topics["produce"]], from_end=False)
    try:
        started = time.perf_counter()
        count = 0
        while count < n:
            batch = await consumer.getmany(timeout_ms=1000)
            count += sum(len(v) for v in batch.values())
            if not batch and time.perf_counter() - started > 120:
                break
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
    out["consume_per_s"] = round(count / elapsed, 1)
    progress(f"raw consume: {out['consume_per_s']:,.0f} records/s")

    # produce + consume at once, one process (a record's whole trip through the broker)
    consumer = await assigned_consumer(bootstrap, [topics["pipe"]], from_end=True)
    producer = make_producer(bootstrap, linger_ms)
    await producer.start()
    try:
        received = 0

        async def drain() -> None:
            nonlocal received
            while received < n:
                batch = await consumer.getmany(timeout_ms=1000)
                received += sum(len(v) for v in batch.values())

        started, cpu_started = time.perf_counter(), _cpu(broker_pid)
        reader = asyncio.create_task(drain())
        futures = []
        for key, value, headers in records:
            futures.append(await producer.send(topics["pipe"], value, key=key, headers=headers))
            if len(futures) >= 20_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
        await asyncio.wait_for(reader, timeout=180)
        elapsed, cpu_used = time.perf_counter() - started, _cpu_since(cpu_started, broker_pid)
    finally:
        await producer.stop()
        await consumer.stop()
    out["produce_consume_per_s"] = round(n / elapsed, 1)
    # What one record's trip costs in CPU when records travel in big batches: the yardstick of budget.py.
    out["produce_consume_cpu_us_per_record"] = {who: round(seconds * 1e6 / n) for who, seconds in cpu_used.items()}
    progress(f"raw produce+consume: {out['produce_consume_per_s']:,.0f} records/s")

    # one hop's latency at the fixed offered load: send -> ack, send -> seen by a consumer
    out["hop_latency"] = await relay_latency(bootstrap, topics["hop"], records, hop_rate, max(1, int(hop_rate * hop_s)),
                                             linger_ms)
    progress(f"raw hop at {hop_rate:.0f}/s: p50 {out['hop_latency']['send_to_seen']['p50_ms']} ms, "
             f"p99 {out['hop_latency']['send_to_seen']['p99_ms']} ms (ack p99 {out['hop_latency']['send_to_ack']['p99_ms']} ms)")
    return out


def _cpu(broker_pid: int | None) -> dict[str, float | None]:
    from tools.bench.measure import proc_cpu_seconds

    return {"kafka-broker": proc_cpu_seconds(broker_pid) if broker_pid else None, "client (aiokafka)": time.process_time()}


def _cpu_since(started: dict[str, float | None], broker_pid: int | None) -> dict[str, float]:
    now = _cpu(broker_pid)
    return {who: now[who] - then for who, then in started.items() if then is not None and now[who] is not None}  # type: ignore[operator]
