"""Schema migrations of the archive (Alembic, scripts in `migrations/`, own version table)."""

from __future__ import annotations

from pathlib import Path

from services.common.migrations import ServiceMigrations


def _table_names() -> frozenset[str]:
    from .models import ARCHIVE_TABLE_NAMES

    return frozenset(ARCHIVE_TABLE_NAMES)


MIGRATIONS = ServiceMigrations(Path(__file__).with_name("migrations"), "alembic_version_archiver", _table_names)
upgrade = MIGRATIONS.upgrade  # what the service and the rebuild call
