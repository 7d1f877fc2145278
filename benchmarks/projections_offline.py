"""Offline cost and checksum of the projections, live pipeline and rebuild, without Kafka.

Reads the records a `cityops bench --dump-log FILE` run wrote and

* `live`: feeds them through the projections service's own EventPipeline (as
  benchmarks/replay_micro.py does) into a scratch SQLite store, then prints CPU per record and the
  projections' checksum;
* `rebuild`: runs `services.projections.rebuild.rebuild` over the same records (each partition in
  offset order, as KafkaLog gives them) into a fresh SQLite database, then prints events/s (wall and
  CPU) and the checksum.

The two checksums must be equal, and equal before and after a change to the projections:

    .venv/bin/python benchmarks/projections_offline.py --log /tmp/run.jsonl rebuild [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from replay_micro import Rec, hold_out_of_collections, load, pipelines_of


class DumpLog:
    """The dumped records of the projected topics as a LogSource: each partition in offset order."""

    description = "dump"

    def __init__(self, records: list[Rec], topics: list[str]) -> None:
        from services.projections.logsource import LogRecord

        self.parts: dict[tuple[str, int], list[Any]] = defaultdict(list)
        for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
            if r.topic in topics:
                self.parts[(r.topic, r.partition)].append(
                    LogRecord(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers), r.timestamp))

    async def bounds(self) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
        return ({tp: p[0].offset for tp, p in self.parts.items()}, {tp: p[-1].offset + 1 for tp, p in self.parts.items()})

    async def batches(self, start: dict[tuple[str, int], int], end: dict[tuple[str, int], int],
                      max_records: int) -> AsyncIterator[tuple[list[Any], dict[tuple[str, int], int]]]:
        # Round-robin over the partitions, one fetch each, as a consumer's getmany interleaves them.
        cursors = {tp: start.get(tp, 0) for tp in sorted(end)}
        share = max(max_records // max(len(cursors), 1), 1)
        while any(cursors[tp] < end[tp] for tp in cursors):
            records, positions = [], {}
            for tp, position in cursors.items():
                chunk = [r for r in self.parts[tp] if position <= r.offset < end[tp]][:share]
                records += chunk
                positions[tp] = chunk[-1].offset + 1 if chunk else position
            cursors.update(positions)
            yield records, positions

    async def close(self) -> None:
        return None


def run_live(records: list[Rec], state: Path, batch: int) -> tuple[int, float, str]:
    from services.projections.rebuild import checksum

    state.mkdir(parents=True, exist_ok=True)
    (pipeline,) = pipelines_of("projections", state)
    mine = [r for r in records if r.topic in set(pipeline.topics)]
    cpu = time.process_time()

    async def feed() -> None:
        for i in range(0, len(mine), batch):
            await pipeline.handle_records(mine[i:i + batch])

    asyncio.run(feed())
    cpu = time.process_time() - cpu
    return len(mine), cpu, checksum(pipeline.engine).digest


def run_rebuild(records: list[Rec], state: Path, batch: int) -> tuple[Any, float, str]:
    from services.common.store import make_engine
    from services.projections.rebuild import checksum, rebuild
    from services.projections.settings import ProjectionsSettings

    state.mkdir(parents=True, exist_ok=True)
    settings = ProjectionsSettings(state_dir=state)
    source = DumpLog(records, settings.projected_topics())
    engine = make_engine(f"sqlite:///{state / 'rebuild.db'}")
    cpu = time.process_time()
    report = asyncio.run(rebuild(engine, source, batch=batch or settings.rebuild_batch, fold_batch=settings.fold_batch))
    cpu = time.process_time() - cpu
    return report, cpu, checksum(engine).digest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["live", "rebuild", "both"])
    ap.add_argument("--log", type=Path, required=True)
    ap.add_argument("--batch", type=int, default=0, help="records per batch (default: 500 live, the setting for rebuild)")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    records = load(args.log)
    hold_out_of_collections()
    state = Path(tempfile.mkdtemp(prefix="proj-offline-"))
    profiler = None
    try:
        from services.common.logs import configure_logging

        configure_logging("WARNING", json=False)
        if args.profile:
            from pyinstrument import Profiler

            async def inline(func: Any, /, *a: Any, **kw: Any) -> Any:
                return func(*a, **kw)

            asyncio.to_thread = inline  # the database work, on the profiled thread
            profiler = Profiler(interval=0.0005, async_mode="disabled")
            profiler.start()
        if args.mode in ("live", "both"):
            n, cpu, digest = run_live(records, state / "live", args.batch or 500)
            print(f"live: {n} records, {cpu:.2f}s CPU = {cpu / max(n, 1) * 1e6:,.0f} us CPU/record; checksum {digest}")
        if args.mode in ("rebuild", "both"):
            report, cpu, digest = run_rebuild(records, state / "rebuild", args.batch)
            print(f"rebuild: {report.records_read} records ({report.events_loaded} events, {report.tickets_folded} tickets) "
                  f"in {report.seconds:.2f}s wall = {report.events_per_second:,.0f} events/s; {cpu:.2f}s CPU = "
                  f"{report.records_read / cpu if cpu else 0:,.0f} events per CPU-second "
                  f"(load {report.load_seconds:.2f}s, fold {report.fold_seconds:.2f}s); checksum {digest}")
        if profiler:
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False, show_all=False))
    finally:
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
