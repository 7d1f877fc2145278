"""`cityops replay`: the supervisor's view of the event log.

  story TICKET            one ticket's whole story from the log: every event, who held it, for how long
  events                  every event in a time range, by type, unit, district
  rebuild --db URL        every projection from offset zero into a fresh database (resumable)
  checksum --db URL       digest of a projection store; --against URL compares two
  as-of TIME              a ticket, a unit's queue or the rankings as they stood at TIME
  what-if --catalogue P   re-run triage with another catalogue / classifier into a scratch store
  rankings, queue         the live projections now
  serve                   the HTTP API for the console

Kafka is read from CITYOPS_KAFKA_BOOTSTRAP (or --bootstrap); --from-archive reads the archiver's
copy instead, e.g. after a broker was replaced. Times without an offset are read in the zone of
CITYOPS_PROJECTIONS_TIMEZONE (default Asia/Shanghai).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

from services.common.logs import configure_logging
from services.common.progress import Meter, meter_for
from services.common.settings import ServiceSettings
from services.common.store import make_engine

from .domain import use_calendar
from .logsource import ArchiveLog, KafkaLog, LogSource
from .queries import EventFilter, parse_time
from .settings import ProjectionsSettings

app = typer.Typer(no_args_is_help=True, help=__doc__)


@app.callback()
def _logging() -> None:
    # Log lines go to stderr, so that --json output on stdout stays clean.
    configure_logging(ServiceSettings().log_level)
console = Console()
T = TypeVar("T")

_BOOTSTRAP = typer.Option(None, "--bootstrap", help="Kafka bootstrap servers (default: CITYOPS_KAFKA_BOOTSTRAP).")
_FROM_ARCHIVE = typer.Option(False, "--from-archive", help="Read the archiver's durable copy instead of Kafka.")
_JSON = typer.Option(False, "--json", help="Print JSON instead of tables.")
_PROGRESS = typer.Option(True, "--progress/--no-progress", help="Show a progress bar with rate and ETA.")


def _settings(bootstrap: str | None = None) -> ProjectionsSettings:
    settings = ProjectionsSettings()
    use_calendar(settings.work_calendar())  # nominal deadlines on the calendar sla counts on
    return settings.model_copy(update={"kafka_bootstrap": bootstrap}) if bootstrap else settings


def _log(settings: ProjectionsSettings, from_archive: bool, topics: list[str] | None = None) -> LogSource:
    topics = topics or settings.projected_topics()
    if from_archive:
        return ArchiveLog(make_engine(settings.archive_store_url()), topics)
    return KafkaLog(settings.kafka_bootstrap, topics)


def _meter(progress: bool) -> Meter:
    return meter_for(progress, phase_units={"fold": "tickets"})  # the rebuild's fold phase counts tickets


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _show_time(value: Any, zone: str) -> str:
    if isinstance(value, datetime):
        return value.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, default=str, ensure_ascii=False, indent=2))


def _duration(seconds: float) -> str:
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h{minutes:02d}m" if days else f"{hours}h{minutes:02d}m"


# ---------------------------------------------------------------------------------------------- story

@app.command()
def story(ticket_id: str = typer.Argument(..., help="Ticket id."),
          from_store: bool = typer.Option(False, "--from-store", help="Read the projection store's timeline instead of the log."),
          db: str | None = typer.Option(None, "--db", help="Projection store URL for --from-store."),
          bootstrap: str | None = _BOOTSTRAP, from_archive: bool = _FROM_ARCHIVE, as_json: bool = _JSON,
          progress: bool = _PROGRESS) -> None:
    """One ticket's whole story, in order, with who held it and for how long."""
    from .replay import story_from_log, story_from_store

    settings = _settings(bootstrap)
    if from_store:
        result = story_from_store(make_engine(db or settings.store_url()), ticket_id)
    else:
        result = _run(story_from_log(_log(settings, from_archive), ticket_id, _meter(progress)))
    if not result.entries:
        console.print(f"[red]no events of {ticket_id} in {result.source}")
        raise typer.Exit(1)
    now = datetime.now(tz=ZoneInfo("UTC"))
    if as_json:
        _print_json(result.as_dict(now))
        return
    zone = settings.timezone
    events = Table(title=f"{ticket_id} - {len(result.entries)} events ({result.source})")
    for column in ("time", "event", "unit", "what happened"):
        events.add_column(column)
    for e in result.entries:
        events.add_row(_show_time(e["time"], zone), e["kind"], e["unit"] or "", e["summary"])
    console.print(events)
    holders = Table(title="who held it")
    for column in ("holder", "role", "round", "from", "to", "for", "ended by"):
        holders.add_column(column)
    for h in result.holdings:
        holders.add_row(h.holder, h.role, str(h.round), _show_time(h.start, zone), _show_time(h.end, zone) or "(now)",
                        _duration(h.duration(now).total_seconds()), h.ended_by)
    console.print(holders)
    if result.folded:
        t = result.folded.ticket
        console.print(f"status [bold]{t.status}[/bold], lead {t.lead_unit or '-'}, round {t.round}, "
                      f"returns {t.returns}, reopens {t.reopens}, overdue {t.overdue}")


