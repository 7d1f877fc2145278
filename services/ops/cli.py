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
    ("kafka", "services.ops.kafka_cli", "app", "Fetch, start, stop and inspect the local Apache Kafka broker or 3-broker cluster."),
    ("triage", "services.triage.cli", "app", "Train and try the complaint classifier; inspect the responsibility catalogue."),
]


def _mount_subapps() -> None:
    for name, module_path, attr, help_text in _SUBAPPS:
        try:
            module = importlib.import_module(module_path)
        except ModuleNotFoundError as exc:
            if exc.name and module_path.startswith(exc.name):
                continue  # area not built yet
            raise
        app.add_typer(getattr(module, attr), name=name, help=help_text)


def main() -> None:
    _mount_subapps()
    app()


if __name__ == "__main__":
    main()
