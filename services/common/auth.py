"""Who is calling: signed bearer tokens (JWT), roles, and the access rule every HTTP route declares.

Two kinds of token are accepted:
- the hub's own, HS256-signed with the hub key (`CITYOPS_AUTH_KEY` or the file `CITYOPS_AUTH_KEY_FILE`),
  minted by `cityops auth token` and by `cityops up` for its demo users;
- with an OIDC issuer configured, the city's single sign-on: RS/ES-signed tokens checked against the
  issuer's JWKS (a file or a URL), whose roles come from one claim mapped by `CITYOPS_AUTH_OIDC_ROLE_MAP`.

Every route states its rule with `Depends(access(...))`; tests/unit/test_route_access.py walks the app's
routes and fails on a route without one. Who acted is the token's subject, never a field of the body.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

HUB_ISSUER = "cityops"
AUDIENCE = "cityops"
HUB_ALGORITHM = "HS256"
# The hub key is a shared secret: shorter than this it can be brute-forced offline from one token.
MIN_KEY_BYTES = 32
# Verified tokens remembered until they expire (a hub's staff and apps reuse theirs on every call).
CHECKED_TOKENS_KEPT = 4096


class Role(StrEnum):
    operator = "operator"
    supervisor = "supervisor"
    unit = "unit"
    grid_worker = "grid-worker"
    app = "app"
    auditor = "auditor"


@dataclass(frozen=True)
class Principal:
    """The caller a valid token names: who, with which roles, bound to which unit, grids or client."""

    subject: str
    roles: frozenset[Role]
    unit: str | None = None
    grids: tuple[str, ...] = ()
    client_id: str | None = None
    issuer: str = HUB_ISSUER

    def has(self, *roles: Role) -> bool:
        return bool(self.roles.intersection(roles))

    @property
    def idempotency_scope(self) -> str:
        """Whose Idempotency-Keys these are: an app's client id, otherwise the subject (with its issuer when it
        is the city's SSO), so two callers using the same key never name the same submission."""
        if self.client_id:
            return f"client:{self.client_id}"
        return f"sub:{self.subject}" if self.issuer == HUB_ISSUER else f"sub:{self.issuer}|{self.subject}"

    def as_claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {"sub": self.subject, "roles": sorted(self.roles)}
        if self.unit:
            claims["unit"] = self.unit
        if self.grids:
            claims["grids"] = list(self.grids)
        if self.client_id:
            claims["client_id"] = self.client_id
        return claims


class AuthSettings(BaseSettings):
    """How tokens are checked (hub-wide: every HTTP door reads the same `CITYOPS_AUTH_*`)."""

    model_config = SettingsConfigDict(env_prefix="CITYOPS_AUTH_", extra="ignore")

    key: SecretStr | None = Field(default=None, description="The hub's signing key (at least 32 bytes).")
    key_file: Path | None = Field(default=None, description="File holding the hub's signing key (used when `key` is unset).")
    oidc_issuer: str | None = Field(default=None, description="The city's single sign-on issuer (`iss` of its tokens).")
    oidc_jwks: str | None = Field(default=None, description="The issuer's JWKS: a file path or an https URL.")
    oidc_audience: str | None = Field(default=None, description="Audience the city's tokens must carry; default: not checked.")
    oidc_roles_claim: str = Field(default="roles", description="Claim holding the caller's roles or groups.")
    oidc_role_map: dict[str, str] = Field(default_factory=dict, description="JSON: claim value → cityops role; "
                                          "values already named like a role map to themselves.")
    oidc_unit_claim: str = Field(default="unit", description="Claim holding a unit user's unit id.")
    oidc_grids_claim: str = Field(default="grids", description="Claim holding a grid worker's grid ids.")
    oidc_client_claim: str = Field(default="azp", description="Claim naming an app's client id.")
    leeway_s: int = Field(default=30, ge=0, description="Clock skew tolerated on expiry.")

    def signing_key(self) -> bytes | None:
        if self.key is not None:
            return self.key.get_secret_value().encode()
        if self.key_file is not None and self.key_file.exists():
            return self.key_file.read_bytes().strip()
        return None


class AuthError(Exception):
    """A token that does not prove who is calling (the message says why, never the token)."""


def new_key() -> str:
    return secrets.token_urlsafe(48)


