"""CPU per event of each stage of a rebuild's load phase, each timed alone over a bench log, without a profiler.

The load phase of `services.projections.rebuild` decodes each record, makes its Fact, builds its timeline row and
inserts the rows. This runs those same functions over the records a `cityops bench --dump-log FILE` run wrote,
stage by stage, with the collector off as it is during a rebuild (services/common/collector.py), and prints the
best of N rounds per stage. What the load phase costs beyond their sum is its bookkeeping per batch:

    PYTHONPATH=. .venv/bin/python benchmarks/rebuild_stages.py --log /tmp/run.jsonl [--rounds 5]
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from projections_offline import DumpLog
from replay_micro import hold_out_of_collections, load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="rebuild-stages-"))
    try:
        _time_stages(args.log, args.rounds, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _time_stages(log: Path, rounds: int, scratch: Path) -> None:
    from services.common.direct_sql import insert_ignoring_stored
    from services.common.store import make_engine
    from services.projections.facts import Fact
    from services.projections.logsource import decode_wanted
    from services.projections.migrate import upgrade
    from services.projections.rebuild import _WANTED
    from services.projections.settings import ProjectionsSettings
    from services.projections.store import TIMELINE
    from services.projections.timeline import timeline_row

    source = DumpLog(load(log), ProjectionsSettings(state_dir=scratch).projected_topics())
    records = [r for part in source.parts.values() for r in part]
    hold_out_of_collections()
    gc.disable()
    best: dict[str, float] = {}

    def timed(stage: str, work: Callable[[], Any]) -> Any:
        started = time.process_time()
        out = work()
        best[stage] = min(best.get(stage, float("inf")), time.process_time() - started)
        return out

    for n in range(rounds):
        decoded, _ = timed("decode and validate (codec.decode)", lambda: decode_wanted(records, _WANTED))
        facts = timed("the Fact", lambda d=decoded: [Fact.from_envelope(e) for _, e in d])
        rows = timed("the timeline row", lambda f=facts: [timeline_row(x) for x in f])
        engine = make_engine(f"sqlite:///{scratch / f'round{n}.db'}")
        upgrade(engine)
        timed("its INSERT and the commit", lambda e=engine, r=rows: _insert(e, TIMELINE, r, insert_ignoring_stored))
        engine.dispose()
    events = len(decoded)
    print(f"{len(records)} records, {events} events; best of {rounds} rounds, CPU per event:")
    for stage, seconds in best.items():
        print(f"  {stage}: {seconds / events * 1e6:.1f} us")
    print(f"  total: {sum(best.values()) / events * 1e6:.1f} us")


def _insert(engine: Any, table: Any, rows: list[dict[str, Any]], insert: Callable[..., int]) -> None:
    with engine.begin() as connection:
        for start in range(0, len(rows), 5000):  # the rebuild's batch
            insert(connection, table, rows[start:start + 5000])


if __name__ == "__main__":
    main()
