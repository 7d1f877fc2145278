"""Phase 6: POST /tickets from concurrent clients against the intake HTTP API."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from tools.bench.config import BenchConfig
from tools.bench.hub import BenchHub
from tools.bench.kafka_io import Watcher
from tools.bench.workload import TextPool, demo_locations


async def http_phase(hub: BenchHub, watcher: Watcher, pool: TextPool, cfg: BenchConfig) -> dict[str, Any]:
    """POST /tickets inside the running hub, from the load generator's own process (loadgen.py: the benchmark
    process also runs the Kafka watcher, and an httpx client there cost as much CPU per request as intake);
    then the accepted tickets are followed to closed."""
    job = {"host": "127.0.0.1", "port": cfg.http_port, "concurrency": cfg.http_concurrency, "seconds": cfg.http_s,
           "method": "POST", "path": "/tickets", "headers": hub.credentials.bearer("app"),
           "bodies": complaint_bodies(pool, seed=11), "collect_ticket_ids": True}
    result = await load(job)
    ticket_ids = result.pop("ticket_ids", [])
    closed = await watcher.wait_closed(ticket_ids, cfg.drain_timeout_s, hub)
    return {"seconds": result["seconds"], "concurrency": cfg.http_concurrency, "accepted": result["ok"],
            "errors": result["errors"] + sum(n for status, n in result["by_status"].items() if not 200 <= int(status) < 300),
            "requests_per_s": result["requests_per_s"], "latency": result["latency"], "closed": closed,
            "client": "tools/bench/loadgen.py, its own process (raw HTTP/1.1 keep-alive)"}


# ============================================================================================ intake alone


def complaint_bodies(pool: TextPool, n: int = 256, seed: int = 12) -> list[dict[str, Any]]:
    rng = random.Random(seed)
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
