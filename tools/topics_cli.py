from __future__ import annotations

import asyncio

import typer

app = typer.Typer(no_args_is_help=True)


@app.callback(invoke_without_command=True)
def topics(ctx: typer.Context,
           markdown: bool = typer.Option(False, "--markdown", help="Print the catalogue as a Markdown table: topic, "
                                         "writer, readers, events, partitions (docs/architecture.md holds a copy).")) -> None:
    """The topic catalogue: create its topics on a broker, list them, or print its table."""
    if markdown:
        from contracts.topics import catalogue_markdown

        typer.echo(catalogue_markdown(), nl=False)
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


def hub_topics(units: list[str] | None = None) -> list:
    """Every topic of the hub for these units (default: the small city's catalogue)."""
    from contracts.topics import all_topics
    from domain.catalogue import load_catalogue

    return all_topics(units if units is not None else list(load_catalogue().units_for_topics()))


@app.command("create")
def create(bootstrap: str = typer.Option("127.0.0.1:9092", help="Kafka bootstrap servers."),
           replication: int | None = typer.Option(None, help="Replication factor; default 3 (with min.insync.replicas "
                                                  "2) on a cluster of 3 or more brokers, else one per broker."),
           acls: bool = typer.Option(False, "--acls", help="Also make the broker's ACLs the ones derived from the "
                                     "catalogue (docs/security-kafka.md); the launcher's brokers get them at start.")) -> None:
    """Create every topic of the catalogue (workflow, unit task topics, DLQs) that does not exist yet.

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

    return list(load_catalogue().units_for_topics())


@app.command("list")
def list_topics() -> None:
    """Print the topic catalogue: name, partitions, key, events."""
    for spec in hub_topics():
        events = ", ".join(spec.event_types) or "-"
        typer.echo(f"{spec.name:48} p={spec.partitions} key={spec.key}  {events}")