# ---------------------------------------------------------------------------------------------- events

@app.command()
def events(since: str | None = typer.Option(None, help="From this time (ISO 8601)."),
           until: str | None = typer.Option(None, help="Up to this time (ISO 8601)."),
           type_: list[str] = typer.Option([], "--type", help="Event type: full, short (TaskAssigned) or part (task.assigned); repeatable."),
           unit: str | None = typer.Option(None, help="Only events concerning this unit."),
           district: str | None = typer.Option(None, help="Only tickets located in this district."),
           ticket: str | None = typer.Option(None, help="Only this ticket."),
           limit: int | None = typer.Option(None, help="At most this many events."),
           from_store: bool = typer.Option(False, "--from-store", help="Read the projection store instead of the log."),
           db: str | None = typer.Option(None, "--db", help="Projection store URL for --from-store."),
           bootstrap: str | None = _BOOTSTRAP, from_archive: bool = _FROM_ARCHIVE, as_json: bool = _JSON,
           progress: bool = _PROGRESS) -> None:
    """Every event in a time range, filterable by type, unit and district."""
    from . import queries
    from .replay import events_from_log

    settings = _settings(bootstrap)
    zone = settings.timezone
    flt = EventFilter(since=parse_time(since, zone) if since else None, until=parse_time(until, zone) if until else None,
                      types=tuple(type_), unit=unit, district=district, ticket_id=ticket, limit=limit)
    if from_store:
        rows = queries.events(make_engine(db or settings.store_url()), flt)
    else:
        rows = _run(events_from_log(_log(settings, from_archive), flt, _meter(progress)))
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"{len(rows)} events")
    for column in ("time", "ticket", "event", "unit", "district", "what happened"):
        table.add_column(column)
    for r in rows:
        table.add_row(_show_time(r["time"], zone), r["ticket_id"], r["kind"], r["unit"] or "", r.get("district") or "",
                      r["summary"])
    console.print(table)


# ---------------------------------------------------------------------------------------------- rebuild, checksum

@app.command()
def rebuild(db: str = typer.Option(..., "--db", help="URL of a FRESH database (or of an interrupted rebuild, to resume)."),
            bootstrap: str | None = _BOOTSTRAP, from_archive: bool = _FROM_ARCHIVE, progress: bool = _PROGRESS,
            batch: int | None = typer.Option(None, help="Records per transaction."), as_json: bool = _JSON) -> None:
    """Rebuild every projection from offset zero into a fresh database. Ctrl-C stops it; run it again to resume."""
    from .rebuild import NotARebuildStore, RebuildInterrupted, checksum
    from .rebuild import rebuild as run_rebuild

    settings = _settings(bootstrap)
    engine = make_engine(db)
    meter = _meter(progress)
    try:
        report = _run(run_rebuild(engine, _log(settings, from_archive), batch=batch or settings.rebuild_batch,
                                  fold_batch=settings.fold_batch, meter=meter))
    except NotARebuildStore as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(2) from None
    except RebuildInterrupted as exc:
        console.print(f"[yellow]{exc}")
        raise typer.Exit(130) from None
    finally:
        meter.close()
    digest = checksum(engine)
    if as_json:
        _print_json({**report.as_dict(), "checksum": digest.as_dict()})
        return
    console.print(f"rebuilt from {report.source}{' (resumed)' if report.resumed else ''}: {report.records_read:,} records, "
                  f"{report.events_loaded:,} new events, {report.tickets_folded:,} tickets folded in {report.seconds:.1f}s "
                  f"= [bold]{report.events_per_second:,.0f} events/s[/bold]"
                  + (f"; [red]{report.fold_failures} tickets failed to fold" if report.fold_failures else ""))
    console.print(f"checksum {digest.digest}")


