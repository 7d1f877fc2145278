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
