"""`cityops import`: load a city's 311 history onto cityops.intake.v1 as intake events.

  nyc                     the NYC sample (NYC Open Data, 311 Service Requests, erm2-nwe9)
  baltimore               the Baltimore sample (City of Baltimore, Open Baltimore 311)
  csv FILE --mapping M    any CSV, with a column mapping in YAML (see tools/importers/mapping.py)
  synthetic --tickets N   a synthetic history of whole ticket lifecycles, on every workflow topic (demos, benchmarks)

Each row keeps its original creation time (event time and record timestamp). Importing the same
rows again publishes the same ids, which every consumer drops as redeliveries.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import Iterable
from pathlib import Path

import typer
from rich.console import Console

from contracts.topics import INTAKE, WORKFLOW_TOPICS, TopicSpec, topic_for_event
from services.common.logs import configure_logging
from services.common.settings import ServiceSettings

from .domain import AreaMapper
from .mapping import BALTIMORE, NYC, CsvMapping, load_mapping
from .publish import ImportReport, count_rows, envelopes_from_rows, publish, read_csv
from .settings import ImporterSettings

app = typer.Typer(no_args_is_help=True, help=__doc__)


@app.callback()
def _logging() -> None:
    # Log lines go to stderr, so that --json output on stdout stays clean.
    configure_logging(ServiceSettings().log_level)
console = Console(stderr=True)

_BOOTSTRAP = typer.Option(None, "--bootstrap", help="Kafka bootstrap servers (default: CITYOPS_KAFKA_BOOTSTRAP).")
_LIMIT = typer.Option(None, "--limit", help="Import only the first N rows.")
_PROGRESS = typer.Option(True, "--progress/--no-progress", help="Show a progress bar with rate and ETA.")
_JSON = typer.Option(False, "--json", help="Print the report as JSON.")
_NO_AREAS = typer.Option(False, "--no-areas", help="Do not map places onto the catalogue's districts and grids.")


def _settings(bootstrap: str | None) -> ImporterSettings:
    settings = ImporterSettings()
    return settings.model_copy(update={"kafka_bootstrap": bootstrap}) if bootstrap else settings


def _spec(settings: ImporterSettings, spec: TopicSpec) -> TopicSpec:
    return dataclasses.replace(spec, name=settings.topic(spec.name))


def _areas(mapping: CsvMapping, no_areas: bool) -> AreaMapper:
    if no_areas:
        return AreaMapper(None, {})
    try:
        from domain.catalogue import load_catalogue

        catalogue = load_catalogue()
    except (FileNotFoundError, ValueError):
        catalogue = None  # no catalogue: locations keep their coordinates and address only
    return AreaMapper(catalogue, mapping.areas)


def _limited(rows: Iterable[dict[str, str]], limit: int | None) -> Iterable[dict[str, str]]:
    for number, row in enumerate(rows):
        if limit is not None and number >= limit:
            return
        yield row


def import_csv(path: Path, mapping: CsvMapping, settings: ImporterSettings, *, limit: int | None = None,
               progress: bool = False, no_areas: bool = False) -> ImportReport:
    """Import one CSV file; returns the report (also used by tests and benchmarks)."""
    spec = _spec(settings, INTAKE)
    report = ImportReport(source=mapping.source, topic=spec.name)
    total = min(count_rows(path), limit) if limit is not None else count_rows(path)
    envelopes = envelopes_from_rows(mapping, _limited(read_csv(path), limit), _areas(mapping, no_areas), report)
    return asyncio.run(publish(settings, [spec], envelopes, report, chunk=settings.chunk,
                               keep_record_time=settings.keep_record_time, total=total, progress=progress))


def _finish(report: ImportReport, mapping_attribution: str, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report.as_dict(), default=str, indent=2))
        return
    skipped = ", ".join(f"{n} {why}" for why, n in report.skipped.most_common()) or "none"
    console.print(f"{report.published:,} of {report.rows:,} rows published to {report.topic} in {report.seconds:.1f}s "
                  f"= [bold]{report.per_second:,.0f} events/s[/bold]; skipped: {skipped}; "
                  f"times {report.first} .. {report.last} (record time: {report.record_time})")
    if mapping_attribution:
        console.print(f"data: {mapping_attribution}")


def _run(path: Path, mapping: CsvMapping, bootstrap: str | None, limit: int | None, progress: bool, no_areas: bool,
         as_json: bool) -> None:
    if not path.is_file():
        console.print(f"[red]{path} not found")
        raise typer.Exit(2)
    report = import_csv(path, mapping, _settings(bootstrap), limit=limit, progress=progress and sys.stderr.isatty(),
                        no_areas=no_areas)
    _finish(report, mapping.attribution, as_json)


@app.command()
def nyc(path: Path | None = typer.Argument(None, help="CSV file (default: the NYC sample in data/nyc311/)."),
        bootstrap: str | None = _BOOTSTRAP, limit: int | None = _LIMIT, progress: bool = _PROGRESS,
        no_areas: bool = _NO_AREAS, as_json: bool = _JSON) -> None:
    """Import NYC 311 requests. Data: NYC Open Data, 311 Service Requests (erm2-nwe9)."""
    _run(path or _settings(bootstrap).nyc_csv, NYC, bootstrap, limit, progress, no_areas, as_json)


@app.command()
def baltimore(path: Path | None = typer.Argument(None, help="CSV file (default: the Baltimore sample in data/baltimore311/)."),
              bootstrap: str | None = _BOOTSTRAP, limit: int | None = _LIMIT, progress: bool = _PROGRESS,
              no_areas: bool = _NO_AREAS, as_json: bool = _JSON) -> None:
    """Import Baltimore 311 requests. Data: City of Baltimore, Open Baltimore 311."""
    _run(path or _settings(bootstrap).baltimore_csv, BALTIMORE, bootstrap, limit, progress, no_areas, as_json)


@app.command("csv")
def csv_command(path: Path = typer.Argument(..., help="CSV file."),
                mapping: Path = typer.Option(..., "--mapping", exists=True, help="Column mapping (YAML)."),
                bootstrap: str | None = _BOOTSTRAP, limit: int | None = _LIMIT, progress: bool = _PROGRESS,
                no_areas: bool = _NO_AREAS, as_json: bool = _JSON) -> None:
    """Import any 311 CSV export with a column mapping."""
    _run(path, load_mapping(mapping), bootstrap, limit, progress, no_areas, as_json)


@app.command()
def synthetic(tickets: int = typer.Option(1000, help="How many tickets."),
              seed: int = typer.Option(2026, help="Same seed, same history (and the same ids)."),
              days: float = typer.Option(14.0, help="Length of the history in days, ending now unless --start."),
              start: str | None = typer.Option(None, help="Start of the history (ISO 8601)."),
              i_know: bool = typer.Option(False, "--yes-write-workflow-topics",
                                          help="Required: this writes decisions on every workflow topic, as if the services had made them."),
              bootstrap: str | None = _BOOTSTRAP, progress: bool = _PROGRESS, as_json: bool = _JSON) -> None:
    """Publish a synthetic history of whole ticket lifecycles (for demos and benchmarks of the read models)."""
    from datetime import UTC, datetime, timedelta

    from .synthetic import SyntheticHistory

    if not i_know:
        console.print("[red]refusing: a synthetic history writes on every workflow topic; pass --yes-write-workflow-topics "
                      "on a demo or benchmark hub only")
        raise typer.Exit(2)
    settings = _settings(bootstrap)
    span = timedelta(days=days)
    begin = datetime.fromisoformat(start) if start else datetime.now(UTC) - span
    history = SyntheticHistory(tickets, seed=seed, start=begin if begin.tzinfo else begin.replace(tzinfo=UTC), span=span)
    envelopes = history.envelopes()
    specs = [_spec(settings, s) for s in WORKFLOW_TOPICS if s.events]
    report = ImportReport(source=f"synthetic-{seed}", topic="workflow topics", rows=len(envelopes),
                          first=envelopes[0].time if envelopes else None, last=envelopes[-1].time if envelopes else None)
    asyncio.run(publish(settings, specs, envelopes, report, chunk=settings.chunk,
                        keep_record_time=settings.keep_record_time, total=len(envelopes),
                        progress=progress and sys.stderr.isatty(),
                        topic_for=lambda e: settings.topic(topic_for_event(e.type))))
    _finish(report, "", as_json)
