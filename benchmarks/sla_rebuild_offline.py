"""CPU of the sla service's rebuild over a `cityops bench --dump-log` log, without Kafka.

Runs `services.sla.rebuild`'s apply, mark and reschedule steps (what `cityops sla rebuild` does once it has read the log) over
the dumped records into a fresh SQLite store, and prints CPU per record and the garbage collector's passes.
`--collector-on` leaves automatic collection on, as before stop 26 (A/B of services/common/collector.py):

    PYTHONPATH=. .venv/bin/python benchmarks/sla_rebuild_offline.py --log RUN.jsonl [--collector-on]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from replay_micro import CollectorPauses, hold_out_of_collections, load


@contextmanager
def collector_left_on() -> Iterator[object]:
    from services.common.collector import BulkCollector

    class Unmarked(BulkCollector):
        def unit_done(self) -> None:
            self.units += 1

    yield Unmarked(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", type=Path, required=True)
    ap.add_argument("--collector-on", action="store_true", help="A/B: automatic collection on, nothing frozen")
    args = ap.parse_args()
    from contracts.topics import SLA
    from services.common.collector import bulk_collection
    from services.common.logs import configure_logging
    from services.common.store import create_tables
    from services.sla import rebuild
    from services.sla.app import load_catalogue_or_none
    from services.sla.handlers import TOPICS, build_runtime
    from services.sla.models import TABLES, make_store_engine
    from services.sla.settings import SlaSettings

    configure_logging("WARNING", json=False)
    records = load(args.log)
    hold_out_of_collections()  # the dump held in memory is this benchmark's; the CLI holds its own read of the log
    scratch = tempfile.TemporaryDirectory(prefix="sla-rebuild-")
    settings = SlaSettings(state_dir=Path(scratch.name))
    engine = make_store_engine(settings.store_url())
    create_tables(engine, TABLES)
    runtime = build_runtime(settings, load_catalogue_or_none(settings.catalogue_file()))
    workflow = [r for r in records if r.topic in set(TOPICS)]
    own = [r for r in records if r.topic == SLA.name]
    pauses, cpu = CollectorPauses(), time.process_time()
    with (collector_left_on() if args.collector_on else bulk_collection()) as collector:
        applied = rebuild._apply(engine, settings, runtime, workflow, collector)  # type: ignore[arg-type]
        marks = rebuild._mark(engine, runtime, own)
        rebuild._reschedule(engine, runtime, collector)  # type: ignore[arg-type]
    cpu = time.process_time() - cpu
    print(f"sla rebuild: {len(workflow)} records, {applied} applied, {marks} marks; {cpu:.2f}s CPU = "
          f"{cpu / max(len(workflow), 1) * 1e6:,.0f} us CPU/record; garbage collector: {pauses}")
    engine.dispose()
    scratch.cleanup()


if __name__ == "__main__":
    main()
