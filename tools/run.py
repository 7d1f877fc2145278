"""Run one cityops service in this process: `cityops service run <name>`.

Every service package exposes `create_app()` in `services.<name>.app`; this module only finds
it and runs it until SIGINT/SIGTERM (FastStream stops the consumers after the current batch,
so a stopped service never leaves a half-applied batch behind). A service whose app is an HTTP
app with its consumers inside (the unit bridge) is served by uvicorn on its settings' address.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import typer
from fastapi import FastAPI

from services.common.logs import configure_logging

# Consumer services (FastStream apps), the unit bridge and the console (HTTP apps with a consumer inside). intake
# is HTTP and is started by `cityops intake serve`.
SERVICES = ("discover", "triage", "consult", "act", "evaluate", "units", "sla", "projections", "archiver", "bridge", "console")

app = typer.Typer(no_args_is_help=True)


def load_factory(name: str) -> Any:
    module = importlib.import_module(f"services.{name.replace('-', '_')}.app")
    return module.create_app


def available_services() -> list[str]:
    found = []
    for name in SERVICES:
        try:
            load_factory(name)
        except ModuleNotFoundError:
            continue
        found.append(name)
    return found


@app.command("run")
def run(name: str = typer.Argument(..., help="Service to run, e.g. triage (see `cityops service list`).")) -> None:
    """Run one consumer service in the foreground until Ctrl-C or SIGTERM."""
    create_app = load_factory(name)
    service = create_app()
    if isinstance(service, FastAPI):
        serve_http(service)
    else:
        asyncio.run(service.run())


def serve_http(api: FastAPI) -> None:
    """An HTTP service (its consumers start with it) on the address its settings name."""
    import uvicorn

    settings = api.state.settings
    uvicorn.run(api, host=settings.http_host, port=settings.http_port, log_level="warning", access_log=False)


@app.command("list")
def list_services() -> None:
    """List the services this installation can run."""
    for name in available_services():
        typer.echo(name)
    typer.echo("intake-http (cityops intake serve)")


def main_for(name: str) -> None:
    configure_logging()
    run(name)
