"""The SLA app factory: builds without touching the network, takes an injected or a file clock."""

from __future__ import annotations

from datetime import UTC, datetime

from services.sla.app import FileClock, create_app
from services.sla.handlers import EVENT_TYPES, TOPICS
from services.sla.settings import SlaSettings


def test_create_app_connects_to_nothing_and_wires_the_clock(tmp_path):
    now = datetime(2025, 10, 9, 8, tzinfo=UTC)
    settings = SlaSettings(kafka_bootstrap="127.0.0.1:1", db_url=f"sqlite:///{tmp_path / 'sla.db'}")
    app = create_app(settings, clock=lambda: now)
    pipeline = app.context.get("pipeline")
    assert pipeline.clock() == now and pipeline.topics == TOPICS
    assert {t.decode() for t in pipeline.event_types} == set(EVENT_TYPES)
    assert not (tmp_path / "sla.db").exists()  # nothing opened before the app starts


def test_the_file_clock_follows_the_file(tmp_path):
    path = tmp_path / "now.txt"
    path.write_text("2026-02-14T09:00:00+08:00")
    clock = FileClock(path)
    assert clock() == datetime.fromisoformat("2026-02-14T09:00:00+08:00")
    path.write_text("2026-02-24T17:31:00+08:00\n")
    assert clock().day == 24
    settings = SlaSettings(kafka_bootstrap="127.0.0.1:1", db_url=f"sqlite:///{tmp_path / 'sla.db'}", clock_file=path)
    assert create_app(settings).context.get("pipeline").clock().day == 24
