"""CPU of one batch's reads, through SQLAlchemy and on SQLite's cursor (services.common.direct_sql.select_rows).

A batch of one event reads its ticket's rows with a handful of SELECTs (sla: the clocks, the ledger facts and the
ticket's row; projections: the ticket's timeline). At batches of a few records these per-statement costs are most of
a batch. This times each statement three ways on the same store (SQLAlchemy's execution; the cursor with the json
module parsing JSON columns; the cursor with the stores' own parser, orjson), interleaved in rounds so that the
machine's drift touches them alike, and checks that all three return the same rows.

Stores: the scratch stores `replay_micro.py --keep-state DIR` leaves (sla.db, projections.db):

    PYTHONPATH=. .venv/bin/python benchmarks/replay_micro.py --log run.jsonl --service sla --keep-state /tmp/ks_sla
    PYTHONPATH=. .venv/bin/python benchmarks/replay_micro.py --log run.jsonl --service projections --keep-state /tmp/ks_proj
    PYTHONPATH=. .venv/bin/python benchmarks/select_cpu.py --sla /tmp/ks_sla/sla.db --projections /tmp/ks_proj/projections.db
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _queries(sla_db: Path | None, projections_db: Path | None) -> list[tuple[str, Any, Any, str, str]]:
    """(name, engine, statement, IN parameter, a query giving the tickets to ask for)."""
    from services.common.batch_state import rows_where_in
    from services.common.store import make_engine
    from services.projections import store as projections_store
    from services.sla import models as sla

    out = []
    if sla_db:
        engine = make_engine(f"sqlite:///{sla_db}")
        tickets = "SELECT DISTINCT ticket_id FROM sla_timers"
        out += [("sla: clocks of a ticket", engine, sla._TIMERS_OF_TICKETS, "tickets", tickets),
                ("sla: ledger facts of a ticket", engine, sla._FACTS_OF_TICKETS, "tickets", tickets),
                ("sla: the ticket's row", engine, rows_where_in(sla.TICKETS_TABLE, "ticket_id"), "keys", tickets)]
    if projections_db:
        engine = make_engine(f"sqlite:///{projections_db}")
        out.append(("projections: timeline of a ticket", engine, projections_store._FACTS_OF_TICKETS, "tickets",
                    "SELECT DISTINCT ticket_id FROM proj_timeline"))
    return out


def _cpu_per_call(read: Callable[[Any, list[str]], Any], connection: Any, tickets: list[str]) -> float:
    start = time.process_time()
    for ticket in tickets:
        read(connection, [ticket])
    return (time.process_time() - start) / len(tickets) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sla", type=Path, help="an sla store (sla.db)")
    ap.add_argument("--projections", type=Path, help="a projections store (projections.db)")
    ap.add_argument("--tickets", type=int, default=500, help="tickets read one by one per round")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    if not (args.sla or args.projections):
        ap.error("give --sla or --projections (or both)")
    from services.common.direct_sql import select_rows
    from services.common.store import make_engine

    for name, engine, statement, param, tickets_sql in _queries(args.sla, args.projections):
        def through_sqlalchemy(connection: Any, keys: list[str], statement: Any = statement, param: str = param) -> Any:
            return [tuple(row) for row in connection.execute(statement, {param: keys})]

        def on_the_cursor(connection: Any, keys: list[str], statement: Any = statement, param: str = param) -> Any:
            return select_rows(connection, statement, {param: keys})

        # The same store through a second engine whose JSON columns are parsed by the json module (the stores'
        # engines use orjson: store.read_json), to show what the parser alone is worth.
        json_module = make_engine(str(engine.url))
        json_module.dialect._json_deserializer = json.loads  # type: ignore[attr-defined]  # create_engine's json_deserializer
        with engine.begin() as connection, json_module.begin() as plain_json:  # read on the cursor inside a transaction
            tickets = [t for (t,) in connection.exec_driver_sql(tickets_sql).all()][:args.tickets]
            for ticket in tickets[:50]:
                read = through_sqlalchemy(connection, [ticket])
                if read != on_the_cursor(connection, [ticket]) or read != on_the_cursor(plain_json, [ticket]):
                    raise SystemExit(f"{name}: the paths read different rows for {ticket}")
            times: dict[str, list[float]] = {"sqlalchemy": [], "cursor, json module": [], "cursor": []}
            for _ in range(args.rounds):
                times["sqlalchemy"].append(_cpu_per_call(through_sqlalchemy, connection, tickets))
                times["cursor, json module"].append(_cpu_per_call(on_the_cursor, plain_json, tickets))
                times["cursor"].append(_cpu_per_call(on_the_cursor, connection, tickets))
        engine.dispose()
        json_module.dispose()
        medians = {way: statistics.median(t) for way, t in times.items()}
        print(f"{name}: {len(tickets)} tickets x {args.rounds} rounds, CPU per read (median of rounds): "
              + ", ".join(f"{way} {m:,.0f} us ({m / medians['sqlalchemy']:.2f}x)" for way, m in medians.items())
              + "; every round: " + " ".join("/".join(f"{t[i]:.0f}" for t in times.values()) for i in range(args.rounds)))


if __name__ == "__main__":
    main()
