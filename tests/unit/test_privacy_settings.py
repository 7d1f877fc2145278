"""Production mode refuses to start intake on the built-in (or an empty or short) pseudonym key, naming the
setting; demo mode (`cityops up`, the tests) accepts it."""

from __future__ import annotations

import pytest

from services.common.settings import DEFAULT_PSEUDONYM_KEY, UnsafeSettings
from services.intake.app import create_app
from services.intake.settings import IntakeSettings

GOOD_KEY = "k7Qv2-9xLp0aZr4TqW8nYbE3sDf6GhJ1uVcXiOmN"


@pytest.mark.parametrize("key, problem", [
    (DEFAULT_PSEUDONYM_KEY, "built-in default"),
    ("", "is empty"),
    ("short-secret", "shorter than 32"),
])
def test_production_refuses_to_start_intake_with_a_weak_pseudonym_key(tmp_path, key, problem):
    settings = IntakeSettings(mode="production", pseudonym_key=key, db_url=f"sqlite:///{tmp_path / 'i.db'}")
    with pytest.raises(UnsafeSettings) as refused:
        create_app(settings)
    assert "CITYOPS_PSEUDONYM_KEY" in str(refused.value) and problem in str(refused.value)
    assert "CITYOPS_INTAKE_PSEUDONYM_KEY" in str(refused.value)


def test_production_starts_with_a_long_secret_and_demo_with_the_default(tmp_path):
    db = f"sqlite:///{tmp_path / 'i.db'}"
    create_app(IntakeSettings(mode="production", pseudonym_key=GOOD_KEY, db_url=db))
    create_app(IntakeSettings(mode="demo", db_url=db))


def test_mode_and_key_are_hub_wide_settings_and_production_is_the_default(monkeypatch):
    monkeypatch.delenv("CITYOPS_MODE", raising=False)
    assert IntakeSettings().mode == "production"
    monkeypatch.setenv("CITYOPS_MODE", "production")
    monkeypatch.setenv("CITYOPS_PSEUDONYM_KEY", "too-short")
    with pytest.raises(UnsafeSettings):
        IntakeSettings().check_secrets()
    monkeypatch.setenv("CITYOPS_PSEUDONYM_KEY", GOOD_KEY)
    IntakeSettings().check_secrets()


def test_the_demo_hub_runs_in_demo_mode(tmp_path):
    from tools.hub import Hub

    assert Hub(kafka_port=1, http_port=2, state_dir=tmp_path).env()["CITYOPS_MODE"] == "demo"


def test_cityops_privacy_erase_destroys_the_callers_key_and_prints_counts_never_the_number(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from contracts import events as ev
    from services.common.batch_state import table_of
    from services.common.store import create_tables, make_engine
    from services.intake.keystore import TABLES, caller_of, seal_caller
    from services.intake.privacy_cli import app

    monkeypatch.setenv("CITYOPS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("CITYOPS_MODE", "production")
    monkeypatch.setenv("CITYOPS_PSEUDONYM_KEY", GOOD_KEY)
    engine = make_engine(IntakeSettings().store_url())
    create_tables(engine, [table_of(t) for t in TABLES])
    from sqlmodel import Session
    with Session(engine) as s, s.begin():
        sealed = [seal_caller(s, GOOD_KEY, ev.Caller(name="赵六", phone="13812345678"), f"T-{i}")[0] for i in range(3)]
    result = CliRunner().invoke(app, ["erase", "--phone", "138-1234-5678"])
    assert result.exit_code == 0, result.output
    assert "erased 1 caller key(s)" in result.output and "3 ticket(s)" in result.output
    assert "5678" not in result.output and "赵六" not in result.output
    assert all(caller_of(engine, s, f"T-{i}") is None for i, s in enumerate(sealed) if s)
    monkeypatch.setenv("CITYOPS_PSEUDONYM_KEY", DEFAULT_PSEUDONYM_KEY)
    refused = CliRunner().invoke(app, ["erase", "--phone", "13812345678"])
    assert refused.exit_code != 0 and "CITYOPS_PSEUDONYM_KEY" in str(refused.exception)
