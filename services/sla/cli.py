"""`cityops sla`: read the SLA service's store: a ticket's ledger, on-time rates per unit, the returns index."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from contracts.envelope import utcnow
from domain.holders import ledger_bounds, spans_from_facts, time_by_party
from services.common.store import create_tables, make_engine

from . import domain
from .models import TABLES, all_timers, returns_and_tickets, ticket_facts
from .settings import SlaSettings

app = typer.Typer(no_args_is_help=True, help="SLA clocks, the ledger of whose clock was running, ping-pong reports.")

DB_URL = typer.Option(None, "--db-url", help="Store of the SLA service; default its settings' store.")


def _engine(db_url: str | None) -> Engine:
    engine = make_engine(db_url or SlaSettings().store_url())
    create_tables(engine, TABLES)  # an empty store reads as empty, not as an error
    return engine


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:8.2f} h"


def _percent(value: float | None) -> str:
    return "     -" if value is None else f"{100 * value:5.1f}%"


@app.command("ledger")
def ledger(ticket: str = typer.Argument(..., help="Ticket id."), db_url: str | None = DB_URL,
           as_json: bool = typer.Option(False, "--json", help="JSON instead of a table.")) -> None:
    """Whose clock was running over a ticket's life: one line per span, then the total per party.
    An open ticket's last span runs to now."""
    with Session(_engine(db_url)) as session:
        facts = ticket_facts(session, ticket)
    if not facts:
        typer.echo(f"no events known for ticket {ticket}", err=True)
        raise typer.Exit(1)
    now = utcnow()
    spans = spans_from_facts(facts, now)
    start, end = ledger_bounds(facts, now) or (now, now)
    if as_json:
        typer.echo(json.dumps({"ticket_id": ticket, "start": start.isoformat(), "end": end.isoformat(),
                               "spans": [{"party": s.party, "start": s.start.isoformat(), "end": s.end.isoformat()}
                                         for s in spans]}, ensure_ascii=False, indent=2))
        return
    for span in spans:
        typer.echo(f"{span.start.isoformat()}  {span.end.isoformat()}  {_hours(span.duration.total_seconds())}  {span.party}")
    typer.echo("-- total per party")
    for party, total in sorted(time_by_party(spans).items(), key=lambda kv: -kv[1]):
        typer.echo(f"{_hours(total.total_seconds())}  {party}")
    typer.echo(f"{_hours((end - start).total_seconds())}  lifetime")


@app.command("rates")
def rates(db_url: str | None = DB_URL,
          min_sample: int | None = typer.Option(None, help="Flag units with fewer finished tasks; default from settings.")) -> None:
    """On-time rates per unit for the sign-for, response and resolution clocks, on the unit's own time only
    (consultation and waiting on the resident excluded, approved extensions granted). Units with too few
    finished tasks are flagged: a league table on a tiny sample is noise."""
    threshold = min_sample or SlaSettings().min_sample
    with Session(_engine(db_url)) as session:
        rows = domain.unit_rates(all_timers(session), threshold)
    typer.echo(f"{'unit':32} {'sign-for':>8} {'response':>8} {'resolve':>8} {'finished':>8} {'running':>7} {'breached':>8}")
    for row in rows:
        flag = "  (small sample)" if row.small_sample else ""
        typer.echo(f"{row.unit:32} {_percent(row.clocks['sign_for'].rate):>8} {_percent(row.clocks['response'].rate):>8} "
                   f"{_percent(row.clocks['resolution'].rate):>8} {row.clocks['resolution'].finished:>8} "
                   f"{row.running:>7} {row.breached:>8}{flag}")


@app.command("returns-index")
def returns_index(db_url: str | None = DB_URL) -> None:
    """Per unit: returns (退单), how many of them arbitration overruled (a supervisor decided the unit owned the
    ticket after all, or refused the return of a final assignment), and the overruled returns per hundred
    tickets the unit was given. Upheld returns are fair and cost nothing."""
    with Session(_engine(db_url)) as session:
        returns, tickets = returns_and_tickets(session)
    typer.echo(f"{'unit':32} {'tickets':>7} {'returns':>7} {'overruled':>9} {'index':>7}")
    for row in domain.returns_index(returns, tickets):
        index = "-" if row.per_hundred is None else f"{row.per_hundred:.1f}"
        typer.echo(f"{row.unit:32} {row.tickets:>7} {row.returns:>7} {row.overruled:>9} {index:>7}")


@app.command("rebuild")
def rebuild(db_url: str | None = DB_URL,
            progress: bool = typer.Option(True, "--progress/--no-progress",
                                          help="Show a progress bar per phase with rate and ETA.")) -> None:
    """Rebuild the store from the log, with the service stopped: the timers from the workflow topics, what
    they already fired from cityops.sla.v1 (so nothing is sent twice); then the service's consumer group is
    committed where the rebuild stopped reading. The store must be empty (a new file or database)."""
    import asyncio

    from services.common.progress import meter_for

    from .app import load_catalogue_or_none
    from .handlers import build_runtime
    from .models import SlaFactRow, make_store_engine
    from .rebuild import rebuild_from_log

    settings = SlaSettings(db_url=db_url) if db_url else SlaSettings()
    engine = make_store_engine(settings.store_url())
    create_tables(engine, TABLES)
    with Session(engine) as session:
        if session.exec(select(SlaFactRow).limit(1)).first() is not None:
            typer.echo("the store is not empty: point --db-url at a new store (or remove this one) first", err=True)
            raise typer.Exit(1)
    runtime = build_runtime(settings, load_catalogue_or_none(settings.catalogue_file()))
    meter = meter_for(progress, phase_units={"timers": "timers"})
    try:
        report = asyncio.run(rebuild_from_log(settings, engine, runtime, meter))
    finally:
        meter.close()
    typer.echo(f"applied {report.workflow_events} workflow events and {report.marks} past firings; "
               f"group {settings.group_id} committed at {len(report.positions)} partition ends")


@app.command("calibrate")
def calibrate(csv_path: Path = typer.Argument(..., help="Baltimore 311 sample CSV (data/baltimore311/311_sample.csv)."),
              top: int = typer.Option(25, help="How many request types to show, most frequent first.")) -> None:
    """Real due dates of the Baltimore 311 sample per request type (the span DueDate - CreatedDate, its share
    of the type's requests) and the real on-time rate: the evidence behind the catalogue's limits."""
    from .calibration import due_spans

    for row in due_spans(csv_path)[:top]:
        typer.echo(f"{row.request_type:40} n={row.count:5}  due {row.modal_hours:7.1f} h ({_percent(row.modal_share)})  "
                   f"on time {_percent(row.on_time_rate)}")
