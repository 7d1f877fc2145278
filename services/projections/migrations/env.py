"""Alembic environment of the projection store (run through `services.projections.migrate`): only the projection tables."""

from __future__ import annotations

from alembic import context

from services.projections import models  # noqa: F401 - registers the tables on SQLModel.metadata
from services.projections.migrate import MIGRATIONS

MIGRATIONS.run_env(context)
