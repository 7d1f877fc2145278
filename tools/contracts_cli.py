from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("export")
def export(overwrite: bool = typer.Option(False, help="Rewrite frozen schemas too (only when starting a new version).")) -> None:
    """Write the JSON Schema of every event type not frozen yet into contracts/schemas/."""
    from contracts.schemas import export_schemas

    for path in export_schemas(overwrite=overwrite):
        typer.echo(f"wrote {path}")


@app.command("check")
def check() -> None:
    """Compare every model with its frozen schema (add-only within v1); exit 1 on a breaking change."""
    from contracts.schemas import compatibility_problems, current_schemas, load_frozen

    frozen, current = load_frozen(), current_schemas()
    problems = [f"{t}: removed" for t in frozen if t not in current]
    problems += [f"{t}: {p}" for t in frozen if t in current for p in compatibility_problems(frozen[t], current[t])]
    problems += [f"{t}: not frozen yet (cityops contracts export)" for t in current if t not in frozen]
    for p in problems:
        typer.echo(p)
    typer.echo(f"{len(current)} schemas, {len(problems)} problem(s)")
    raise typer.Exit(1 if problems else 0)


@app.command("events")
def events() -> None:
    """List every event type with its topic."""
    from contracts.registry import EVENT_TYPES
    from contracts.topics import topic_for_event

    for t in sorted(EVENT_TYPES):
        typer.echo(f"{t:55} {topic_for_event(t)}")


@app.command("asyncapi")
def asyncapi(output: str = typer.Option("-", help="File to write (YAML), - for stdout.")) -> None:
    """Write an AsyncAPI 3.0 document of every topic and event (the shared area task topic and each other unit's
    task topic included)."""
    import yaml

    from contracts.asyncapi import asyncapi_document
    from domain.catalogue import load_catalogue

    text = yaml.safe_dump(asyncapi_document(load_catalogue().own_topic_units()), allow_unicode=True, sort_keys=False)
    if output == "-":
        typer.echo(text)
    else:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
        typer.echo(f"wrote {output}")
