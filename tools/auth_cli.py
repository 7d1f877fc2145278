"""`cityops auth`: mint a hub token for a role, and say who a token names.

    cityops auth token --role operator --subject op-7 --ttl 8h
    cityops auth token --role unit --unit water
    cityops auth token --role grid-worker --grid grid-east-1-a-1 --grid grid-east-1-a-2
    cityops auth token --role app --client open311-demo
    cityops auth verify TOKEN

The hub key comes from --key-file, else `CITYOPS_AUTH_KEY` / `CITYOPS_AUTH_KEY_FILE`, else the key file
`cityops up` keeps in its state dir (.state/hub/auth.key). `verify` also accepts the city's SSO tokens
when `CITYOPS_AUTH_OIDC_*` is configured.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import typer

from services.common.auth import AuthError, AuthSettings, Principal, Role, TokenVerifier, mint_token, parse_ttl
from services.common.settings import REPO_ROOT

app = typer.Typer(no_args_is_help=True)

HUB_KEY_FILE = REPO_ROOT / ".state" / "hub" / "auth.key"
_KEY_FILE = typer.Option(None, "--key-file", help="File holding the hub key (default: CITYOPS_AUTH_KEY, "
                         "CITYOPS_AUTH_KEY_FILE, then .state/hub/auth.key).")


def auth_settings(key_file: Path | None) -> AuthSettings:
    settings = AuthSettings()
    if key_file is not None:
        if not key_file.exists():
            raise typer.BadParameter(f"no key file {key_file}", param_hint="--key-file")
        return settings.model_copy(update={"key": None, "key_file": key_file})
    if settings.signing_key() is None and HUB_KEY_FILE.exists():
        return settings.model_copy(update={"key_file": HUB_KEY_FILE})
    return settings


def principal_for(role: list[Role], subject: str | None, unit: str | None, grids: list[str], client: str | None) -> Principal:
    """The principal a token is minted for; a unit, grid worker or app token must name what it is bound to."""
    roles = frozenset(role)
    if Role.unit in roles and not unit:
        raise typer.BadParameter("a unit token is bound to one unit: give --unit", param_hint="--unit")
    if Role.grid_worker in roles and not grids:
        raise typer.BadParameter("a grid worker's token names its grids: give --grid", param_hint="--grid")
    if Role.app in roles and not client:
        raise typer.BadParameter("an app's token is bound to its client id: give --client", param_hint="--client")
    default = unit if Role.unit in roles else client if Role.app in roles else "-".join(sorted(roles))
    return Principal(subject=subject or str(default), roles=roles, unit=unit, grids=tuple(grids), client_id=client)


@app.command("token")
def token(role: list[Role] = typer.Option(..., "--role", help="Role(s) of the caller: operator, supervisor, unit, "
                                          "grid-worker, app, auditor (repeat for several)."),
          unit: str | None = typer.Option(None, "--unit", help="The unit a unit token is bound to."),
          grid: list[str] = typer.Option([], "--grid", help="A grid a grid worker's token covers (repeat for several)."),
          subject: str | None = typer.Option(None, "--subject", help="Who the token names (default: the unit, the "
                                             "client or the role)."),
          client: str | None = typer.Option(None, "--client", help="An app's client id (its Idempotency-Keys and "
                                            "Open311 requests are its own)."),
          ttl: str = typer.Option("8h", "--ttl", help="How long the token is valid: 8h, 30m, 2d, 45s."),
          key_file: Path | None = _KEY_FILE) -> None:
    """Print a hub token (a signed JWT) for a role."""
    key = auth_settings(key_file).signing_key()
    if key is None:
        typer.echo("no hub key: set CITYOPS_AUTH_KEY or CITYOPS_AUTH_KEY_FILE, or pass --key-file "
                   "(`cityops up` writes .state/hub/auth.key)", err=True)
        raise typer.Exit(2)
    try:
        lifetime = parse_ttl(ttl)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--ttl") from None
    try:
        typer.echo(mint_token(key, principal_for(role, subject, unit, grid, client), lifetime))
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@app.command("verify")
def verify(token: str = typer.Argument(..., help="The token (without `Bearer `)."), key_file: Path | None = _KEY_FILE,
           as_json: bool = typer.Option(False, "--json", help="Print JSON instead of lines.")) -> None:
    """Say who a token names (subject, roles, unit, grids, client, issuer, expiry); exit 1 if it is not valid."""
    try:
        principal = TokenVerifier(auth_settings(key_file)).verify(token.removeprefix("Bearer ").strip())
    except AuthError as exc:
        typer.echo(f"not valid: {exc}", err=True)
        raise typer.Exit(1) from None
    import jwt

    expires = jwt.decode(token.removeprefix("Bearer ").strip(), options={"verify_signature": False}).get("exp")
    facts = {"subject": principal.subject, "roles": sorted(principal.roles), "unit": principal.unit,
             "grids": list(principal.grids), "client": principal.client_id, "issuer": principal.issuer,
             "expires": datetime.fromtimestamp(expires, UTC).isoformat() if expires else None}
    if as_json:
        typer.echo(json.dumps(facts))
        return
    for name, value in facts.items():
        if value not in (None, []):
            typer.echo(f"{name}: {', '.join(value) if isinstance(value, list) else value}")