@app.command()
def checksum(db: str | None = typer.Option(None, "--db", help="Projection store URL (default: the live store)."),
             against: str | None = typer.Option(None, "--against", help="Another store to compare with; exit 1 if they differ."),
             as_json: bool = _JSON) -> None:
    """A digest of a projection store's rows; equal digests mean equal projections (across SQLite and PostgreSQL)."""
    from .rebuild import NotAProjectionStore
    from .rebuild import checksum as digest_of

    try:
        mine = digest_of(make_engine(db or _settings().store_url()))
        theirs = digest_of(make_engine(against)) if against else None
    except NotAProjectionStore as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(2) from None
    if as_json:
        _print_json({"checksum": mine.as_dict(), "against": theirs.as_dict() if theirs else None,
                     "equal": theirs.digest == mine.digest if theirs else None})
    else:
        table = Table(title=f"checksum {mine.digest}")
        for column in ("table", "rows", "digest") + (("other rows", "equal") if theirs else ()):
            table.add_column(column)
        for name, (rows, digest) in mine.tables.items():
            extra = (str(theirs.tables[name][0]), "yes" if theirs.tables[name] == (rows, digest) else "[red]NO") if theirs else ()
            table.add_row(name, f"{rows:,}", digest[:16], *extra)
        console.print(table)
    if theirs is not None and theirs.digest != mine.digest:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------- as of

@app.command("as-of")
def as_of(time: str = typer.Argument(..., help="The time (ISO 8601)."),
          ticket: str | None = typer.Option(None, "--ticket", help="A ticket's state then."),
          unit: str | None = typer.Option(None, "--unit", help="A unit's queue then."),
          rankings: bool = typer.Option(False, "--rankings", help="The rankings then."),
          scope: str | None = typer.Option(None, help="Rankings of unit, grid or district (default all)."),
          min_n: int | None = typer.Option(None, "--min-n", help="Smallest sample that is ranked."),
          source: str = typer.Option("store", help="store (the projection store's timelines), kafka, or archive."),
          db: str | None = typer.Option(None, "--db", help="Projection store URL for --source store."),
          bootstrap: str | None = _BOOTSTRAP, as_json: bool = _JSON, progress: bool = _PROGRESS) -> None:
    """The state of a ticket, a unit's queue or the rankings as they stood at a given time."""
    from .replay import AsOfQuestion, as_of_log, as_of_store

    if not (ticket or unit or rankings):
        raise typer.BadParameter("give --ticket, --unit or --rankings")
    settings = _settings(bootstrap)
    question = AsOfQuestion(parse_time(time, settings.timezone), ticket, unit, rankings, scope,
                            min_n or settings.min_rank_sample)
    if source == "store":
        answer = as_of_store(make_engine(db or settings.store_url()), question)
    elif source in ("kafka", "archive"):
        answer = _run(as_of_log(_log(settings, source == "archive"), question, _meter(progress)))
    else:
        raise typer.BadParameter("source is store, kafka or archive")
    if as_json:
        _print_json(answer.as_dict())
        return
    zone = settings.timezone
    console.print(f"as of {_show_time(answer.at, zone)} ({answer.source})")
    if ticket:
        if answer.ticket is None:
            console.print(f"{ticket} did not exist yet")
        else:
            _print_mapping(answer.ticket, zone)
    if unit:
        _print_rows(f"queue of {unit}: {len(answer.queue)} open tasks", answer.queue,
                    ("task_id", "role", "status", "assigned_at", "resolution_due", "breached"), zone)
    if rankings:
        _print_rankings(answer.rankings)


def _print_mapping(row: dict[str, Any], zone: str) -> None:
    table = Table(show_header=False)
    for key, value in row.items():
        if value not in (None, "", 0, False):
            table.add_row(key, _show_time(value, zone))
    console.print(table)


def _print_rows(title: str, rows: list[dict[str, Any]], columns: tuple[str, ...], zone: str) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_show_time(row.get(c), zone) for c in columns))
    console.print(table)


def _print_rankings(ranked: list[Any]) -> None:
    table = Table(title="rankings (score = mean of the rates with data; return and re-handling counted inverted)")
    for column in ("scope", "key", "rank", "n", "score", "response", "resolution", "satisfaction", "on time", "return",
                   "re-handling", "note"):
        table.add_column(column)

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"
    for r in ranked:
        rates = r.rates
        table.add_row(r.scope, r.key, str(r.rank or "-"), str(r.n), "-" if r.score is None else f"{r.score:.3f}",
                      pct(rates["response_rate"]), pct(rates["resolution_rate"]), pct(rates["satisfaction_rate"]),
                      pct(rates["on_time_rate"]), pct(rates["return_rate"]), pct(rates["rehandling_rate"]), r.note)
    console.print(table)


# ---------------------------------------------------------------------------------------------- now

@app.command("rankings")
def rankings_now(scope: str | None = typer.Option(None, help="unit, grid or district (default all)."),
                 min_n: int | None = typer.Option(None, "--min-n", help="Smallest sample that is ranked."),
                 db: str | None = typer.Option(None, "--db", help="Projection store URL (default: the live store)."),
                 as_json: bool = _JSON) -> None:
    """Response, resolution, satisfaction, on-time, return and re-handling rates per unit, grid and district."""
    from .queries import rankings

    settings = _settings()
    ranked = rankings(make_engine(db or settings.store_url()), min_n or settings.min_rank_sample, scope)
    if as_json:
        _print_json([r.as_dict() for r in ranked])
    else:
        _print_rankings(ranked)


