"""Schema migrations of the projection store (Alembic, scripts in `migrations/`).

The live service upgrades its store on start; `rebuild` upgrades the fresh database it builds. The
version is kept in its own table so that the archiver's migrations can share a PostgreSQL database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version_projections"


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Autogenerate sees only the projection tables (and their indexes and columns)."""
    if type_ == "table":
        from .models import PROJECTION_TABLE_NAMES

        return name in PROJECTION_TABLE_NAMES
    return True


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Tables of the metadata that are not ours (other services register theirs too) are not compared."""
    from .models import PROJECTION_TABLE_NAMES

    table = obj if type_ == "table" else getattr(obj, "table", None)
    return table is None or table.name in PROJECTION_TABLE_NAMES


def alembic_config(connection: Any = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head() or ""
