"""Phases 3 and 4: intake -> assignment latency at a fixed offered load, below saturation, and on
the NYC 311 arrival curve."""

from __future__ import annotations

from typing import Any

from tools.bench.config import BenchConfig
from tools.bench.hub import BenchHub
from tools.bench.kafka_io import Watcher, feed, make_producer, unclosed_report
from tools.bench.measure import latency_summary
from tools.bench.workload import Submission


async def latency_phase(hub: BenchHub, watcher: Watcher, subs: list[Submission], linger_ms: int,
                        cfg: BenchConfig) -> dict[str, Any]:
    from contracts.topics import INTAKE

    producer = make_producer(hub.bootstrap, linger_ms)
    await producer.start()
    try:
        fed_s = await feed(producer, subs, watcher, INTAKE.name)
    finally:
        await producer.stop()
    closed = await watcher.wait_closed([s.ticket_id for s in subs], cfg.drain_timeout_s, hub)
    seen, published, missing = watcher.latencies(subs)
    duration = subs[-1].at if subs else 0.0
    return {"tickets": len(subs), "offered_per_s": round(len(subs) / duration, 1) if duration else None,
            "feed_seconds": round(fed_s, 2), "assigned": len(seen), "missing_assignment": missing, "closed": closed,
            "not_closed": await unclosed_report(cfg.http_port, watcher, [s.ticket_id for s in subs]),
            "intake_to_assignment_seen": latency_summary(seen),
            "intake_to_assignment_published": latency_summary(published)}
