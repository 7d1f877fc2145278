"""`cityops residents`: generate residents' base data, import it (validated row by row) into the register's
topic, announce a weather alert, ask for the proactive scan (docs/proactive.md).

Heavy imports (the city layout, Kafka) happen inside the commands so that `cityops --help` stays fast.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from services.common.settings import REPO_ROOT, KafkaClientSettings

app = typer.Typer(help="Residents' base data and the proactive rules run on it.", no_args_is_help=True, add_completion=False)
console = Console(stderr=True)
DEMO_DIR = REPO_ROOT / "data" / "residents"
DEMO_TODAY = date(2026, 6, 1)  # the day the committed demo files were generated for (newborns, due dates count from it)


def _kafka(bootstrap: str | None) -> KafkaClientSettings:
    settings = KafkaClientSettings()
    return settings.model_copy(update={"kafka_bootstrap": bootstrap}) if bootstrap else settings


def _sites(city: str) -> list[Any]:
    from domain.residents.generate import Site

    if city == "demo":
        from domain.catalogue import load_catalogue

        grids = sorted((a for a in load_catalogue().areas if a.level == "grid"), key=lambda a: a.id)
        return [Site(g.id, f"{g.name}{n}号楼") for g in grids for n in range(1, 9)]
    from domain.city.generate import DEFAULT_SEED
    from domain.city.layout import generate_layout

    return [Site(b.grid, b.name, b.lon, b.lat) for b in generate_layout(DEFAULT_SEED).buildings]


@app.command("generate")
def generate_command(
    city: str = typer.Option("demo", help="demo (the small city's 16 grids) or yantai (the city of the real size)."),
    out: Path = typer.Option(DEMO_DIR, help="Folder to write residents.csv and houses.csv into."),
    residents: int | None = typer.Option(None, help="How many residents (default: 300 demo, 69,000 yantai)."),
    houses: int | None = typer.Option(None, help="How many houses (default: 180 demo, 42,000 yantai)."),
    seed: int = typer.Option(2026, help="Same seed, same files."),
    today: str = typer.Option(DEMO_TODAY.isoformat(), help="The day ages, newborns and due dates count from."),
) -> None:
    """Write seeded base data for a city (residents placed in its grids' buildings)."""
    from domain.residents.generate import generate

    if city not in ("demo", "yantai"):
        raise typer.BadParameter("city must be demo or yantai", param_hint="--city")
    n, h = residents or (300 if city == "demo" else 69_000), houses or (180 if city == "demo" else 42_000)
    residents_csv, houses_csv = generate(_sites(city), n, h, seed, date.fromisoformat(today))
    out.mkdir(parents=True, exist_ok=True)
    (out / "residents.csv").write_text(residents_csv, encoding="utf-8")
    (out / "houses.csv").write_text(houses_csv, encoding="utf-8")
    console.print(f"wrote {n:,} residents and {h:,} houses to {out}")


def _lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        yield from handle


@app.command("import")
def import_command(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Residents CSV (docs/proactive.md)."),
    bootstrap: str | None = typer.Option(None, "--bootstrap", help="Kafka bootstrap (default CITYOPS_KAFKA_BOOTSTRAP)."),
    catalogue: Path | None = typer.Option(None, help="Refuse grids this catalogue lacks (default: no check)."),
    today: str | None = typer.Option(None, help="The day birth dates are checked against (default: today)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    max_errors_shown: int = typer.Option(20, help="Print at most this many bad rows (all are counted)."),
) -> None:
    """Validate every row (a bad row is reported with its line and field and skipped) and publish the good
    ones as base records to the register's topic."""
    report = import_file(file, _kafka(bootstrap), catalogue=catalogue, progress=progress,
                         today=date.fromisoformat(today) if today else date.today())
    for error in report["errors"][:max_errors_shown]:
        console.print(f"[red]{file.name}: {error}[/red]")
    if as_json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print(f"{report['published']:,} residents published, {report['bad_rows']:,} bad rows, "
              f"{report['rows_per_second']:,.0f} rows/s, peak RSS {report['peak_rss_mb']:.0f} MB")


def import_file(file: Path, kafka: KafkaClientSettings, *, today: date, catalogue: Path | None = None,
                progress: bool = False) -> dict[str, Any]:
    """Validate and publish `file`; the report counts rows, bad rows (each as "line N: field: why") and speed."""
    from contracts.topics import RESIDENTS_BASE
    from domain.residents.records import RowError, read_residents
    from tools.importers.publish import ImportReport, count_rows, publish

    grids = None
    if catalogue is not None:
        from domain.catalogue import load_catalogue

        grids = {a.id for a in load_catalogue(catalogue).areas if a.level == "grid"}
    errors: list[str] = []

    def envelopes() -> Iterator[Any]:
        for item in read_residents(_lines(file), today, grids):
            if isinstance(item, RowError):
                errors.append(str(item))
            else:
                yield base_envelope(item)

    report = ImportReport(source=file.name, topic=RESIDENTS_BASE.name)
    started = time.perf_counter()
    asyncio.run(publish(kafka, [RESIDENTS_BASE], envelopes(), report, keep_record_time=False,
                        total=count_rows(file), progress=progress))
    seconds = time.perf_counter() - started
    rows = report.published + len(errors)
    return {"file": str(file), "topic": RESIDENTS_BASE.name, "rows": rows, "published": report.published,
            "bad_rows": len(errors), "errors": errors, "seconds": round(seconds, 3),
            "rows_per_second": round(rows / seconds, 1) if seconds else 0.0,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def base_envelope(resident: Any) -> Any:
    from dataclasses import asdict

    from contracts import events as ev
    from contracts.envelope import Envelope
    from contracts.topics import REGISTRY

    return Envelope.origin(ev.ResidentBaseRecorded(**asdict(resident)), source=REGISTRY, ticket_id=resident.resident_id)


def _send_one(bootstrap: str | None, data: Any, key: str) -> None:
    send_to_register(_kafka(bootstrap), data, key)


def send_to_register(kafka: KafkaClientSettings, data: Any, key: str) -> None:
    """Publish one event (a scan request, a weather alert) to the register's topic."""
    from contracts.envelope import Envelope
    from contracts.topics import REGISTRY, RESIDENTS_BASE
    from tools.importers.publish import ImportReport, publish

    report = ImportReport(source=key, topic=RESIDENTS_BASE.name)
    asyncio.run(publish(kafka, [RESIDENTS_BASE], [Envelope.origin(data, source=REGISTRY, ticket_id=key)], report,
                        keep_record_time=False))


def seed_demo_residents(kafka: KafkaClientSettings, today: date) -> dict[str, Any]:
    """What `cityops up` does for the demo: import the committed demo base data and ask for today's scan, so
    grid workers get proactive tasks at once instead of at the next daily scan."""
    return seed_residents_of(DEMO_DIR / "residents.csv", kafka, today)


def seed_city_residents(city: str, folder: Path, kafka: KafkaClientSettings, today: date) -> dict[str, Any]:
    """What `cityops up --city NAME` does for a generated city: write its base data once (seeded, the
    article's size: 69,000 residents, 42,000 houses for yantai) into `folder`, import it, ask for today's scan."""
    from domain.catalogue import catalogue_path_for_city
    from domain.residents.generate import generate

    residents_csv = folder / "residents.csv"
    if not residents_csv.exists():
        folder.mkdir(parents=True, exist_ok=True)
        people, homes = generate(_sites(city), 69_000, 42_000, 2026, DEMO_TODAY)
        (folder / "houses.csv").write_text(homes, encoding="utf-8")
        residents_csv.write_text(people, encoding="utf-8")
    return seed_residents_of(residents_csv, kafka, today, catalogue=catalogue_path_for_city(city))


def seed_residents_of(file: Path, kafka: KafkaClientSettings, today: date, catalogue: Path | None = None) -> dict[str, Any]:
    from contracts import events as ev

    report = import_file(file, kafka, today=today, catalogue=catalogue)
    send_to_register(kafka, ev.ProactiveScanRequested(day=today), f"scan-{today.isoformat()}")
    return report


@app.command("scan")
def scan_command(
    now: str | None = typer.Option(None, "--now", help="The day to evaluate the rules for (YYYY-MM-DD; default today)."),
    bootstrap: str | None = typer.Option(None, "--bootstrap", help="Kafka bootstrap (default CITYOPS_KAFKA_BOOTSTRAP)."),
) -> None:
    """Ask discover to run the proactive rules over every resident now (it also runs them daily by itself,
    at CITYOPS_DISCOVER_PROACTIVE_SCAN_AT)."""
    from contracts import events as ev

    day = date.fromisoformat(now) if now else date.today()
    _send_one(bootstrap, ev.ProactiveScanRequested(day=day), f"scan-{day.isoformat()}")
    print(f"scan requested for {day}")


@app.command("alert")
def alert_command(
    alert_id: str = typer.Argument(..., help="The weather service's id of the alert."),
    kind: str = typer.Option(..., help="heat-wave or cold-wave."),
    starts: str = typer.Option(..., help="First day (YYYY-MM-DD)."),
    ends: str = typer.Option(..., help="Last day (YYYY-MM-DD)."),
    grid: list[str] = typer.Option([], "--grid", help="A grid it covers (repeat; none: the whole city)."),
    bootstrap: str | None = typer.Option(None, "--bootstrap", help="Kafka bootstrap (default CITYOPS_KAFKA_BOOTSTRAP)."),
) -> None:
    """Announce a heat or cold wave: the next scan sends grid workers to the elderly living alone in it."""
    from pydantic import ValidationError

    from contracts import events as ev

    try:
        data = ev.WeatherAlertIssued(alert_id=alert_id, kind=kind, starts=starts, ends=ends,  # type: ignore[arg-type]
                                     grids=tuple(grid) or None)
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from None
    _send_one(bootstrap, data, alert_id)
    print(f"alert {alert_id} published")
