"""The `cityops` command: one entry point for operators, supervisors and developers.

Each area owns a typer sub-app in its own module; this module only mounts them, lazily
imported so that `cityops --help` stays fast and nothing connects at import time.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="cityops",
    help="cityops: the event-driven operations hub for a city's 12345 hotline.",
    no_args_is_help=True,
    add_completion=False,
)

# (command name, module path, attribute holding the typer app, help text)
_SUBAPPS: list[tuple[str, str, str, str]] = [
    ("kafka", "tools.kafka.cli", "app", "Fetch, start, stop and inspect the local Apache Kafka broker or 3-broker cluster."),
    ("triage", "services.triage.cli", "app", "Train and try the complaint classifier; inspect the responsibility catalogue."),
    ("discover", "services.discover.cli", "app", "Repeat detection (并单): measure precision and recall on the labelled repeat set."),
    ("service", "tools.run", "app", "Run one workflow service (or several in one process) in the foreground."),
    ("contracts", "tools.contracts_cli", "app", "Export and check the event contracts' JSON Schemas; list topics."),
    ("city", "tools.city_cli", "app", "Generate the city of the real size (catalogue, map); locate coordinates and addresses in it."),
    ("topics", "tools.topics_cli", "app", "Create the topic catalogue's topics on a broker."),
    ("intake", "services.intake.cli", "app", "Serve the hotline's HTTP intake API (and Open311)."),
    ("privacy", "services.intake.privacy_cli", "app", "Erase a caller's name and phone everywhere the hub keeps them (destroys their data key)."),
    ("unit", "services.units.cli", "app", "Run a unit (department, street office, grid) service, real or simulated."),
    ("evaluate", "services.evaluate.cli", "app", "Rates units, grids and districts are judged on (response, resolution, satisfaction)."),
    ("sla", "services.sla.cli", "app", "SLA clocks, ledger and ping-pong reports."),
    ("replay", "services.projections.replay_cli", "app", "Supervisor replay: a ticket's story, a time range, rebuild, as-of, what-if."),
    ("residents", "tools.residents_cli", "app", "Residents' base data: generate, import (validated), weather alerts, the proactive scan."),
    ("import", "tools.importers.cli", "app", "Import 311 exports (NYC, Baltimore, any CSV) as intake events."),
    ("bench", "tools.bench", "bench", "Benchmark the pipeline against raw Kafka on one broker started for it; prints a table, writes JSON."),
    ("auth", "tools.auth_cli", "app", "Mint a hub token for a role; say who a token names."),
    ("audit", "tools.audit_cli", "audit", "List the audit trail: who changed what through the hub's HTTP doors."),
    ("status", "tools.status_cli", "status", "The hub at a glance: each process up or not, lag, dead letters, parked, outbox, timers due."),
    ("chaos", "tools.chaos", "chaos", "Kill the hub's processes (or its broker) under load; report tickets lost, effects duplicated, rows left."),
    ("up", "tools.hub", "up", "Bring the whole hub up on this machine (broker, every service, simulated units, demo feed)."),
]


def _mount_subapps() -> None:
    for name, module_path, attr, help_text in _SUBAPPS:
        try:
            module = importlib.import_module(module_path)
        except ModuleNotFoundError as exc:
            if exc.name and module_path.startswith(exc.name):
                continue  # area not built yet
            raise
        target = getattr(module, attr)
        if isinstance(target, typer.Typer):
            app.add_typer(target, name=name, help=help_text)
        else:  # a single command, e.g. `cityops up`
            app.command(name=name, help=help_text)(target)


def main() -> None:
    _mount_subapps()
    app()


if __name__ == "__main__":
    main()
