"""`cityops privacy erase --phone NUMBER`: erase a caller in intake's store (the same as POST /privacy/erasures)."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)


@app.callback()
def privacy() -> None:
    """Callers' personal data (docs/privacy.md)."""


@app.command("erase")
def erase_command(phone: str = typer.Option(..., "--phone", help="The caller's phone number, in any spacing.")) -> None:
    """Destroy the data key of the caller with this phone in intake's key store (CITYOPS_INTAKE_DB_URL, else
    the SQLite file in CITYOPS_STATE_DIR) and mask it in intake's status view: their name and phone become
    unrecoverable in every copy the hub keeps. Prints what it erased, never the number."""
    from services.common.batch_state import table_of
    from services.common.store import create_tables, make_engine

    from .keystore import TABLES, erase
    from .models import TicketStatus
    from .settings import IntakeSettings

    settings = IntakeSettings()
    settings.check_secrets()
    engine = make_engine(settings.store_url())
    create_tables(engine, [table_of(TicketStatus), *(table_of(t) for t in TABLES)])
    erased = erase(engine, settings.pseudonym_key, phone)
    engine.dispose()
    typer.echo(erased.summary())
