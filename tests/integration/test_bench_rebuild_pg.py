"""`cityops bench --rebuild-pg`: the rebuild phase also rebuilds every projection into a fresh PostgreSQL database,
against the same bare read of the log, finds the same checksum as the SQLite rebuild, and drops its database.

A real broker (started by the bench) and a real PostgreSQL (tests/integration/pg.py); no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys

from sqlalchemy import create_engine, text

from services.common.settings import REPO_ROOT
from tests.harness.ports import free_port, free_port_pair
from tests.integration.pg import postgres_server  # noqa: F401


def _databases(admin_url: str) -> set[str]:
    engine = create_engine(admin_url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(text("SELECT datname FROM pg_database")).scalars())
    finally:
        engine.dispose()


def test_quick_run_rebuilds_into_postgresql_too(tmp_path, postgres_server):  # noqa: F811
    kafka_port, http_port = free_port_pair(), free_port()
    out = tmp_path / "bench.json"
    before = _databases(postgres_server.admin_url)
    proc = subprocess.run(
        [sys.executable, "-m", "tools.bench", "--quick", "--kafka-port", str(kafka_port), "--http-port", str(http_port),
         "--state-dir", str(tmp_path / "state"), "--out", str(out), "--rebuild-pg", postgres_server.admin_url],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["errors"] == []
    replay = result["phases"]["replay"]
    pg = replay["postgresql"]
    assert pg["report"]["records_read"] == replay["report"]["records_read"] > 0  # the same log, read whole
    assert pg["report"]["tickets_folded"] == replay["report"]["tickets_folded"] > 0
    assert pg["same_checksum_as_sqlite"] is True and pg["events_per_s"] > 0
    rows = {r["figure"]: r for r in result["table"]}
    assert rows["replay: rebuild of all projections (PostgreSQL)"]["ratio"] > 0
    assert "PostgreSQL" in proc.stdout and "the same checksum as SQLite's" in proc.stdout
    assert _databases(postgres_server.admin_url) == before  # its scratch database is gone
