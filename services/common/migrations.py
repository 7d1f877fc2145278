"""One service's Alembic migrations: its scripts, its own version table, and only its own tables.

Services that keep their schema under Alembic (projections, archiver) may share one PostgreSQL
database, and the pipeline's bookkeeping tables belong to services.common: each service's
autogenerate and upgrades see only the tables it names, and record their revision in a version
table of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import engine_from_config, pool
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel


class ServiceMigrations:
    def __init__(self, scripts: Path, version_table: str, table_names: Callable[[], Collection[str]]) -> None:
        self.scripts = scripts
        self.version_table = version_table
        self._table_names = table_names  # called late: a service's models may import its migrate module

    def include_name(self, name: str | None, type_: str, parent_names: Any) -> bool:
        """Autogenerate sees only this service's tables (and their indexes and columns)."""
        return type_ != "table" or name in self._table_names()

    def include_object(self, obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        """Tables of the metadata that are not ours (other services register theirs too) are not compared."""
        table = obj if type_ == "table" else getattr(obj, "table", None)
        return table is None or table.name in self._table_names()

    def config(self, connection: Any = None) -> Config:
        config = Config()
        config.set_main_option("script_location", str(self.scripts))
        if connection is not None:
            config.attributes["connection"] = connection
        return config

    def upgrade(self, engine: Engine, revision: str = "head") -> None:
        with engine.begin() as connection:
            command.upgrade(self.config(connection), revision)

    def current_revision(self, engine: Engine) -> str | None:
        with engine.connect() as connection:
            return MigrationContext.configure(connection, opts={"version_table": self.version_table}).get_current_revision()

    def head_revision(self) -> str:
        return ScriptDirectory.from_config(self.config()).get_current_head() or ""

    def run_env(self, context: Any) -> None:
        """The body of the service's `migrations/env.py` (Alembic's `context` module passed in)."""
        options = {"target_metadata": SQLModel.metadata, "version_table": self.version_table,
                   "include_name": self.include_name, "include_object": self.include_object}
        if context.is_offline_mode():
            context.configure(url=context.config.get_main_option("sqlalchemy.url"), literal_binds=True, **options)
            with context.begin_transaction():
                context.run_migrations()
            return
        connection = context.config.attributes.get("connection")
        if connection is not None:
            self._run_online(context, connection, options)
            return
        engine = engine_from_config(context.config.get_section(context.config.config_ini_section, {}),
                                    prefix="sqlalchemy.", poolclass=pool.NullPool)
        with engine.connect() as connection:
            self._run_online(context, connection, options)

    @staticmethod
    def _run_online(context: Any, connection: Any, options: dict[str, Any]) -> None:
        context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite", compare_type=True,
                          **options)
        with context.begin_transaction():
            context.run_migrations()
