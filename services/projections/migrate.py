"""Schema migrations of the projection store (Alembic, scripts in `migrations/`).

The live service upgrades its store on start; `rebuild` upgrades the fresh database it builds. The
version is kept in its own table so that the archiver's migrations can share a PostgreSQL database.
"""

from __future__ import annotations

from pathlib import Path

from services.common.migrations import ServiceMigrations


def _table_names() -> frozenset[str]:
    from .models import PROJECTION_TABLE_NAMES

    return frozenset(PROJECTION_TABLE_NAMES)


MIGRATIONS = ServiceMigrations(Path(__file__).with_name("migrations"), "alembic_version_projections", _table_names)
upgrade = MIGRATIONS.upgrade  # what the service and the rebuild call
