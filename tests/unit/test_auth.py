"""Tokens: the hub's own (HS256) and a city's SSO (OIDC, RS256 against a JWKS file), the CLI that mints and
reads them, and intake refusing to start when it has no way to check them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from typer.testing import CliRunner

from services.common.auth import AuthError, AuthSettings, Principal, Role, TokenVerifier, mint_token, parse_ttl
from tests.harness.auth import TEST_KEY

ISSUER = "https://sso.city.example/realms/staff"
ROLE_MAP = {"12345-callcentre": "operator", "12345-supervisors": "supervisor", "discipline-inspection": "auditor"}


def rsa_key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def sso(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A city's SSO: a signing key published in a JWKS file (kid sso-1), and a key it does not publish."""
    key, stranger = rsa_key(), rsa_key()
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks = tmp_path_factory.mktemp("sso") / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "sso-1", "use": "sig", "alg": "RS256"}]}))
    return {"key": key, "stranger": stranger, "jwks": jwks}


def sso_settings(sso: dict[str, Any], **extra: Any) -> AuthSettings:
    return AuthSettings(oidc_issuer=ISSUER, oidc_jwks=str(sso["jwks"]), oidc_audience="cityops", oidc_roles_claim="groups",
                        oidc_role_map=ROLE_MAP, **extra)


