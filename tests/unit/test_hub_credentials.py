"""`cityops up`'s credentials: the hub key kept 0600 in its state dir, a token per demo user written 0600 to the
file it names, and what every process it starts is given."""

from __future__ import annotations

import stat
from pathlib import Path

from services.common.auth import AuthSettings, Role, TokenVerifier
from tools.credentials import DEMO_USERS, env_name, hub_credentials


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_hub_key_and_the_demo_tokens(tmp_path: Path) -> None:
    credentials = hub_credentials(tmp_path / "hub")
    assert mode(credentials.key_file) == 0o600 and mode(credentials.tokens_file) == 0o600
    verifier = TokenVerifier(AuthSettings(key_file=credentials.key_file))
    roles = {user: verifier.verify(token).roles for user, token in credentials.tokens.items()}
    assert {"operator", "supervisor", "auditor", "app", "unit", "grid-worker"} <= set(roles)
    assert roles["unit"] == {Role.unit} and verifier.verify(credentials.tokens["unit"]).unit == "water"
    assert verifier.verify(credentials.tokens["app"]).client_id == "demo-app"
    lines = dict(line.split("=", 1) for line in credentials.tokens_file.read_text().splitlines() if not line.startswith("#"))
    assert lines == {env_name(user): token for user, token in credentials.tokens.items()}
    assert set(credentials.tokens) == set(DEMO_USERS)


def test_every_process_gets_the_key_file_and_the_simulated_staff_their_tokens(tmp_path: Path) -> None:
    credentials = hub_credentials(tmp_path)
    env = credentials.env()
    assert env["CITYOPS_AUTH_KEY_FILE"] == str(credentials.key_file)
    verifier = TokenVerifier(AuthSettings(key_file=credentials.key_file))
    assert verifier.verify(env["CITYOPS_UNIT_HOTLINE_TOKEN"]).roles == {Role.operator}
    assert verifier.verify(env["CITYOPS_UNIT_SUPERVISOR_TOKEN"]).roles == {Role.supervisor}


def test_the_key_is_kept_across_runs_and_the_tokens_are_fresh(tmp_path: Path) -> None:
    first, second = hub_credentials(tmp_path), hub_credentials(tmp_path)
    assert first.key_file.read_text() == second.key_file.read_text()
    assert first.tokens["operator"] != second.tokens["operator"]  # each token has its own id
    TokenVerifier(AuthSettings(key_file=second.key_file)).verify(first.tokens["operator"])  # still valid


def test_the_hub_passes_them_on(tmp_path: Path) -> None:
    from tools.hub import Hub

    hub = Hub(kafka_port=1, http_port=2, state_dir=tmp_path)
    assert hub.env()["CITYOPS_AUTH_KEY_FILE"] == str(tmp_path / "auth.key")
    assert hub.env()["CITYOPS_UNIT_HOTLINE_TOKEN"] == hub.credentials.tokens["callback-desk"]
