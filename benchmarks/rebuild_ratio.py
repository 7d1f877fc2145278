"""Rebuild events/s against a bare read of the same log, on SQLite and PostgreSQL, without Kafka.

Encodes a synthetic history (tools.importers.synthetic) into Kafka records held in memory, then
measures, in one run:

* `bare`: reading every record of the log and touching its key, value and headers (what a consumer
  that does nothing costs in Python; a real broker read adds the fetch);
* `rebuild`: services.projections.rebuild.rebuild over the same records into a fresh database;

and prints the ratio and the checksum (equal on every store: the rebuild is the same projection).

    PYTHONPATH=. .venv/bin/python benchmarks/rebuild_ratio.py --tickets 2000 [--pg URL] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from replay_micro import hold_out_of_collections

Position = tuple[str, int]


class MemoryLog:
    """Encoded records of a history, spread over partitions by ticket as the producers key them."""

    description = "memory"

    def __init__(self, envelopes: list[Any], partitions: int = 3) -> None:
        from zlib import crc32

        from contracts import codec
        from services.projections.logsource import LogRecord

        self.parts: dict[Position, list[Any]] = {}
        for envelope in envelopes:
            record = codec.encode(envelope)
            tp = ("cityops.tickets", crc32(record.key) % partitions)
            part = self.parts.setdefault(tp, [])
            part.append(LogRecord(tp[0], tp[1], len(part), record.key, record.value, tuple(record.headers), 0))

    async def bounds(self) -> tuple[dict[Position, int], dict[Position, int]]:
        return {tp: 0 for tp in self.parts}, {tp: len(p) for tp, p in self.parts.items()}

    async def batches(self, start: dict[Position, int], end: dict[Position, int],
                      max_records: int) -> AsyncIterator[tuple[list[Any], dict[Position, int]]]:
        cursors = {tp: start.get(tp, 0) for tp in sorted(end)}
        share = max(max_records // max(len(cursors), 1), 1)
        while any(cursors[tp] < end[tp] for tp in cursors):
            records, positions = [], {}
            for tp, position in cursors.items():
                chunk = self.parts[tp][position:min(position + share, end[tp])]
                records += chunk
                positions[tp] = position + len(chunk)
            cursors.update(positions)
            yield records, positions

    async def close(self) -> None:
        return None


def bare_read(log: MemoryLog) -> float:
    started = time.perf_counter()
    n = 0
    for part in log.parts.values():
        for r in part:
            n += len(r.key) + len(r.value) + len(r.headers)
    return time.perf_counter() - started


def run(url: str, log: MemoryLog, batch: int) -> tuple[Any, float, str]:
    from services.common.store import make_engine
    from services.projections.rebuild import checksum, rebuild

    engine = make_engine(url)
    cpu = time.process_time()
    report = asyncio.run(rebuild(engine, log, batch=batch))
    cpu = time.process_time() - cpu
    digest = checksum(engine).digest
    engine.dispose()
    return report, cpu, digest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickets", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--pg", help="an empty PostgreSQL database URL (postgresql+psycopg://...)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--sort", default="cumulative", help="profile order (cumulative, tottime)")
    args = ap.parse_args()
    from services.common.logs import configure_logging
    from tools.importers.synthetic import SyntheticHistory

    configure_logging("WARNING", json=False)
    log = MemoryLog(SyntheticHistory(args.tickets, seed=7).envelopes())
    records = sum(len(p) for p in log.parts.values())
    hold_out_of_collections()
    scratch = tempfile.TemporaryDirectory(prefix="rebuild-ratio-")  # removed when the run ends
    targets = [("sqlite", f"sqlite:///{scratch.name}/r.db")]
    if args.pg:
        targets.append(("postgresql", args.pg))
    for name, url in targets:
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            async def inline(func: Any, /, *a: Any, **kw: Any) -> Any:
                return func(*a, **kw)
            asyncio.to_thread = inline  # type: ignore[assignment]  # the database work, on the profiled thread
            profiler.enable()
        report, cpu, digest = run(url, log, args.batch)
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats(args.sort).print_stats(40)
        print(f"{name}: {report.records_read} records, {report.tickets_folded} tickets in {report.seconds:.2f}s "
              f"(load {report.load_seconds:.2f}s, fold {report.fold_seconds:.2f}s, indexes {getattr(report, 'index_seconds', 0):.2f}s; {report.events_loaded} loaded) = {report.events_per_second:,.0f} "
              f"events/s; {cpu:.2f}s CPU; checksum {digest[:16]}")
    bare = bare_read(log)
    print(f"bare read of the same {records} records in memory: {records / bare:,.0f} records/s")
    scratch.cleanup()


if __name__ == "__main__":
    main()
