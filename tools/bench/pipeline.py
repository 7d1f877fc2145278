"""Phase 5: a burst of tickets fed at once; tickets closed and events on every topic per second.

Two rates come out of it. The workflow's: tickets closed over the time from the first submit to the last close.
The whole hub's: the same tickets over the time until every consumer group (the read side too: sla, projections,
archiver) had read everything the burst wrote. The hub's capacity is the second: a year's replay is done only
when the views are; a plan that closes tickets faster by starving the read side does not count as faster."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from tools.bench.config import BenchConfig
from tools.bench.hub import BenchHub
from tools.bench.kafka_io import (
    LagWatch,
    Watcher,
    assigned_consumer,
    feed,
    make_producer,
    total_end_offsets,
    unclosed_report,
)
from tools.bench.workload import Submission


async def pipeline_phase(hub: BenchHub, watcher: Watcher, lags: LagWatch, subs: list[Submission], linger_ms: int,
                         cfg: BenchConfig, all_topics: list[str]) -> dict[str, Any]:
    """A burst of tickets fed at once; tickets closed/s and events/s on every topic while saturated."""
    from contracts.topics import INTAKE

    offsets = await assigned_consumer(hub.bootstrap, all_topics, from_end=True)
    tps = list(offsets.assignment())
    samples: list[tuple[float, int]] = []

    async def sample() -> None:
        while True:
            samples.append((time.time(), await total_end_offsets(offsets, tps)))
            await asyncio.sleep(0.5)

    producer = make_producer(hub.bootstrap, linger_ms)
    await producer.start()
    sampler = asyncio.create_task(sample())
    try:
        await asyncio.sleep(0.6)
        first_sent = time.time()
        fed_s = await feed(producer, subs, watcher, INTAKE.name)
        closed = await watcher.wait_closed([s.ticket_id for s in subs], cfg.drain_timeout_s * 1.5, hub)
        caught_up, lag = await lags.wait_caught_up(cfg.drain_timeout_s)
        await asyncio.sleep(1.0)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        await producer.stop()
        await offsets.stop()
    close_times = sorted(watcher.closed[s.ticket_id] for s in subs if s.ticket_id in watcher.closed)
    n = len(subs)
    out: dict[str, Any] = {"tickets": n, "closed": closed, "feed_seconds": round(fed_s, 2),
                           "not_closed": await unclosed_report(cfg.http_port, watcher, [s.ticket_id for s in subs])}
    if not close_times:
        return out
    last = close_times[-1]
    out["seconds_to_last_close"] = round(last - first_sent, 2)
    # The burst's tickets closed over the time from the first submit to the last close: every stage
    # works on the backlog at once, so this is the hub's capacity (fill and drain included).
    out["tickets_per_s"] = round(len(close_times) / (last - first_sent), 1)
    # For reference: the rate between the 10th and 90th percent of closures (the last stage's pace).
    lo, hi = close_times[int(0.1 * (len(close_times) - 1))], close_times[int(0.9 * (len(close_times) - 1))]
    span = hi - lo
    out["closing_window_tickets_per_s"] = round((int(0.9 * (len(close_times) - 1)) - int(0.1 * (len(close_times) - 1))) / span, 1) if span > 0 else None

    def events_at(t: float) -> float:
        before = [s for s in samples if s[0] <= t]
        after = [s for s in samples if s[0] >= t]
        if not before:
            return samples[0][1]
        if not after:
            return samples[-1][1]
        (t0, e0), (t1, e1) = before[-1], after[0]
        return e0 if t1 == t0 else e0 + (e1 - e0) * (t - t0) / (t1 - t0)

    base = samples[0][1]
    workflow_events = events_at(last) - base
    out["workflow_tickets_per_s"] = out["tickets_per_s"]
    out["workflow_events_per_s"] = round(workflow_events / (last - first_sent), 1)
    if caught_up is None:  # the read side never caught up: no whole-hub rate
        out["lag_when_given_up"] = lag
        out["events_total"] = int(workflow_events)
        out["events_per_ticket"] = round(workflow_events / n, 2)
        out["events_per_s"] = out["tickets_per_s"] = None
        return out
    end = max(caught_up, last)
    total_events = events_at(end) - base
    out["seconds_to_caught_up"] = round(end - first_sent, 2)
    out["events_total"] = int(total_events)
    out["events_per_ticket"] = round(total_events / n, 2)
    out["events_per_s"] = round(total_events / (end - first_sent), 1)
    out["tickets_per_s"] = round(len(close_times) / (end - first_sent), 1)
    # Busiest second-long stretch of the run, from the samples: how fast the log grows at the peak.
    rates = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(samples, samples[2:]) if b[0] > a[0]]
    out["events_per_s_peak"] = round(max(rates), 1) if rates else None
    return out
