"""Intake's sealing transaction alone: CPU per submission of `keystore.seal_many` over batches like the HTTP load
makes (16 submissions, each a first-time caller), on a SQLite store in a temp dir, no HTTP and no broker. The
steadiest way to compare two trees' sealing on a busy machine; run each tree in turn, several times:

    cd TREE && PYTHONPATH=TREE python benchmarks/seal_batch_cpu.py [--keyed] [--batches 300] [--size 16]

`--keyed`: every submission carries an Idempotency-Key (its claim is written and read back in the same batch).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from services.common.store import make_engine
from services.intake.keystore import seal_many
from tests.harness.group_sealing import SECRET, prepare, submission

WARM_UP = 30


def batches(count: int, size: int, keyed: bool) -> list[list]:
    return [[submission(f"路灯不亮了 {b}-{i}", "钱七", f"138{b:04d}{i:04d}", key=f"app:k-{b}-{i}" if keyed else None)
             for i in range(size)] for b in range(count)]


def measure(count: int, size: int, keyed: bool) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="seal-cpu-") as scratch:
        engine = prepare(make_engine(f"sqlite:///{scratch}/intake.db"))
        try:
            work = batches(count + WARM_UP, size, keyed)
            for batch in work[:WARM_UP]:
                seal_many(engine, SECRET, batch)
            cpu = time.process_time()
            for batch in work[WARM_UP:]:
                results = seal_many(engine, SECRET, batch)
                assert not any(isinstance(r, Exception) for r in results), results
            cpu = time.process_time() - cpu
        finally:
            engine.dispose()
    return {"batches": count, "size": size, "keyed": keyed, "cpu_us_per_submission": round(cpu / (count * size) * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keyed", action="store_true")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--size", type=int, default=16)
    args = parser.parse_args()
    print(json.dumps(measure(args.batches, args.size, args.keyed)))


if __name__ == "__main__":
    main()
