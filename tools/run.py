"""Run cityops services in this process: `cityops service run <name> [<name> ...]`.

Every service package exposes `create_app()` in `services.<name>.app`; this module only finds
it and runs it until SIGINT/SIGTERM (FastStream stops the consumers after the current batch,
so a stopped service never leaves a half-applied batch behind). A service whose app is an HTTP
app with its consumers inside (the unit bridge) is served by uvicorn on its settings' address.
Several consumer services named together share this process and its event loop (tools/packed.py).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Coroutine
from typing import Any

import typer
from fastapi import FastAPI
from faststream import FastStream

from services.common.collector import freeze_batch_survivors_as_configured, frozen_once_serving, frozen_once_started
from services.common.logs import configure_logging
from services.common.priority import yield_cpu_as_configured
from services.common.settings import ServiceSettings

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
def run(names: list[str] = typer.Argument(..., help="Service(s) to run, e.g. triage, or discover triage consult "
                                                    "in one process (see `cityops service list`).")) -> None:
    """Run one service, or several consumer services in one process, in the foreground until Ctrl-C or SIGTERM."""
    if len(names) > 1:
        run_packed(names)
        return
    name = names[0]
    create_app = load_factory(name)
    service = create_app()
    settings = service.state.settings if isinstance(service, FastAPI) else settings_of(service)
    yield_cpu_as_configured([settings])
    freeze_batch_survivors_as_configured([settings])
    if isinstance(service, FastAPI):
        serve_http(service)
    else:
        run_on_fast_loop(frozen_once_started(service).run())


def settings_of(service: FastStream) -> ServiceSettings:
    """The settings a consumer service was built with (every app factory keeps them in its app's context)."""
    settings = service.context.get("settings")
    if not isinstance(settings, ServiceSettings):
        raise TypeError(f"the app has no ServiceSettings in its context under 'settings' (got {type(settings).__name__})")
    return settings


def run_on_fast_loop(main: Coroutine[Any, Any, Any]) -> Any:
    """Run a consumer service's coroutine on uvloop where it is installed (a dependency on Linux and macOS).

    The HTTP services already get uvloop from uvicorn; the consumer services spend a share of every record's
    CPU in the event loop's own scheduling (the bench's CPU budget), which uvloop runs in C."""
    try:
        import uvloop
    except ImportError:  # Windows: uvloop does not exist there
        return asyncio.run(main)
    return uvloop.run(main)


def run_packed(names: list[str]) -> None:
    """Several consumer services in this process; exit code 1 when one of them crashes (tools/packed.py)."""
    from tools.packed import MemberCrashed, run_together

    if len(set(names)) != len(names):
        raise typer.BadParameter(f"a service is named twice: {' '.join(names)}", param_hint="NAMES")
    apps = {}
    for name in names:
        if name not in SERVICES:
            raise typer.BadParameter(f"unknown service {name!r}; one of {', '.join(SERVICES)}", param_hint="NAMES")
        service = load_factory(name)()
        if isinstance(service, FastAPI):
            raise typer.BadParameter(f"{name} is an HTTP service: it runs in a process of its own", param_hint="NAMES")
        apps[name] = frozen_once_started(service)
    yield_cpu_as_configured(settings_of(service) for service in apps.values())
    freeze_batch_survivors_as_configured(settings_of(service) for service in apps.values())
    try:
        run_on_fast_loop(run_together(apps))
    except MemberCrashed as exc:
        typer.echo(f"stopping every service of this process: {exc}", err=True)
        raise typer.Exit(1) from exc


def serve_http(api: FastAPI) -> None:
    """An HTTP service (its consumers start with it) on the address its settings name."""
    import uvicorn

    settings = api.state.settings
    uvicorn.run(frozen_once_serving(api), host=settings.http_host, port=settings.http_port, log_level="warning", access_log=False)


@app.command("list")
def list_services() -> None:
    """List the services this installation can run."""
    for name in available_services():
        typer.echo(name)
    typer.echo("intake-http (cityops intake serve)")


def main_for(name: str) -> None:
    configure_logging()
    run([name])
