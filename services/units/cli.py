from __future__ import annotations

import asyncio
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
    from contracts.topics import unit_task_topic
    from domain.catalogue import load_catalogue

    from .settings import UnitSettings

    cat = load_catalogue(UnitSettings().catalogue_file())
    for unit_id in cat.units_for_topics():
        u = cat.unit(unit_id)
        typer.echo(f"{unit_id:32} {u.level:10} {u.name_en}  ->  {unit_task_topic(unit_id)}")
