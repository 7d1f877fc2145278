"""Schema migrations of the archive (Alembic, scripts in `migrations/`, own version table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version_archiver"


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    if type_ == "table":
        from .models import ARCHIVE_TABLE_NAMES

        return name in ARCHIVE_TABLE_NAMES
    return True


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Tables of the metadata that are not ours (other services register theirs too) are not compared."""
    from .models import ARCHIVE_TABLE_NAMES

    table = obj if type_ == "table" else getattr(obj, "table", None)
    return table is None or table.name in ARCHIVE_TABLE_NAMES


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
