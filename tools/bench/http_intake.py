"""Phase 6: POST /tickets from concurrent clients against the intake HTTP API."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from tools.bench.config import BenchConfig
from tools.bench.hub import BenchHub
from tools.bench.kafka_io import Watcher
from tools.bench.measure import latency_summary
from tools.bench.workload import TextPool, demo_locations


async def http_phase(hub: BenchHub, watcher: Watcher, pool: TextPool, cfg: BenchConfig) -> dict[str, Any]:
    import httpx

    rng = random.Random(11)
    locations = demo_locations()
    base = f"http://127.0.0.1:{cfg.http_port}"
    latencies: list[float] = []
    ticket_ids: list[str] = []
    errors = 0
    stop_at = time.monotonic() + cfg.http_s
    limits = httpx.Limits(max_connections=cfg.http_concurrency, max_keepalive_connections=cfg.http_concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.monotonic() < stop_at:
            text, category, loc = pool.complaint(rng, locations)
            body = {"text": text, "location": loc, "caller_phone": f"138{rng.randrange(10 ** 8):08d}", "caller_name": "bench"}
            t = time.perf_counter()
            try:
                r = await client.post("/tickets", json=body)
            except httpx.HTTPError:
                errors += 1
                continue
            if r.status_code == 202:
                latencies.append(time.perf_counter() - t)
                ticket_ids.append(r.json()["ticket_id"])
            else:
                errors += 1

    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits, headers=hub.credentials.bearer("app")) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(cfg.http_concurrency)))
        elapsed = time.perf_counter() - started
    closed = await watcher.wait_closed(ticket_ids, cfg.drain_timeout_s, hub)
    return {"seconds": round(elapsed, 2), "concurrency": cfg.http_concurrency, "accepted": len(latencies), "errors": errors,
            "requests_per_s": round(len(latencies) / elapsed, 1), "latency": latency_summary(latencies), "closed": closed,
            "client": "httpx in the benchmark process (its CPU counts against the same 2 cores)"}