@app.command("queue")
def queue_now(unit: str = typer.Argument(..., help="Unit id."),
              db: str | None = typer.Option(None, "--db", help="Projection store URL (default: the live store)."),
              as_json: bool = _JSON) -> None:
    """A unit's open tasks now, oldest first."""
    from .queries import unit_queue

    settings = _settings()
    rows = unit_queue(make_engine(db or settings.store_url()), unit)
    if as_json:
        _print_json(rows)
    else:
        _print_rows(f"queue of {unit}: {len(rows)} open tasks", rows,
                    ("task_id", "role", "status", "assigned_at", "resolution_due", "breached"), settings.timezone)


# ---------------------------------------------------------------------------------------------- what if

@app.command("what-if")
def what_if_command(catalogue: Path = typer.Option(..., "--catalogue", exists=True, help="The catalogue YAML to try."),
                    model: Path | None = typer.Option(None, "--model", exists=True, help="A saved classifier to try (default: keep the logged categories)."),
                    min_confidence: float = typer.Option(0.0, help="Below this confidence a ticket would go to manual triage."),
                    scratch_db: str | None = typer.Option(None, "--scratch-db", help="Scratch store URL (default: a new SQLite file under state_dir/whatif)."),
                    since: str | None = typer.Option(None, help="Only tickets first triaged at or after this time."),
                    until: str | None = typer.Option(None, help="Only tickets first triaged up to this time."),
                    show: int = typer.Option(30, help="How many changed tickets to list."),
                    bootstrap: str | None = _BOOTSTRAP, from_archive: bool = _FROM_ARCHIVE, as_json: bool = _JSON,
                    progress: bool = _PROGRESS) -> None:
    """Re-run triage over past tickets (their registrations) with another catalogue or classifier; publish nothing, write a scratch store."""
    from domain.catalogue import load_catalogue

    from .whatif import WHATIF_TOPICS, SavedModel, what_if

    settings = _settings(bootstrap)
    trial = load_catalogue(catalogue)
    classifier = SavedModel(model) if model else None
    scratch_url = scratch_db or _new_scratch_url(settings)
    report = _run(what_if(_log(settings, from_archive, [settings.topic(t) for t in WHATIF_TOPICS]), trial,
                          classifier=classifier, model_name=str(model) if model else None,
                          min_confidence=min_confidence, min_n=settings.min_rank_sample,
                          scratch=make_engine(scratch_url), meter=_meter(progress),
                          since=parse_time(since, settings.timezone) if since else None,
                          until=parse_time(until, settings.timezone) if until else None))
    if as_json:
        _print_json(report.as_dict(limit=show))
        return
    changed = report.changed
    console.print(f"catalogue {report.catalogue_version}{f', model {model}' if model else ''}: "
                  f"{report.tickets_considered:,} triaged tickets replayed, [bold]{len(changed):,}[/bold] would have gone "
                  f"to another lead unit ({report.not_triaged:,} not yet triaged in the log). Scratch: {report.scratch_url}")
    _print_rows(f"first {min(show, len(changed))} of {len(changed)} changed tickets",
                [d.__dict__ for d in changed[:show]],
                ("ticket_id", "category_before", "category_after", "lead_before", "lead_after", "why"), settings.timezone)
    _print_rows("units whose load or rank would change",
                [u.__dict__ for u in report.units if u.tickets_before != u.tickets_after or u.rank_before != u.rank_after],
                ("unit", "tickets_before", "tickets_after", "rank_before", "rank_after", "score_before", "score_after"),
                settings.timezone)


def _new_scratch_url(settings: ProjectionsSettings) -> str:
    directory = settings.whatif_store_dir()
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / datetime.now().strftime('whatif-%Y%m%dT%H%M%S.db')}"


# ---------------------------------------------------------------------------------------------- serve

@app.command()
def serve(host: str = typer.Option("127.0.0.1"), port: int = typer.Option(8082, help="The hub serves it on 8082 (`cityops up --replay-port`)."),
          db: str | None = typer.Option(None, "--db", help="Projection store URL (default: the live store)."),
          bootstrap: str | None = _BOOTSTRAP) -> None:
    """Serve the replay HTTP API (the console mounts the same router); supervisors' and auditors' tokens only."""
    import uvicorn

    from services.common.auth import AuthError

    from .api import replay_app

    settings = _settings(bootstrap)
    if db:
        settings = settings.model_copy(update={"db_url": db})
    try:
        api = replay_app(settings)
    except AuthError as exc:
        typer.echo(f"replay serve refuses to start: {exc}", err=True)
        raise typer.Exit(2) from None
    uvicorn.run(api, host=host, port=port)
