"""`cityops topics`: the topic catalogue on a broker (create, list), as a table, and counted for a catalogue."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)


@app.callback(invoke_without_command=True)
def topics(ctx: typer.Context,
           markdown: bool = typer.Option(False, "--markdown", help="Print the catalogue as a Markdown table: topic, "
                                         "writer, readers, events, partitions (docs/architecture.md holds a copy)."),
           count: bool = typer.Option(False, "--count", help="Print how many topics and partitions the deployment of "
                                      "a responsibility catalogue has, by kind (docs/city-scale.md, Topic layout)."),
           path: Path | None = typer.Option(None, "--path", exists=True, dir_okay=False,
                                            help="With --count: the catalogue YAML (default: the packaged one).")) -> None:
    """The topic catalogue: create its topics on a broker, list them, print its table, or count them."""
    if markdown:
        from contracts.topics import catalogue_markdown

        typer.echo(catalogue_markdown(), nl=False)
        raise typer.Exit()
    if count:
        typer.echo(count_text(path), nl=False)
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


def count_text(path: Path | None) -> str:
    """The topic and partition counts of the deployment of the catalogue at `path`, by kind, as a table."""
    from contracts.topics import topic_counts
    from domain.catalogue import load_catalogue

    catalogue = load_catalogue(path)
    lines = [f"catalogue {catalogue.version}: {len(catalogue.units):,} units, {len(catalogue.area_units()):,} of them "
             "area units sharing one task topic", f"{'kind':74} {'topics':>7} {'partitions':>10}"]
    lines += [f"{c.kind:74} {c.topics:>7,} {c.partitions:>10,}" for c in topic_counts(catalogue.own_topic_units())]
    return "\n".join(lines) + "\n"


def hub_topics(own_topic_units: Sequence[str] | None = None) -> list:
    """Every topic of the hub: the catalogue's, and one task topic per unit that has its own (default: the small
    city's departments, branches and centres; area units share the catalogue's area topic)."""
    from contracts.topics import all_topics
    from domain.catalogue import load_catalogue

    return all_topics(own_topic_units if own_topic_units is not None else load_catalogue().own_topic_units())


@app.command("create")
def create(bootstrap: str = typer.Option("127.0.0.1:9092", help="Kafka bootstrap servers."),
           replication: int | None = typer.Option(None, help="Replication factor; default 3 (with min.insync.replicas "
                                                  "2) on a cluster of 3 or more brokers, else one per broker."),
           acls: bool = typer.Option(False, "--acls", help="Also make the broker's ACLs the ones derived from the "
                                     "catalogue (docs/security-kafka.md); the launcher's brokers get them at start.")) -> None:
    """Create every topic of the catalogue (workflow, the shared area task topic, the other units' task topics,
    DLQs) that does not exist yet.

    Runs as the principal in CITYOPS_KAFKA_USERNAME / CITYOPS_KAFKA_PASSWORD: the admin, since no service may
    create topics."""
    from services.common.kafka import ensure_topics, kafka_access

    created = asyncio.run(ensure_topics(bootstrap, hub_topics(), replication=replication))
    typer.echo(f"{len(created)} topic(s) created, {len(hub_topics()) - len(created)} already there")
    if acls:
        from tools.kafka.acls import derive_acls
        from tools.kafka.security import sync_acls_with

        units = list(load_units())
        result = asyncio.run(sync_acls_with(kafka_access(bootstrap).options, derive_acls(units)))
        typer.echo(f"ACLs: {result['created']} created, {result['deleted']} deleted, {result['total']} in place")


def load_units() -> list[str]:
    from domain.catalogue import load_catalogue

    return list(load_catalogue().own_topic_units())


@app.command("list")
def list_topics() -> None:
    """Print the topic catalogue: name, partitions, key, events."""
    for spec in hub_topics():
        events = ", ".join(spec.event_types) or "-"
        typer.echo(f"{spec.name:48} p={spec.partitions} key={spec.key}  {events}")
