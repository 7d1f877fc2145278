"""Offline cost of one service's consume -> apply -> publish loop, without Kafka.

Feeds the records a `cityops bench --dump-log FILE` run wrote through one service's own
EventPipeline (built by its create_app, so with its real handler spec and dependencies) on a scratch SQLite
store, with a broker stand-in whose publish returns at once. Prints microseconds per record, and
with --profile a pyinstrument profile. Used to find and check the pipeline's per-event costs:

    .venv/bin/python benchmarks/replay_micro.py --log /tmp/run.jsonl --service evaluate --profile
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    timestamp: int


def load(path: Path) -> list[Rec]:
    out = []
    with path.open() as f:
        for line in f:
            d = json.loads(line)
            b = base64.b64decode
            out.append(Rec(d["topic"], d["partition"], d["offset"], b(d["key"]), b(d["value"]),
                           [(k, b(v)) for k, v in d["headers"]], d["ts"]))
    out.sort(key=lambda r: (r.timestamp, r.topic, r.partition, r.offset))
    return out


class FakeBroker:
    def __init__(self) -> None:
        self.published = 0

    async def publish(self, *args: Any, **kwargs: Any) -> asyncio.Future[None]:
        self.published += 1
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def pipelines_of(service: str, state: Path) -> list[Any]:
    os.environ["CITYOPS_STATE_DIR"] = str(state)
    os.environ["CITYOPS_KAFKA_BOOTSTRAP"] = "127.0.0.1:1"  # never connected
    from sqlmodel import SQLModel

    from tools.run import load_factory

    if service == "intake":
        from services.intake.app import create_app

        api = create_app()
        found = [api.state.pipelines["status"]]
    else:
        app = load_factory(service)()
        found = [app.context.get("pipeline")]
    for p in found:
        if service in ("projections", "archiver"):  # their schema is Alembic's
            from importlib import import_module

            import_module(f"services.{service}.migrate").upgrade(p.engine)
            from services.common.store import OutboxRecord, ParkedEvent, ProcessedEvent

            SQLModel.metadata.create_all(p.engine, tables=[t.__table__ for t in (ProcessedEvent, OutboxRecord, ParkedEvent)])
        else:
            SQLModel.metadata.create_all(p.engine)
        p.broker = FakeBroker()
    return found


def hold_out_of_collections() -> None:
    """The whole log held in memory is this benchmark's doing (a read from Kafka holds one batch): freeze it so
    the collector's full passes during the rebuild do not scan it, as they would not in `cityops replay rebuild`."""
    gc.collect()
    gc.freeze()


class CollectorPauses:
    """The cyclic garbage collector's passes from now on: how many of each generation, and their seconds."""

    def __init__(self) -> None:
        self.count, self.seconds, self._started = [0, 0, 0], [0.0, 0.0, 0.0], 0.0
        gc.callbacks.append(self._seen)

    def _seen(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.count[info["generation"]] += 1
            self.seconds[info["generation"]] += time.perf_counter() - self._started

    def __str__(self) -> str:
        return (f"{sum(self.seconds):.3f}s in {sum(self.count)} passes (by generation: "
                + ", ".join(f"{n} in {s:.3f}s" for n, s in zip(self.count, self.seconds, strict=True)) + ")")


async def run(pipeline: Any, records: list[Rec], batch: int) -> tuple[int, float, float]:
    mine = [r for r in records if r.topic in set(pipeline.topics)]
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(mine), batch):
        await pipeline.handle_records(mine[i:i + batch])
    return len(mine), time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", type=Path, required=True)
    ap.add_argument("--service", required=True)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--limit", type=int, default=0, help="only the first N records of the log")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--keep-state", type=Path, help="keep the service's scratch store in this new directory (to compare two trees' results)")
    ap.add_argument("--model-cache", type=Path, default=Path(__file__).resolve().parents[1] / ".cache" / "bench")
    ap.add_argument("--no-startup-freeze", action="store_true",
                    help="A/B: leave the service's startup heap to the collector's full scans (tools/run.py freezes it)")
    args = ap.parse_args()
    records = load(args.log)
    if args.limit:
        records = records[:args.limit]
    hold_out_of_collections()  # the dump held in memory is this benchmark's, not the service's
    state = args.keep_state or Path(tempfile.mkdtemp(prefix="replay-micro-"))
    state.mkdir(parents=True, exist_ok=True)
    for model in args.model_cache.glob("triage-default-*.model"):
        shutil.copy(model, state / model.name)
    try:
        from services.common.logs import configure_logging

        configure_logging("WARNING", json=False)
        pipelines = pipelines_of(args.service, state)
        if not args.no_startup_freeze:
            from services.common.collector import freeze_startup_heap

            freeze_startup_heap()  # as `cityops service run` does once the service has started
        pauses = CollectorPauses()
        profiler = None
        if args.profile:
            from pyinstrument import Profiler

            async def inline(func: Any, /, *a: Any, **kw: Any) -> Any:
                return func(*a, **kw)

            asyncio.to_thread = inline  # the pipeline's database work, on the profiled thread

            profiler = Profiler(interval=0.0005, async_mode="disabled")
            profiler.start()
        for p in pipelines:
            n, secs, cpu = asyncio.run(run(p, records, args.batch))
            print(f"{args.service}/{p.name}: {n} records, batches of {args.batch}: {secs:.2f}s wall, {cpu:.2f}s CPU = "
                  f"{cpu / max(n, 1) * 1e6:,.0f} us CPU/record ({n / cpu if cpu else 0:,.0f} records per CPU-second); "
                  f"stats {p.stats}")
        print(f"garbage collector: {pauses}")
        if profiler:
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False, show_all=False))
    finally:
        if not args.keep_state:
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