def write_key_file(path: Path) -> str:
    """The hub key kept in `path` (0600), made on first use."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = new_key()
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key


def parse_ttl(text: str) -> timedelta:
    """`8h`, `30m`, `2d`, `45s` or a number of seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip()
    try:
        if text[-1:] in units:
            return timedelta(seconds=float(text[:-1]) * units[text[-1]])
        return timedelta(seconds=float(text))
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (e.g. 8h, 30m, 2d)") from None


def mint_token(key: bytes, principal: Principal, ttl: timedelta, now: datetime | None = None) -> str:
    """A hub token for `principal`, valid for `ttl`."""
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the hub key must be at least {MIN_KEY_BYTES} bytes")
    issued = now or datetime.now(UTC)
    claims = principal.as_claims() | {"iss": HUB_ISSUER, "aud": AUDIENCE, "iat": issued, "exp": issued + ttl,
                                      "jti": secrets.token_hex(8)}
    return jwt.encode(claims, key, algorithm=HUB_ALGORITHM)


def _roles(values: Iterable[str], role_map: Mapping[str, str]) -> frozenset[Role]:
    roles = set()
    for value in values:
        name = role_map.get(value, value)
        if name in Role._value2member_map_:
            roles.add(Role(name))
    return frozenset(roles)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.split() if " " in value else [value]
    return [str(v) for v in value]


