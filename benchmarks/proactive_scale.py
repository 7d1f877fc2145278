"""The policy finds the person at the article's size (issue 14 point 5): 69,000 residents in 42,000 houses placed in
the generated Yantai-sized city's buildings.

    .venv/bin/python benchmarks/proactive_scale.py            # generate, validate, scan as discover does; memory
    .venv/bin/python benchmarks/proactive_scale.py --kafka    # ... and import to a broker started for it (rows/s)

Prints measured numbers only (no targets, no asserts). The scan is discover's own `_scan` on a SQLite store holding the
69,000 base records (as discover keeps them), for one day: it reads every record, runs every rule, writes the new
firings and their tickets. Memory is this process's resident set (VmRSS); the machine is shared, so wall times carry
the neighbours' load (CPU seconds beside them).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def timed(label: str, results: dict[str, float], fn):  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    results[f"{label}_s"] = round(time.perf_counter() - wall, 3)
    results[f"{label}_cpu_s"] = round(time.process_time() - cpu, 3)
    results[f"{label}_rss_mb"] = round(rss_mb(), 1)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--residents", type=int, default=69_000)
    parser.add_argument("--houses", type=int, default=42_000)
    parser.add_argument("--today", default="2026-06-01")
    parser.add_argument("--kafka", action="store_true", help="Also import into a one-node broker started for the run.")
    args = parser.parse_args()
    from sqlmodel import Session, SQLModel, create_engine

    from contracts import events as ev
    from domain.catalogue import load_catalogue
    from domain.residents.generate import generate
    from domain.residents.records import Resident, read_residents
    from services.common.handler import HandlerContext
    from services.discover.handlers import DiscoverDeps, _scan, known_tickets
    from services.discover.models import KnownTicket, ProactiveRaised, ProactiveScan, ResidentRow, WeatherAlertRow
    from services.discover.settings import DiscoverSettings
    from tools.residents_cli import _sites, base_envelope

    today = date.fromisoformat(args.today)
    results: dict[str, float] = {"residents": args.residents, "houses": args.houses, "rss_start_mb": round(rss_mb(), 1)}
    sites = timed("layout", results, lambda: _sites("yantai"))
    residents_csv, _ = timed("generate", results, lambda: generate(sites, args.residents, args.houses, 2026, today))
    lines = residents_csv.splitlines(keepends=True)
    parsed = timed("validate", results, lambda: [r for r in read_residents(lines, today) if isinstance(r, Resident)])
    results["validate_rows_per_s"] = round(len(parsed) / results["validate_s"])

    folder = Path(tempfile.mkdtemp(prefix="proactive-bench-"))
    engine = create_engine(f"sqlite:///{folder / 'discover.db'}")
    SQLModel.metadata.create_all(engine, tables=[m.__table__ for m in (KnownTicket, ResidentRow, WeatherAlertRow,  # type: ignore[attr-defined]
                                                                        ProactiveRaised, ProactiveScan)])
    records = [base_envelope(r).data for r in parsed]
    with Session(engine) as session, session.begin():
        session.bulk_save_objects([ResidentRow(resident_id=d.resident_id, grid_id=d.grid_id, record_json=d.model_dump_json())
                                   for d in records])
    del records
    deps = DiscoverDeps(load_catalogue())
    settings = DiscoverSettings(state_dir=folder)
    now = datetime.combine(today, datetime.min.time(), tzinfo=UTC)

    def scan_once(day: date) -> int:
        with Session(engine) as session, session.begin():
            ctx = HandlerContext(session=session, now=lambda: now, source="/cityops/discover", settings=settings, deps=deps)
            tickets = known_tickets(ctx)
            raised = _scan(ctx, tickets, day, now, lambda data, tid, i: _envelope(ev, data, tid))
            tickets.write()
            return len(raised)

    results["scan_first_tickets"] = timed("scan_first", results, lambda: scan_once(today))
    results["scan_again_tickets"] = timed("scan_again", results, lambda: scan_once(today))
    if args.kafka:
        results.update(import_to_kafka(residents_csv, folder, today))
    print(json.dumps(results, indent=2))


def _envelope(ev, data, ticket_id):  # type: ignore[no-untyped-def]
    from contracts.envelope import Envelope

    return Envelope.origin(data, source="/cityops/discover", ticket_id=ticket_id)


def import_to_kafka(residents_csv: str, folder: Path, today: date) -> dict[str, float]:
    from services.common.settings import KafkaClientSettings
    from tools.kafka import LocalKafka
    from tools.kafka.acls import ADMIN
    from tools.residents_cli import import_file

    node = LocalKafka(name="bench-residents", port=free_port(), fresh=True)
    node.start()
    try:
        os.environ.update({k: v for k, v in node.client_env(ADMIN).items() if k != "CITYOPS_KAFKA_BOOTSTRAP"})
        path = folder / "residents.csv"
        path.write_text(residents_csv, encoding="utf-8")
        report = import_file(path, KafkaClientSettings(kafka_bootstrap=str(node.bootstrap)), today=today)
        return {"import_rows": report["rows"], "import_s": report["seconds"], "import_rows_per_s": report["rows_per_second"],
                "import_peak_rss_mb": report["peak_rss_mb"]}
    finally:
        node.stop()


if __name__ == "__main__":
    main()
