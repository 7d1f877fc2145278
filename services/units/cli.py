from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TypedDict

import typer

app = typer.Typer(no_args_is_help=True)


class _UnitOverrides(TypedDict, total=False):
    """The UnitSettings fields `run` sets; an option not given is left out, so the environment still applies."""

    units: list[str]
    callbacks: bool
    supervisor: bool
    p_return: float
    work_delay_s: float
    hotline_url: str


@app.command("run")
def run(unit: list[str] = typer.Option([], "--unit", "-u", help="Unit id to answer for (repeatable); none = every unit."),
        callbacks: bool = typer.Option(False, help="Also simulate the hotline's callback operators."),
        supervisor: bool = typer.Option(False, help="Also simulate a supervisor deciding disputes."),
        p_return: float = typer.Option(None, help="Probability a lead unit returns a task."),
        work_delay: float = typer.Option(None, help="Seconds a simulated unit spends on a task."),
        hotline_url: str = typer.Option(None, help="Intake's HTTP API, where the simulated callback operators and "
                                        "supervisor post their decisions (default http://127.0.0.1:8080).")) -> None:
    """Run a simulated unit service (e.g. `cityops unit run --unit water`) until Ctrl-C.

    Real departments use the SDK (services/units/sdk.py) from their own systems instead."""
    from .app import create_app
    from .settings import UnitSettings

    overrides: _UnitOverrides = {"units": unit, "callbacks": callbacks, "supervisor": supervisor}
    if p_return is not None:
        overrides["p_return"] = p_return
    if work_delay is not None:
        overrides["work_delay_s"] = work_delay
    if hotline_url is not None:
        overrides["hotline_url"] = hotline_url
    settings = UnitSettings(**overrides)
    asyncio.run(create_app(settings).run())


@app.command("list")
def list_units() -> None:
    """List every unit of the catalogue and its task topic."""
    from domain.catalogue import load_catalogue

    from .settings import UnitSettings

    cat = load_catalogue(UnitSettings().catalogue_file())
    for unit_id in cat.units_for_topics():
        u = cat.unit(unit_id)
        typer.echo(f"{unit_id:32} {u.level:10} {u.name_en}  ->  {cat.task_topic_of(unit_id)}")


@app.command("roster")
def roster(check: bool = typer.Option(False, "--check", help="Validate only: print the roster's size and the grids "
                                      "nobody covers; exit 1 on an invalid file."),
           path: Path = typer.Option(None, "--path", help="Roster file (default: the packaged small-city roster, "
                                     "or one generated worker per grid for another catalogue)."),
           catalogue_path: Path = typer.Option(None, "--catalogue", help="Catalogue file whose grids the roster "
                                               "covers (default: the packaged one)."),
           write: Path = typer.Option(None, "--write", help="Also write the roster to this YAML file (e.g. the "
                                      "generated one of a large city, as the start of its own).")) -> None:
    """List the grid workers (定岗网格) and the grids they cover, or check a roster file (docs/grid-workers.md)."""
    from domain.catalogue import load_catalogue
    from domain.grid_workers import RosterError, roster_for, roster_yaml, uncovered_grids

    cat = load_catalogue(catalogue_path)
    grids = [a.id for a in cat.areas if a.level == "grid"]
    try:
        rost = roster_for(grids, cat.version, path)
    except (RosterError, OSError) as exc:
        typer.echo(f"invalid roster: {exc}", err=True)
        raise typer.Exit(1) from None
    if write is not None:
        write.write_text(roster_yaml(rost), encoding="utf-8")
    uncovered = uncovered_grids(rost, grids)
    if not check:
        for worker in rost.workers:
            typer.echo(f"{worker.id:24} {worker.name:12} {', '.join(worker.grids)}")
    typer.echo(f"roster {rost.version}: {len(rost.workers):,} workers covering {len(grids) - len(uncovered):,} of "
               f"{len(grids):,} grids (catalogue {cat.version})")
    for grid in uncovered:
        typer.echo(f"uncovered grid: {grid}")