@dataclass
class TokenVerifier:
    """Checks a bearer token and says who it names. Built once per app; nothing is read until first use."""

    settings: AuthSettings
    jwks_loader: Callable[[str], dict[str, Any]] | None = None
    _hub_key: bytes | None = field(default=None, init=False)
    _checked: dict[str, tuple[Principal, float]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._hub_key = self.settings.signing_key()
        if self._hub_key is None and not self.settings.oidc_issuer:
            raise AuthError("no way to check tokens: set CITYOPS_AUTH_KEY (or CITYOPS_AUTH_KEY_FILE), "
                            "or configure CITYOPS_AUTH_OIDC_ISSUER and CITYOPS_AUTH_OIDC_JWKS")
        if self._hub_key is not None and len(self._hub_key) < MIN_KEY_BYTES:
            raise AuthError(f"CITYOPS_AUTH_KEY is shorter than {MIN_KEY_BYTES} bytes")

    def verify(self, token: str) -> Principal:
        """Who the token names. A token already checked is answered from a small cache until it expires:
        checking one costs ~0.3-0.6 ms here (two decodes and an HMAC), paid on every call otherwise."""
        cached = self._checked.get(token)
        if cached is not None and time.time() < cached[1]:
            return cached[0]
        principal, expires = self._verify_uncached(token)
        if len(self._checked) >= CHECKED_TOKENS_KEPT:
            self._checked.clear()  # a burst of distinct tokens: start over rather than track recency
        self._checked[token] = (principal, expires)
        return principal

    def _verify_uncached(self, token: str) -> tuple[Principal, float]:
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.InvalidTokenError:
            raise AuthError("malformed token") from None
        if issuer == HUB_ISSUER and self._hub_key is not None:
            return self._verify_hub(token, self._hub_key)
        if self.settings.oidc_issuer and issuer == self.settings.oidc_issuer:
            return self._verify_oidc(token)
        raise AuthError("token from an issuer this hub does not trust")

    def _verify_hub(self, token: str, key: bytes) -> tuple[Principal, float]:
        claims = self._decode(token, key, [HUB_ALGORITHM], AUDIENCE, HUB_ISSUER)
        return Principal(subject=str(claims["sub"]), roles=_roles(_as_list(claims.get("roles")), {}),
                         unit=claims.get("unit"), grids=tuple(_as_list(claims.get("grids"))),
                         client_id=claims.get("client_id")), float(claims["exp"])

    def _verify_oidc(self, token: str) -> tuple[Principal, float]:
        s = self.settings
        kid = jwt.get_unverified_header(token).get("kid")
        key = self._oidc_keys().get(kid) if kid else next(iter(self._oidc_keys().values()), None)
        if key is None:
            raise AuthError("token signed with a key the issuer's JWKS does not list")
        claims = self._decode(token, key, ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"], s.oidc_audience,
                              s.oidc_issuer)
        return Principal(subject=str(claims["sub"]), roles=_roles(_as_list(claims.get(s.oidc_roles_claim)), s.oidc_role_map),
                         unit=claims.get(s.oidc_unit_claim), grids=tuple(_as_list(claims.get(s.oidc_grids_claim))),
                         client_id=claims.get(s.oidc_client_claim), issuer=str(s.oidc_issuer)), float(claims["exp"])

    def _decode(self, token: str, key: Any, algorithms: list[str], audience: str | None, issuer: str | None) -> dict[str, Any]:
        try:
            return jwt.decode(token, key, algorithms=algorithms, audience=audience, issuer=issuer,
                              leeway=self.settings.leeway_s,
                              options={"require": ["exp", "sub", "iss"], "verify_aud": audience is not None})
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {type(exc).__name__}") from None

    @cached_property
    def _oidc_key_set(self) -> dict[str, Any]:
        source = self.settings.oidc_jwks
        if not source:
            raise AuthError("CITYOPS_AUTH_OIDC_JWKS is not set")
        document = self.jwks_loader(source) if self.jwks_loader else _load_jwks(source)
        keys = jwt.PyJWKSet.from_dict(document).keys
        return {k.key_id or str(i): k.key for i, k in enumerate(keys)}

    def _oidc_keys(self) -> dict[str, Any]:
        return self._oidc_key_set


def _load_jwks(source: str) -> dict[str, Any]:
    if source.startswith(("https://", "http://")):
        import httpx  # only when a URL is configured

        response = httpx.get(source, timeout=10)
        response.raise_for_status()
        return dict(response.json())
    return dict(json.loads(Path(source).read_text()))


# ---------------------------------------------------------------------------- FastAPI

_bearer = HTTPBearer(auto_error=False, description="A cityops token (`cityops auth token`) or the city's SSO token.")


@dataclass(frozen=True)
class Access:
    """A route's access rule: the roles that may call it (empty and public: anyone, no token)."""

    roles: frozenset[Role]
    public: bool = False

    # async: FastAPI runs a plain-def dependency in its thread pool, two thread hops per request for a check
    # that only reads the token cache (a token seen before) or verifies a signature (tens of microseconds).
    async def __call__(self, request: Request,
                       credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal | None:
        if self.public:
            return None
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        verifier: TokenVerifier | None = getattr(request.app.state, "token_verifier", None)
        if verifier is None:  # fail closed: an app that cannot check tokens lets nobody in
            raise HTTPException(503, "this service has no way to check tokens (see CITYOPS_AUTH_*)")
        try:
            principal = verifier.verify(credentials.credentials)
        except AuthError as exc:
            raise HTTPException(401, str(exc), headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
        # Known before the role check, so the audit trail names who was refused.
        request.state.principal = principal
        if not principal.has(*self.roles):
            raise HTTPException(403, f"this needs the role {' or '.join(sorted(self.roles))}")
        return principal


def access(*roles: Role) -> Access:
    """The rule for a route callable by any of `roles`."""
    if not roles:
        raise ValueError("name at least one role (or use PUBLIC)")
    return Access(frozenset(roles))


@dataclass(frozen=True)
class PublicAccess(Access):
    """The rule of a route anyone may call. It takes no credentials, so the OpenAPI shows no security
    requirement for it (a route depending on the bearer scheme would list one)."""

    async def __call__(self) -> None:  # type: ignore[override]  # no request, no credentials: that is the point
        return None


PUBLIC = PublicAccess(frozenset(), public=True)


def install_verifier(app: Any, settings: AuthSettings | None = None, verifier: TokenVerifier | None = None) -> None:
    """Give an app its token verifier (checked at startup: a hub without a key or SSO refuses to start)."""
    app.state.token_verifier = verifier or TokenVerifier(settings or AuthSettings())


def route_access(route: Any) -> list[Access]:
    """The access rules a FastAPI route declares (for the route table test and the OpenAPI)."""
    found: list[Access] = []
    dependant = getattr(route, "dependant", None)
    stack = list(dependant.dependencies) if dependant is not None else []
    while stack:
        dep = stack.pop()
        if isinstance(dep.call, Access):
            found.append(dep.call)
        stack.extend(dep.dependencies)
    return found


def api_routes(app: Any) -> list[tuple[str, str, Any]]:
    """(method, full path, route) of every API route of a FastAPI app, included routers' routes with their
    prefix and router-level dependencies (FastAPI keeps those apart from `app.routes` since 0.16x)."""
    from fastapi.routing import APIRoute, iter_route_contexts

    return [(method, str(context.path), context) for context in iter_route_contexts(app.routes)
            if isinstance(context.original_route, APIRoute) for method in sorted(set(context.methods or ()) - {"HEAD"})]
