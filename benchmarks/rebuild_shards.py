"""How fast could a rebuild go on both cores? The ceiling of a rebuild sharded by ticket, measured.

The rebuild (`cityops replay rebuild`) runs on one core. This measures what splitting it by ticket over
several processes would give at best, without building that split: the synthetic history of
benchmarks/rebuild_ratio.py is divided by ticket id into N shards, and N processes rebuild one shard each,
at the same moment, each into a database of its own. That is an upper bound for a real sharded rebuild:
no process reads records it then skips, none waits for another's write lock (SQLite has one writer per
file), and nothing reads Kafka (the records are in memory).

In one run it measures, interleaved over `--rounds`:

* `one`: the unsharded rebuild of the whole history, one process (as `cityops replay rebuild`);
* `shards`: the N processes together, from the moment all are released to the moment the last ends.

It proves the shards are the same projection: the checksum's digest of a table is a sum of row hashes, so
the shards' sums must add up to the unsharded rebuild's (a projection that read across tickets would not).

    PYTHONPATH=. .venv/bin/python benchmarks/rebuild_shards.py --tickets 3000 [--shards 2] [--rounds 3] [--pg URL]

`--pg URL` names a database whose user may CREATE DATABASE: each rebuild gets a fresh database, dropped after.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rebuild_ratio import MemoryLog, run
from replay_micro import hold_out_of_collections

_MODULUS = 1 << 256


def shard_of(ticket_id: str, shards: int) -> int:
    return zlib.crc32(ticket_id.encode()) % shards


def shard_log(tickets: int, shard: int, shards: int) -> MemoryLog:
    from tools.importers.synthetic import SyntheticHistory

    return MemoryLog([e for e in SyntheticHistory(tickets, seed=7).envelopes() if shard_of(e.ticket_id, shards) == shard])


def _rebuild_shard(url: str, tickets: int, shard: int, shards: int, batch: int, ready: Any, go: Any,
                   results: Any) -> None:
    """A shard's process: build its part of the history, wait until every shard is ready, rebuild, report.

    A process of its own (spawned, not forked from this one) that reads only its records, as a real shard would:
    a forked child paid 15-60 % more CPU for the same shard, copying the pages of the parent's heap it touched."""
    from services.common.logs import configure_logging

    configure_logging("WARNING", json=False)
    log = shard_log(tickets, shard, shards)
    hold_out_of_collections()
    ready.release()
    go.wait()
    report, cpu, digest = run(url, log, batch)
    results.put((report.records_read, report.seconds, cpu, digest))


def combined_tables(urls: list[str]) -> dict[str, tuple[int, int]]:
    """Each view table's rows and row-hash sum over the shards' databases."""
    from services.common.store import make_engine
    from services.projections.rebuild import checksum

    totals: dict[str, tuple[int, int]] = {}
    for url in urls:
        engine = make_engine(url)
        for table, (rows, digest) in checksum(engine).tables.items():
            count, total = totals.get(table, (0, 0))
            totals[table] = (count + rows, (total + int(digest, 16)) % _MODULUS)
        engine.dispose()
    return totals


def tables_of(url: str) -> dict[str, tuple[int, int]]:
    return combined_tables([url])


class Databases:
    """Fresh databases for each rebuild: files in a scratch folder, or PostgreSQL databases dropped at the end."""

    def __init__(self, pg: str | None) -> None:
        self.pg = pg
        self.scratch = tempfile.TemporaryDirectory(prefix="rebuild-shards-")
        self.made: list[str] = []

    def fresh(self, name: str) -> str:
        if not self.pg:
            return f"sqlite:///{self.scratch.name}/{name}.db"
        from tools.postgres import create_database

        url = create_database(self.pg, f"rebuild_shards_{name}")
        self.made.append(url)
        return url

    def close(self) -> None:
        if self.pg:
            from tools.postgres import drop_database

            for url in self.made:
                drop_database(self.pg, url)
        self.scratch.cleanup()


def sharded_round(tickets: int, urls: list[str], batch: int) -> tuple[float, float, float, int]:
    """(wall seconds from release to the last shard's end, the longest shard's rebuild seconds as the report
    counts them, CPU seconds of all shards, records)."""
    context = mp.get_context("spawn")
    ready, go, results = context.Semaphore(0), context.Event(), context.Queue()
    workers = [context.Process(target=_rebuild_shard, args=(url, tickets, k, len(urls), batch, ready, go, results))
               for k, url in enumerate(urls)]
    for worker in workers:
        worker.start()
    try:
        for _ in workers:  # every shard has built its records before the clock starts
            if not ready.acquire(timeout=600):
                raise SystemExit("a shard did not get ready in 10 minutes")
        started = time.perf_counter()
        go.set()
        reports = [results.get(timeout=600) for _ in workers]
        wall = time.perf_counter() - started
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.terminate()
    if any(w.exitcode for w in workers):
        raise SystemExit(f"a shard failed: exit codes {[w.exitcode for w in workers]}")
    return wall, max(r[1] for r in reports), sum(r[2] for r in reports), sum(r[0] for r in reports)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickets", type=int, default=3000)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--pg", help="a PostgreSQL URL whose user may CREATE DATABASE")
    args = ap.parse_args()
    from services.common.logs import configure_logging
    from tools.importers.synthetic import SyntheticHistory

    configure_logging("WARNING", json=False)
    envelopes = SyntheticHistory(args.tickets, seed=7).envelopes()
    whole = MemoryLog(envelopes)
    records = sum(len(p) for p in whole.parts.values())
    shard_sizes = [sum(shard_of(e.ticket_id, args.shards) == k for e in envelopes) for k in range(args.shards)]
    print(f"{records} records, {args.tickets} tickets; shards of {shard_sizes} records; "
          f"{'PostgreSQL' if args.pg else 'SQLite'}")
    hold_out_of_collections()
    databases = Databases(args.pg)
    try:
        for round_ in range(1, args.rounds + 1):
            url = databases.fresh(f"one_{round_}")
            report, cpu, _ = run(url, whole, args.batch)
            one = report.records_read / report.seconds
            expected = tables_of(url)
            urls = [databases.fresh(f"r{round_}_s{k}") for k in range(args.shards)]
            wall, longest, shard_cpu, shard_records = sharded_round(args.tickets, urls, args.batch)
            same = combined_tables(urls) == expected and shard_records == records
            # The rate counts the rebuild's own seconds (load, fold, indexes) as the report does, not the
            # schema's creation; the wall clock, which includes it and the processes' start, is printed too.
            print(f"round {round_}: one process {one:,.0f} events/s ({report.seconds:.2f}s, {cpu:.2f}s CPU); "
                  f"{args.shards} shards {shard_records / longest:,.0f} events/s ({longest:.2f}s, {wall:.2f}s wall, "
                  f"{shard_cpu:.2f}s CPU) = {shard_records / longest / one:.2f}x; "
                  f"same rows as one process: {'yes' if same else 'NO'}")
    finally:
        databases.close()


if __name__ == "__main__":
    main()
