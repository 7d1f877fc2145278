"""The console's single sign-on (OpenID Connect code flow with PKCE, state and nonce) against a fake issuer: a small
FastAPI app with its own RS256 key, discovery document, JWKS, authorize and token endpoints, served on a free port.
The happy path ends in a session the pages accept; every tampering ends on the login page with no session."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Form, HTTPException
from fastapi.responses import RedirectResponse
from fastapi.testclient import TestClient

from services.common.auth import AuthSettings, TokenVerifier
from services.console.app import create_app
from services.console.live import LiveFeed
from services.console.session import SESSION_COOKIE
from services.console.settings import ConsoleSettings
from services.console.sso import FLOW_COOKIE
from services.console.upstream import Upstream
from tests.harness.auth import TEST_KEY
from tests.harness.console import empty_answers
from tests.harness.ports import free_port

CLIENT = "cityops-console"



@dataclass
class FakeIssuer:
    """The city's SSO as the console sees it. `claims`, `nonce`, `key` and `exp` let a test make it misbehave."""

    port: int = field(default_factory=free_port)
    key: Any = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))
    claims: dict[str, Any] = field(default_factory=lambda: {"sub": "zhang.wei", "roles": ["hotline-staff"]})
    signing_key: Any = None  # another key than the published one: a forged token
    nonce: str | None = None  # a nonce other than the one asked for: a replayed token
    expires_in: int = 300
    codes: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> FastAPI:
        api = FastAPI()
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True) | {"kid": "k1", "use": "sig", "alg": "RS256"}

        @api.get("/.well-known/openid-configuration")
        def discovery() -> dict[str, str]:
            return {"issuer": self.url, "authorization_endpoint": f"{self.url}/authorize", "token_endpoint": f"{self.url}/token",
                    "jwks_uri": f"{self.url}/jwks"}

        @api.get("/jwks")
        def jwks() -> dict[str, Any]:
            return {"keys": [public]}

        @api.get("/authorize")
        def authorize(response_type: str, client_id: str, redirect_uri: str, state: str, nonce: str, code_challenge: str,
                      code_challenge_method: str, scope: str) -> RedirectResponse:
            assert (response_type, client_id, code_challenge_method) == ("code", CLIENT, "S256") and "openid" in scope
            code = f"code-{len(self.codes)}"
            self.codes[code] = {"challenge": code_challenge, "nonce": nonce, "redirect_uri": redirect_uri}
            return RedirectResponse(f"{redirect_uri}?code={code}&state={state}", status_code=302)

        @api.post("/token")
        def token(grant_type: str = Form(), code: str = Form(), redirect_uri: str = Form(), client_id: str = Form(),
                  code_verifier: str = Form()) -> dict[str, str]:
            asked = self.codes.pop(code, None)
            if asked is None or grant_type != "authorization_code" or client_id != CLIENT or redirect_uri != asked["redirect_uri"]:
                raise HTTPException(400, "invalid_grant")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(code_verifier.encode()).digest()).rstrip(b"=").decode()
            if challenge != asked["challenge"]:
                raise HTTPException(400, "invalid_grant: PKCE")
            now = int(time.time())
            claims = {"iss": self.url, "aud": CLIENT, "iat": now, "exp": now + self.expires_in,
                      "nonce": self.nonce or asked["nonce"]} | self.claims
            signed = jwt.encode(claims, self.signing_key or self.key, algorithm="RS256", headers={"kid": "k1"})
            return {"id_token": signed, "access_token": "opaque", "token_type": "Bearer"}

        return api


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeIssuer]:
    issuer = FakeIssuer()
    server = uvicorn.Server(uvicorn.Config(issuer.app(), host="127.0.0.1", port=issuer.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the fake issuer did not start"
        time.sleep(0.05)
    yield issuer
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def issuer(idp: FakeIssuer) -> Iterator[FakeIssuer]:
    """The module's issuer, well-behaved again after each test."""
    yield idp
    idp.claims = {"sub": "zhang.wei", "roles": ["hotline-staff"]}
    idp.signing_key, idp.nonce, idp.expires_in = None, None, 300


def console(issuer: FakeIssuer, **settings: Any) -> TestClient:
    verifier = TokenVerifier(AuthSettings(key=TEST_KEY, oidc_issuer=issuer.url, oidc_jwks=f"{issuer.url}/jwks",
                                          oidc_audience=CLIENT, oidc_role_map={"hotline-staff": "operator"}, leeway_s=0))
    upstream = Upstream({"intake": "http://intake", "bridge": "http://bridge", "replay": "http://replay"}, 2.0,
                        transport=httpx.MockTransport(empty_answers))
    app = create_app(ConsoleSettings(mode="production", oidc_client_id=CLIENT, **settings), upstream=upstream,
                     live=LiveFeed(), verifier=verifier)
    return TestClient(app, follow_redirects=False)


def start(client: TestClient, next_path: str = "") -> httpx.URL:
    answer = client.get("/console/login/sso" + (f"?next={next_path}" if next_path else ""))
    assert answer.status_code == 303, answer.text
    assert FLOW_COOKIE in answer.cookies
    return httpx.URL(answer.headers["location"])


def at_issuer(url: httpx.URL) -> tuple[str, str]:
    """The browser at the issuer's login page: the user signs in, the issuer sends back code and state."""
    back = httpx.get(str(url), follow_redirects=False)
    assert back.status_code == 302, back.text
    query = parse_qs(urlsplit(back.headers["location"]).query)
    return query["code"][0], query["state"][0]


def refused(answer: httpx.Response, message: str) -> None:
    assert answer.status_code in (401, 502), answer.text
    assert SESSION_COOKIE not in answer.cookies
    assert message in answer.text, answer.text


def test_the_login_page_offers_sso_and_the_flow_ends_in_a_session(issuer: FakeIssuer) -> None:
    client = console(issuer)
    assert 'href="/console/login/sso"' in client.get("/console/login").text
    url = start(client, "/console/board/")
    query = parse_qs(url.query.decode())
    assert url.path == "/authorize" and query["code_challenge_method"] == ["S256"] and query["state"] and query["nonce"]
    code, state = at_issuer(url)
    answer = client.get("/console/login/sso", params={"code": code, "state": state})
    assert answer.status_code == 200 and SESSION_COOKIE in answer.cookies, answer.text
    assert 'url=/console/board/' in answer.text  # where the user was going
    home = client.get("/console/operator/")
    assert home.status_code == 200 and "zhang.wei" in home.text  # a session the pages accept, the role mapped
    assert client.get("/console/board/").status_code == 403  # an operator, not a supervisor


def test_a_state_other_than_the_browsers_is_refused(issuer: FakeIssuer) -> None:
    client = console(issuer)
    code, _ = at_issuer(start(client))
    refused(client.get("/console/login/sso", params={"code": code, "state": "forged"}), "请重新登录")


def test_a_callback_without_a_started_flow_is_refused(issuer: FakeIssuer) -> None:
    starter, other = console(issuer), console(issuer)
    code, state = at_issuer(start(starter))  # started in one browser, finished in another (a login CSRF)
    refused(other.get("/console/login/sso", params={"code": code, "state": state}), "请重新登录")


@pytest.mark.parametrize("misbehave, message", [
    ("nonce", "凭证无效"), ("expired", "凭证无效"), ("forged", "凭证无效"), ("no-role", "没有控制台角色"),
    ("audience", "凭证无效")])
def test_a_bad_token_never_becomes_a_session(issuer: FakeIssuer, misbehave: str, message: str) -> None:
    client = console(issuer)
    code, state = at_issuer(start(client))
    if misbehave == "nonce":
        issuer.nonce = "another-flows-nonce"
    elif misbehave == "expired":
        issuer.expires_in = -60
    elif misbehave == "forged":
        issuer.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif misbehave == "no-role":
        issuer.claims = {"sub": "li.na", "roles": ["canteen-staff"]}
    elif misbehave == "audience":
        issuer.claims = {"sub": "zhang.wei", "roles": ["hotline-staff"], "aud": "another-app"}
    answer = client.get("/console/login/sso", params={"code": code, "state": state})
    refused(answer, message)
    assert client.get("/console/operator/").status_code == 303  # still signed out


def test_the_issuer_saying_no_or_a_wrong_code_is_refused(issuer: FakeIssuer) -> None:
    client = console(issuer)
    _, state = at_issuer(start(client))
    refused(client.get("/console/login/sso", params={"error": "access_denied", "state": state}), "凭证无效")
    _, state = at_issuer(start(client))
    refused(client.get("/console/login/sso", params={"code": "never-issued", "state": state}), "凭证无效")


def test_an_unreachable_issuer_is_a_try_again_page() -> None:
    gone = FakeIssuer()  # never served
    client = console(gone)
    answer = client.get("/console/login/sso")
    assert answer.status_code == 502 and "稍后重试" in answer.text and SESSION_COOKIE not in answer.cookies


def test_without_a_client_id_there_is_no_sso(issuer: FakeIssuer) -> None:
    verifier = TokenVerifier(AuthSettings(key=TEST_KEY))
    client = TestClient(create_app(ConsoleSettings(mode="demo"), live=LiveFeed(), verifier=verifier), follow_redirects=False)
    assert "/console/login/sso" not in client.get("/console/login").text
    assert client.get("/console/login/sso").status_code == 404
