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


# ============================================================================================ intake alone


def complaint_bodies(pool: TextPool, n: int = 256) -> list[dict[str, Any]]:
    rng = random.Random(12)
    locations = demo_locations()
    bodies = []
    for _ in range(n):
        text, _category, loc = pool.complaint(rng, locations)
        bodies.append({"text": text, "location": loc, "caller_phone": f"138{rng.randrange(10 ** 8):08d}", "caller_name": "bench"})
    return bodies


async def load(job: dict[str, Any]) -> dict[str, Any]:
    """Run the load generator (tools/bench/loadgen.py) as its own process: its CPU is not this process's."""
    import json
    import sys

    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tools.bench.loadgen", stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate(json.dumps(job).encode())
    if proc.returncode != 0:
        raise RuntimeError(f"the load generator failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(out)
    return result


async def http_alone_phase(hub: BenchHub, bodies: list[dict[str, Any]], cfg: BenchConfig) -> dict[str, Any]:
    """Intake and the broker only (every other service stopped): the load generator's own ceiling against
    GET /health, then POST /tickets; the CPU seconds intake spent per accepted request."""
    from tools.bench.measure import CpuWatch
    from tools.hub import intake_answers

    assert hub.supervisor is not None, "started after the services' supervisor"
    hub.supervisor.start_service("intake")
    await asyncio.to_thread(hub.supervisor.wait_ready, "intake", intake_answers(f"http://127.0.0.1:{cfg.http_port}"), 180)
    try:
        base = {"host": "127.0.0.1", "port": cfg.http_port, "concurrency": cfg.http_concurrency, "seconds": cfg.http_s}
        trivial = await load({**base, "method": "GET", "path": "/health"})
        bearer = hub.credentials.bearer("app")
        with CpuWatch({"intake": hub.supervisor.pids()["intake"], "kafka-broker": hub.broker_pid or 0}) as cpu:
            tickets = await load({**base, "method": "POST", "path": "/tickets", "headers": bearer,
                                  "bodies": bodies})
        tickets.pop("ticket_ids", None)
        trivial.pop("ticket_ids", None)
        return {"client": "tools/bench/loadgen.py, its own process (raw HTTP/1.1 keep-alive)",
                "client_ceiling_get_health": trivial, "post_tickets": tickets, "cpu": cpu.report(tickets["ok"])}
    finally:
        hub.supervisor.stop("intake")
