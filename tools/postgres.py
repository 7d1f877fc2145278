"""Scratch databases on a PostgreSQL server: made for one run (the bench's rebuild, a test) and dropped after it.

`admin_url` is the URL of a database whose user may CREATE DATABASE (postgresql+psycopg://USER@HOST:PORT/DB)."""

from __future__ import annotations

import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def create_database(admin_url: str, prefix: str = "cityops") -> str:
    """Create a uniquely named database on the server of `admin_url`; return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _autocommit(admin_url, f'CREATE DATABASE "{name}"')
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    """Drop the database of `url`, closing any session still connected to it (PostgreSQL 13 and later)."""
    name = make_url(url).database
    _autocommit(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_version(url: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar())
    finally:
        engine.dispose()


def _autocommit(admin_url: str, statement: str) -> None:
    # CREATE and DROP DATABASE cannot run inside a transaction block.
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()