def sso_token(key: Any, *, kid: str = "sso-1", issuer: str = ISSUER, groups: Any = ("12345-callcentre",),
              expires_in: timedelta = timedelta(minutes=10), **claims: Any) -> str:
    body = {"sub": "zhang.wei", "iss": issuer, "aud": "cityops", "groups": list(groups), "azp": "staff-portal",
            "exp": datetime.now(UTC) + expires_in, "iat": datetime.now(UTC), **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


# --- the city's SSO -------------------------------------------------------------------------------

def test_an_sso_token_maps_its_groups_to_roles(sso: dict[str, Any]) -> None:
    verifier = TokenVerifier(sso_settings(sso))
    principal = verifier.verify(sso_token(sso["key"], groups=["12345-callcentre", "12345-supervisors", "canteen"]))
    assert principal.subject == "zhang.wei" and principal.issuer == ISSUER
    assert principal.roles == {Role.operator, Role.supervisor}  # an unmapped group gives nothing
    assert principal.client_id == "staff-portal"


def test_a_group_already_named_like_a_role_maps_to_itself_and_a_unit_claim_binds(sso: dict[str, Any]) -> None:
    principal = TokenVerifier(sso_settings(sso)).verify(sso_token(sso["key"], groups=["unit"], unit="water"))
    assert principal.roles == {Role.unit} and principal.unit == "water"


@pytest.mark.parametrize("case, make, why", [
    ("unknown kid", lambda s: sso_token(s["key"], kid="sso-2"), "does not list"),
    ("not the issuer's key", lambda s: sso_token(s["stranger"]), "InvalidSignatureError"),
    ("wrong issuer", lambda s: sso_token(s["key"], issuer="https://evil.example"), "does not trust"),
    ("expired", lambda s: sso_token(s["key"], expires_in=timedelta(minutes=-5)), "expired"),
    ("wrong audience", lambda s: sso_token(s["key"], aud="another-app"), "InvalidAudienceError"),
    ("unsigned", lambda s: jwt.encode({"sub": "x", "iss": ISSUER, "exp": datetime.now(UTC) + timedelta(minutes=5)}, None,
                                      algorithm="none"), "InvalidAlgorithmError"),
])
def test_an_sso_token_that_proves_nothing_is_refused(sso: dict[str, Any], case: str, make: Any, why: str) -> None:
    with pytest.raises(AuthError, match=why):
        TokenVerifier(sso_settings(sso)).verify(make(sso))


def test_an_sso_token_is_refused_where_no_sso_is_configured(sso: dict[str, Any]) -> None:
    with pytest.raises(AuthError, match="does not trust"):
        TokenVerifier(AuthSettings(key=TEST_KEY)).verify(sso_token(sso["key"]))


def test_the_role_map_comes_from_the_environment_as_json(sso: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYOPS_AUTH_OIDC_ISSUER", ISSUER)
    monkeypatch.setenv("CITYOPS_AUTH_OIDC_JWKS", str(sso["jwks"]))
    monkeypatch.setenv("CITYOPS_AUTH_OIDC_ROLES_CLAIM", "groups")
    monkeypatch.setenv("CITYOPS_AUTH_OIDC_ROLE_MAP", json.dumps({"discipline-inspection": "auditor"}))
    principal = TokenVerifier(AuthSettings()).verify(sso_token(sso["key"], groups=["discipline-inspection"], aud="x"))
    assert principal.roles == {Role.auditor}


# --- the hub's own tokens -------------------------------------------------------------------------

def test_a_hub_token_names_its_principal_and_expires() -> None:
    verifier = TokenVerifier(AuthSettings(key=TEST_KEY))
    grid = Principal("gw-1", frozenset({Role.grid_worker}), grids=("g-1", "g-2"))
    assert verifier.verify(mint_token(TEST_KEY.encode(), grid, timedelta(minutes=5))) == grid
    old = mint_token(TEST_KEY.encode(), grid, timedelta(minutes=5), now=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(old)


def test_a_short_key_or_no_key_at_all_is_refused() -> None:
    with pytest.raises(AuthError, match="shorter than 32"):
        TokenVerifier(AuthSettings(key="short"))
    with pytest.raises(AuthError, match="CITYOPS_AUTH_KEY.*CITYOPS_AUTH_OIDC_ISSUER"):
        TokenVerifier(AuthSettings(key=None, key_file=None, oidc_issuer=None))


def test_idempotency_scopes_keep_callers_apart() -> None:
    a = Principal("a", frozenset({Role.app}), client_id="app-a")
    b = Principal("a", frozenset({Role.app}), client_id="app-b")
    sso_user = Principal("a", frozenset({Role.operator}), issuer=ISSUER)
    hub_user = Principal("a", frozenset({Role.operator}))
    assert len({p.idempotency_scope for p in (a, b, sso_user, hub_user)}) == 4


@pytest.mark.parametrize("text, seconds", [("8h", 8 * 3600), ("30m", 1800), ("2d", 172800), ("45s", 45), ("90", 90)])
def test_ttls(text: str, seconds: int) -> None:
    assert parse_ttl(text) == timedelta(seconds=seconds)


# --- intake refuses to start without a way to check tokens ----------------------------------------

def _no_auth_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KEY", "KEY_FILE", "OIDC_ISSUER", "OIDC_JWKS"):
        monkeypatch.delenv(f"CITYOPS_AUTH_{name}", raising=False)


def test_intake_refuses_to_start_without_a_key_or_an_sso(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from services.intake.app import NoWayToCheckTokens, create_app
    from services.intake.settings import IntakeSettings

    _no_auth_env(monkeypatch)
    app = create_app(IntakeSettings(state_dir=tmp_path))  # building it (for its routes, its OpenAPI) is fine
    with pytest.raises(NoWayToCheckTokens, match="CITYOPS_AUTH_KEY"), TestClient(app):
        pass
    # and were it served anyway, nobody gets in
    assert TestClient(app).get("/tickets", headers={"Authorization": "Bearer x"}).status_code == 503


def test_cityops_intake_serve_says_which_settings_are_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    from services.intake.cli import serve

    _no_auth_env(monkeypatch)
    monkeypatch.setenv("CITYOPS_STATE_DIR", str(tmp_path))
    with pytest.raises(typer.Exit) as stopped:
        serve(host=None, port=None)  # type: ignore[arg-type]  # typer's defaults
    assert stopped.value.exit_code == 2
    said = capsys.readouterr().err
    assert "refuses to start" in said and "CITYOPS_AUTH_KEY" in said


# --- cityops auth ---------------------------------------------------------------------------------

@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _no_auth_env(monkeypatch)
    path = tmp_path / "auth.key"
    path.write_text(TEST_KEY + "\n")
    return path


def run(*args: str) -> Any:
    from tools.auth_cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_mints_a_token_the_verifier_accepts(key_file: Path) -> None:
    minted = run("token", "--role", "grid-worker", "--grid", "g-1", "--grid", "g-2", "--subject", "gw-7", "--ttl", "30m",
                 "--key-file", str(key_file))
    assert minted.exit_code == 0, minted.output
    principal = TokenVerifier(AuthSettings(key=TEST_KEY)).verify(minted.output.strip())
    assert principal == Principal("gw-7", frozenset({Role.grid_worker}), grids=("g-1", "g-2"))
    expires = jwt.decode(minted.output.strip(), options={"verify_signature": False})["exp"]
    assert 29 * 60 < expires - datetime.now(UTC).timestamp() <= 30 * 60


def test_cli_verify_prints_who_a_token_names(key_file: Path) -> None:
    app_token = run("token", "--role", "app", "--client", "open311-demo", "--key-file", str(key_file)).output.strip()
    shown = run("verify", app_token, "--key-file", str(key_file))
    assert shown.exit_code == 0
    assert "subject: open311-demo" in shown.output and "roles: app" in shown.output and "client: open311-demo" in shown.output
    as_json = json.loads(run("verify", app_token, "--json", "--key-file", str(key_file)).output)
    assert as_json["roles"] == ["app"] and as_json["issuer"] == "cityops"


@pytest.mark.parametrize("args, complaint", [
    (["--role", "unit"], "--unit"), (["--role", "grid-worker"], "--grid"), (["--role", "app"], "--client"),
    (["--role", "mayor"], "mayor"), (["--role", "operator", "--ttl", "soon"], "soon"),
])
def test_cli_refuses_a_token_that_would_not_be_bound(key_file: Path, args: list[str], complaint: str) -> None:
    result = run("token", *args, "--key-file", str(key_file))
    assert result.exit_code == 2 and complaint in result.output


def test_cli_verify_refuses_a_token_of_another_key(key_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    other.write_text("another-key-" + "z" * 40)
    foreign = run("token", "--role", "operator", "--key-file", str(other)).output.strip()
    result = run("verify", foreign, "--key-file", str(key_file))
    assert result.exit_code == 1 and "not valid" in result.output


def test_cli_without_any_key_says_where_to_put_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import tools.auth_cli

    _no_auth_env(monkeypatch)
    monkeypatch.setattr(tools.auth_cli, "HUB_KEY_FILE", tmp_path / "absent.key")
    result = run("token", "--role", "operator")
    assert result.exit_code == 2 and "CITYOPS_AUTH_KEY" in result.output


def test_a_remembered_token_is_refused_once_it_expires() -> None:
    import time

    from services.common import auth as auth_module

    key = auth_module.new_key()
    checker = auth_module.TokenVerifier(auth_module.AuthSettings(key=key, leeway_s=0))
    token = auth_module.mint_token(key.encode(), auth_module.Principal("op-1", frozenset({auth_module.Role.operator})),
                                   timedelta(seconds=2))
    assert checker.verify(token).subject == "op-1"
    assert checker.verify(token).subject == "op-1"  # from the cache
    time.sleep(2.5)
    with pytest.raises(auth_module.AuthError, match="expired"):
        checker.verify(token)
