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
import re
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


TICKET_ID = re.compile(rb"T-[0-9A-F]{16}")
UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def renamed(records: list[Rec], n: int) -> list[Rec]:
    """The same records as other tickets and events: the first hex digit of every ticket id and UUID (event,
    correlation, causation ids) is moved on by `n` (mod 16), consistently in keys, values and headers, so a pass is
    the same mix of records as the log's, applied on top of the stores the passes before it filled."""
    lower, upper = b"0123456789abcdef", b"0123456789ABCDEF"

    def shifted(digit: int, alphabet: bytes) -> bytes:
        return alphabet[(alphabet.index(digit) + n) % 16:][:1]

    def rename(raw: bytes) -> bytes:
        raw = TICKET_ID.sub(lambda m: b"T-" + shifted(m.group(0)[2], upper) + m.group(0)[3:], raw)
        return UUID.sub(lambda m: shifted(m.group(0)[0], lower) + m.group(0)[1:], raw)

    return [Rec(r.topic, r.partition, r.offset, rename(r.key), rename(r.value),
                [(k, rename(v)) for k, v in r.headers], r.timestamp) for r in records]


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


async def run(pipeline: Any, records: list[Rec], batch: int, report_every: int = 0) -> tuple[int, float, float]:
    """Every record of the pipeline's topics in batches; with `report_every`, the CPU per record of each such
    stretch of the log as it goes: whether a record costs more as the store fills."""
    mine = [r for r in records if r.topic in set(pipeline.topics)]
    started, cpu = time.perf_counter(), time.process_time()
    stretch_cpu, stretch_start = cpu, 0
    for i in range(0, len(mine), batch):
        await pipeline.handle_records(mine[i:i + batch])
        done = min(i + batch, len(mine))
        if report_every and (done - stretch_start >= report_every or done == len(mine)):
            now = time.process_time()
            print(f"  records {stretch_start:,}-{done:,}: {(now - stretch_cpu) / (done - stretch_start) * 1e6:,.0f} us CPU/record",
                  flush=True)
            stretch_cpu, stretch_start = now, done
    return len(mine), time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", type=Path, required=True)
    ap.add_argument("--service", required=True)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--limit", type=int, default=0, help="only the first N records of the log")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--passes", type=int, default=1,
                    help="apply the log this many times, each pass as other tickets (renamed ids): CPU per record by pass, "
                         "the same mix each time, so growth is the stores' size")
    ap.add_argument("--report-every", type=int, default=0,
                    help="print the CPU per record of every N records handled (does a record cost more as the store fills?)")
    ap.add_argument("--keep-state", type=Path, help="keep the service's scratch store in this new directory (to compare two trees' results)")
    ap.add_argument("--model-cache", type=Path, default=Path(__file__).resolve().parents[1] / ".cache" / "bench")
    ap.add_argument("--no-startup-freeze", action="store_true",
                    help="A/B: leave the service's startup heap to the collector's full scans (tools/run.py freezes it)")
    ap.add_argument("--gc-full-pass-every-s", type=float, default=None,
                    help="A/B: the services' setting of that name (default: the service's own, 600 s for the read side, "
                         "0 for the rest; 0 = batches' survivors left to the collector)")
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
            from services.common.collector import (
                freeze_batch_survivors,
                freeze_batch_survivors_as_configured,
                freeze_startup_heap,
            )

            freeze_startup_heap()  # as `cityops service run` does once the service has started
            if args.gc_full_pass_every_s is None:
                freeze_batch_survivors_as_configured(p.settings for p in pipelines)  # as `cityops service run`
            else:
                freeze_batch_survivors(args.gc_full_pass_every_s)
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
            for extra in range(1, args.passes):
                again = renamed(records, extra)
                hold_out_of_collections()  # this pass's copy of the log is the benchmark's too
                n, secs, cpu = asyncio.run(run(p, again, args.batch, args.report_every))
                del again
                print(f"{args.service}/{p.name} pass {extra} (before the log itself): {n} records, "
                      f"{cpu / max(n, 1) * 1e6:,.0f} us CPU/record", flush=True)
            n, secs, cpu = asyncio.run(run(p, records, args.batch, args.report_every))
            print(f"{args.service}/{p.name}: {n} records, batches of {args.batch}: {secs:.2f}s wall, {cpu:.2f}s CPU = "
                  f"{cpu / max(n, 1) * 1e6:,.0f} us CPU/record ({n / cpu if cpu else 0:,.0f} records per CPU-second); "
                  f"stats {p.stats}")
        print(f"garbage collector: {pauses}")
        gc.unfreeze()  # what the frozen batches' survivors held as reference cycles, found by one last full pass
        print(f"a final full pass found {gc.collect()} unreachable objects")
        if profiler:
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False, show_all=False))
    finally:
        if not args.keep_state:
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
