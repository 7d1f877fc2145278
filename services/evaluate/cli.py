from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("rates")
def rates(scope: str = typer.Option("unit", help="unit, grid or district."),
          min_callbacks: int = typer.Option(0, help="Hide rows with fewer callbacks: rankings on tiny samples mislead.")) -> None:
    """Response, resolution and satisfaction rates, as the evaluate service keeps them (its own store)."""
    from rich.console import Console
    from rich.table import Table
    from sqlmodel import Session

    from services.common.store import make_engine

    from .handlers import rates_table
    from .settings import EvaluateSettings

    engine = make_engine(EvaluateSettings().store_url())
    with Session(engine) as session:
        rows = [r for r in rates_table(session, scope) if r["callbacks"] >= min_callbacks]
    table = Table(title=f"rates per {scope} (n = callbacks; response = signed for within the limit; "
                        "satisfaction excludes unreasonable demands)")
    for col in ("key", "assigned", "response_rate", "callbacks", "resolution_rate", "satisfaction_rate", "reopened"):
        table.add_column(col)
    fmt = lambda v: "-" if v is None else (f"{v:.1%}" if isinstance(v, float) else str(v))  # noqa: E731
    for r in rows:
        table.add_row(*(fmt(r[c]) for c in ("key", "assigned", "response_rate", "callbacks", "resolution_rate",
                                             "satisfaction_rate", "reopened")))
    Console().print(table)


@app.command("lowest-level")
def lowest_level(scope: str = typer.Option("district", help="grid, district or city.")) -> None:
    """The solved-at-the-lowest-level rate (基层解决率) as the evaluate service keeps it: of the closed tickets that
    were handled, the share a grid or community handled without escalation (docs/grid-workers.md)."""
    from rich.console import Console
    from rich.table import Table
    from sqlmodel import Session

    from services.common.store import make_engine

    from .handlers import lowest_level_table
    from .settings import EvaluateSettings

    engine = make_engine(EvaluateSettings().store_url())
    with Session(engine) as session:
        rows = lowest_level_table(session, scope)
    table = Table(title=f"solved at the lowest level per {scope} (closed, handled tickets)")
    columns = ("key", "handled_closed", "solved_lowest", "on_the_spot", "lowest_level_rate")
    for col in columns:
        table.add_column(col)
    for r in rows:
        rate = r["lowest_level_rate"]
        table.add_row(*(str(r[c]) for c in columns[:-1]), "-" if rate is None else f"{rate:.1%}")
    Console().print(table)
