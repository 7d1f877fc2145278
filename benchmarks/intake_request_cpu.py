"""Intake's own CPU per POST /tickets, in process: ASGI calls straight into the app (no sockets, no uvicorn),
the broker replaced by `codec.encode` (what a publish serialises), a SQLite store in a temp dir, 16 requests
at a time like the bench. Deterministic enough to compare two trees on a busy machine (docs/performance.md):

    cd TREE && PYTHONPATH=TREE python benchmarks/intake_request_cpu.py 3000 [--no-startup-freeze] [--keyed]

The app's heap is frozen once its lifespan has started, as `cityops intake serve` does
(services/common/collector.py); `--no-startup-freeze` leaves it to the collector's full scans (A/B). `--keyed`:
every request carries an Idempotency-Key of its own, as an app that retries safely sends (the key's claim is
part of the sealing batch). The collector's passes during the measured requests are printed with the result.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts import codec
from domain.catalogue import load_catalogue
from services.common.collector import frozen_once_serving
from services.common.store import create_tables, make_engine
from services.intake.api import build_api
from services.intake.app import store_tables
from tests.harness.auth import bearer, verifier
from tools.bench.workload import demo_locations

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay_micro import CollectorPauses  # noqa: E402 - the benchmarks' own helper, beside this file

CONCURRENCY, WARM_UP = 16, 200


async def publish(_topic: str, envelope: Any) -> None:
    codec.encode(envelope)
    await asyncio.sleep(0)


def request_bodies(n: int) -> list[bytes]:
    rng, locations = random.Random(1), demo_locations()
    return [json.dumps({"text": f"路灯不亮了 #{i}", "location": rng.choice(locations), "caller_name": "bench",
                        "caller_phone": f"138{rng.randrange(10 ** 8):08d}"}).encode() for i in range(n)]


async def measure(n: int, freeze: bool = True, keyed: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="intake-cpu-") as scratch:
        engine = make_engine(f"sqlite:///{scratch}/intake.db")
        try:
            return await _measure(engine, n, freeze, keyed)
        finally:
            engine.dispose()


async def _measure(engine: Any, n: int, freeze: bool, keyed: bool) -> dict[str, Any]:
    create_tables(engine, store_tables())
    app = build_api(publish=publish, engine=engine, catalogue=load_catalogue(), now=lambda: datetime.now(UTC), verifier=verifier())
    if freeze:
        app = frozen_once_serving(app)
    auth = [(k.lower().encode(), v.encode()) for k, v in bearer("app", "bench-app").items()]
    statuses: dict[int, int] = {}

    async def post(body: bytes) -> None:
        key = [(b"idempotency-key", hashlib.sha256(body).hexdigest()[:32].encode())] if keyed else []
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
                 "path": "/tickets", "raw_path": b"/tickets", "query_string": b"", "root_path": "",
                 "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80),
                 "headers": [(b"host", b"x"), (b"content-type", b"application/json"),
                             (b"content-length", str(len(body)).encode()), *auth, *key]}
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.sleep(3600)  # the client stays connected
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1

        await app(scope, receive, send)

    async def connections(bodies: list[bytes]) -> None:
        async def one_connection(mine: list[bytes]) -> None:
            for body in mine:
                await post(body)
        await asyncio.gather(*(one_connection(bodies[i::CONCURRENCY]) for i in range(CONCURRENCY)))

    bodies = request_bodies(n + WARM_UP)
    async with app.router.lifespan_context(app):
        await connections(bodies[:WARM_UP])
        statuses.clear()
        pauses = CollectorPauses()
        cpu, wall = time.process_time(), time.perf_counter()
        await connections(bodies[WARM_UP:])
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"requests": n, "statuses": statuses, "cpu_us_per_request": round(cpu / n * 1e6),
            "wall_us_per_request": round(wall / n * 1e6), "startup_heap_frozen": freeze, "keyed": keyed,
            "garbage_collector": str(pauses)}


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    print(json.dumps(asyncio.run(measure(int(args[0]) if args else 3000, freeze="--no-startup-freeze" not in sys.argv,
                                         keyed="--keyed" in sys.argv))))
