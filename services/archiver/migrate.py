"""Schema migrations of the archive (Alembic, scripts in `migrations/`, own version table)."""

from __future__ import annotations

from pathlib import Path

from services.common.migrations import ServiceMigrations


def _table_names() -> frozenset[str]:
    from .models import ARCHIVE_TABLE_NAMES

    return frozenset(ARCHIVE_TABLE_NAMES)


MIGRATIONS = ServiceMigrations(Path(__file__).with_name("migrations"), "alembic_version_archiver", _table_names)
VERSION_TABLE = MIGRATIONS.version_table
include_name = MIGRATIONS.include_name
include_object = MIGRATIONS.include_object
alembic_config = MIGRATIONS.config
upgrade = MIGRATIONS.upgrade
current_revision = MIGRATIONS.current_revision
head_revision = MIGRATIONS.head_revision
