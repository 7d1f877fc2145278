"""Single sign-on: the OpenID Connect authorization-code flow with PKCE, state and nonce.

/console/login/sso sends the browser to the issuer's authorize endpoint; the issuer sends it back to the same path
with a code, which is exchanged at the token endpoint for an ID token. The ID token is checked by the hub's
TokenVerifier (the issuer's JWKS, issuer, audience, role map: the same check every API makes) and becomes the
session. What the round trip must carry (state, nonce, PKCE verifier, where to go next) lives in a short-lived
cookie the console signs, so any console process can finish a flow another one started.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

FLOW_COOKIE = "cityops_sso"
FLOW_TTL_S = 600  # a user who takes longer than this at the city's login page starts over


class SsoError(Exception):
    """Why a sign-on was refused (shown on the login page; never a session)."""

    def __init__(self, key: str, detail: str = "") -> None:
        super().__init__(f"{key}: {detail}" if detail else key)
        self.key, self.detail = key, detail


@dataclass(frozen=True)
class Endpoints:
    authorize: str
    token: str


@dataclass(frozen=True)
class Flow:
    state: str
    nonce: str
    verifier: str
    next: str
    started: float

    @classmethod
    def start(cls, next_path: str) -> Flow:
        return cls(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48), next_path, time.time())

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def seal(flow: Flow, secret: bytes) -> str:
    body = base64.urlsafe_b64encode(json.dumps(flow.__dict__).encode()).decode()
    return f"{body}.{hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()}"


def unseal(value: str | None, secret: bytes, now: float | None = None) -> Flow:
    if not value or "." not in value:
        raise SsoError("common.login_sso_stale", "no sign-on was started from this browser")
    body, mac = value.rsplit(".", 1)
    if not hmac.compare_digest(mac, hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()):
        raise SsoError("common.login_sso_stale", "the sign-on cookie was altered")
    try:
        flow = Flow(**json.loads(base64.urlsafe_b64decode(body)))
    except (ValueError, TypeError):
        raise SsoError("common.login_sso_stale", "the sign-on cookie is unreadable") from None
    if (now or time.time()) - flow.started > FLOW_TTL_S:
        raise SsoError("common.login_sso_stale", "the sign-on took too long")
    return flow


def authorize_url(endpoints: Endpoints, client_id: str, redirect_uri: str, scopes: str, flow: Flow) -> str:
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": scopes,
             "state": flow.state, "nonce": flow.nonce, "code_challenge": flow.challenge, "code_challenge_method": "S256"}
    separator = "&" if "?" in endpoints.authorize else "?"
    return f"{endpoints.authorize}{separator}{urlencode(query)}"


async def discover(client: httpx.AsyncClient, issuer: str, discovery_url: str | None) -> Endpoints:
    """The issuer's endpoints from its discovery document (which must name the same issuer)."""
    url = discovery_url or issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        answer = await client.get(url)
        answer.raise_for_status()
        document = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise SsoError("common.login_sso_unavailable", f"discovery at {url}: {type(exc).__name__}") from None
    if document.get("issuer") != issuer:
        raise SsoError("common.login_sso_unavailable", f"discovery names issuer {document.get('issuer')!r}")
    try:
        return Endpoints(str(document["authorization_endpoint"]), str(document["token_endpoint"]))
    except KeyError as exc:
        raise SsoError("common.login_sso_unavailable", f"discovery lacks {exc.args[0]}") from None


async def exchange(client: httpx.AsyncClient, endpoints: Endpoints, *, code: str, flow: Flow, client_id: str,
                   client_secret: str | None, redirect_uri: str) -> str:
    """The ID token for `code` (with the PKCE verifier only this browser's flow knows)."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "client_id": client_id,
            "code_verifier": flow.verifier}
    try:
        if client_secret:  # a confidential client: HTTP Basic, as the spec's default
            answer = await client.post(endpoints.token, data=form, auth=(client_id, client_secret))
        else:
            answer = await client.post(endpoints.token, data=form)
    except httpx.HTTPError as exc:
        raise SsoError("common.login_sso_unavailable", f"token endpoint: {type(exc).__name__}") from None
    if answer.status_code != 200:
        raise SsoError("common.login_sso_refused", f"token endpoint answered {answer.status_code}")
    try:
        token = answer.json().get("id_token")
    except ValueError:
        token = None
    if not isinstance(token, str) or not token:
        raise SsoError("common.login_sso_refused", "the token endpoint sent no id_token")
    return token


def check_nonce(id_token: str, flow: Flow) -> None:
    """Only after the verifier has checked the signature: the token must be the one minted for this flow."""
    claims: dict[str, Any] = jwt.decode(id_token, options={"verify_signature": False})
    if not hmac.compare_digest(str(claims.get("nonce", "")), flow.nonce):
        raise SsoError("common.login_sso_refused", "the token's nonce is not this sign-on's")
