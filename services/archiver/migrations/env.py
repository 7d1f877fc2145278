"""Alembic environment of the archive (run through `services.archiver.migrate`): only the archive table."""

from __future__ import annotations

from alembic import context

from services.archiver import models  # noqa: F401 - registers the tables on SQLModel.metadata
from services.archiver.migrate import MIGRATIONS

MIGRATIONS.run_env(context)
