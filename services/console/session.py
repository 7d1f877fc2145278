"""Signing in to the console, and the rule every page declares.

The session cookie holds a hub-signed token (HttpOnly, SameSite=Strict, Path=/console): the same kind of token
`cityops auth token` mints, so the console calls the APIs with it as the user and each API applies its own rules.
In demo mode (CITYOPS_MODE=demo) the login page offers the demo identities (operator, supervisor, auditor, a user
of every unit, a grid worker of every grid) and mints their session; with the city's single sign-on configured
(CITYOPS_CONSOLE_OIDC_CLIENT_ID and the hub's CITYOPS_AUTH_OIDC_*), /console/login/sso runs the OpenID Connect
code flow (sso.py) and the issuer's ID token, checked like any API token, becomes the session.

`page_user(*roles)` is a page's access rule (an `Access`, so the route table test sees it): no session → 303 to
the login page, a role the page does not name → 403 page. Every POST also checks a `csrf` field (or X-CSRF-Token
header, for htmx) bound to the session, and refuses a cross-site Origin.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import httpx
import structlog
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from domain.catalogue import Catalogue
from services.common.auth import PUBLIC, Access, AuthError, Principal, Role, TokenVerifier, mint_token

from . import sso as oidc
from .upstream import User

if TYPE_CHECKING:
    from .deps import ConsoleDeps

SESSION_COOKIE = "cityops_session"
log = structlog.get_logger(__name__)
LOGIN_COOKIE = "cityops_login"  # the login form's own CSRF token (no session yet to bind it to)
COOKIE_PATH = "/console"
LOGIN_PATH = "/console/login"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"


class LoginRequired(Exception):
    """No valid session: the app answers 303 to the login page (401 with HX-Redirect to htmx)."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class Forbidden(Exception):
    """A session that may not do this: the app answers a 403 page saying why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def demo_identities(catalogue: Catalogue) -> dict[str, Principal]:
    """Who one may sign in as in demo mode, by login name; the operator's and supervisor's subjects are the
    ones `cityops up` mints tokens for."""
    people: dict[str, Principal] = {
        "operator": Principal("demo-operator", frozenset({Role.operator})),
        "supervisor": Principal("demo-supervisor", frozenset({Role.supervisor})),
        "auditor": Principal("demo-auditor", frozenset({Role.auditor})),
    }
    for unit in catalogue.units:
        people[f"unit:{unit.id}"] = Principal(unit.id, frozenset({Role.unit}), unit=unit.id)
    for area in catalogue.areas:
        if area.level == "grid":
            people[f"grid-worker:{area.id}"] = Principal(f"grid-worker-{area.id}", frozenset({Role.grid_worker}), grids=(area.id,))
    return people


@dataclass
class Sessions:
    """Mints and reads console sessions, and their CSRF tokens."""

    verifier: TokenVerifier
    key: bytes | None  # the hub key: without it (SSO only) demo sessions cannot be minted
    ttl: timedelta
    secure: bool
    csrf_secret: bytes = b""

    def __post_init__(self) -> None:
        # Bound to the hub key so every console process agrees; a console without one (SSO only) uses its own.
        self.csrf_secret = hashlib.sha256(b"console-csrf|" + self.key).digest() if self.key else secrets.token_bytes(32)

    def mint(self, principal: Principal) -> str:
        if self.key is None:
            raise Forbidden("no hub key: demo sign-in is not possible (configure CITYOPS_AUTH_KEY)")
        return mint_token(self.key, principal, self.ttl)

    def user(self, request: Request) -> User | None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        try:
            p = self.verifier.verify(token)
        except AuthError:
            return None
        return User(p.subject, p.roles, p.unit, p.grids, p.client_id, p.issuer, token=token)

    def csrf(self, token: str) -> str:
        return hmac.new(self.csrf_secret, token.encode(), hashlib.sha256).hexdigest()[:40]

    def csrf_of(self, request: Request) -> str:
        token = request.cookies.get(SESSION_COOKIE, "")
        return self.csrf(token) if token else ""

    def set_cookie(self, response: Response, token: str) -> None:
        response.set_cookie(SESSION_COOKIE, token, max_age=int(self.ttl.total_seconds()), httponly=True,
                            samesite="strict", secure=self.secure, path=COOKIE_PATH)


def same_origin(request: Request) -> bool:
    """A browser's POST names where the form came from: it must be this console (absent: not a browser's
    cross-site request, and the CSRF token still has to match)."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.netloc == request.headers.get("host", request.url.netloc)


async def posted_csrf(request: Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.headers.get("content-type", "").startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


@dataclass(frozen=True)
class PageAccess(Access):
    """A page's rule: a console session with one of `roles` (and, on a POST, the session's CSRF token)."""

    async def __call__(self, request: Request) -> User:  # type: ignore[override]  # a cookie, not a bearer token
        sessions: Sessions = request.app.state.sessions
        user = sessions.user(request)
        if user is None:
            raise LoginRequired(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        request.state.principal = user
        if request.method not in ("GET", "HEAD"):
            if not same_origin(request):
                raise Forbidden("cross-site request refused")
            if not hmac.compare_digest(await posted_csrf(request), sessions.csrf(user.token)):
                raise Forbidden("the form's security token is missing or stale: reload the page and try again")
        if not user.has(*self.roles):
            raise Forbidden(f"this page needs the role {' or '.join(sorted(self.roles))}")
        return user


def page_user(*roles: Role) -> PageAccess:
    """The rule of a page for `roles`: `user: Annotated[User, Depends(page_user(Role.operator))]`."""
    if not roles:
        raise ValueError("name at least one role")
    return PageAccess(frozenset(roles))


ANY_USER = page_user(*Role)
# Everyone with pages here: an app's token (a machine client) has none.
STAFF = page_user(*(r for r in Role if r != Role.app))
PUBLIC_DEP = Depends(PUBLIC)
ANY_USER_DEP = Depends(ANY_USER)


def home_of(user: Principal) -> str | None:
    """Where a user lands after signing in: the first section their roles open."""
    if user.has(Role.operator):
        return "/console/operator/"
    if user.has(Role.supervisor, Role.auditor):
        return "/console/board/"
    if user.has(Role.unit, Role.grid_worker):
        return "/console/unit/"
    return None  # an app's token: no pages


def safe_next(next_path: str | None) -> str | None:
    """Only a path inside the console (never another site) is followed after signing in."""
    if next_path and next_path.startswith("/console/") and not next_path.startswith("//") and "\\" not in next_path:
        return next_path
    return None


SSO_COOKIE_PATH = LOGIN_PATH + "/sso"


def sso_enabled(deps: ConsoleDeps, sessions: Sessions) -> bool:
    return bool(deps.settings.oidc_client_id and sessions.verifier.settings.oidc_issuer)


def upstream_client(deps: ConsoleDeps) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=deps.settings.request_timeout_s)


async def sso_endpoints(deps: ConsoleDeps, sessions: Sessions, client: httpx.AsyncClient) -> oidc.Endpoints:
    settings = deps.settings
    if settings.oidc_authorize_url and settings.oidc_token_url:
        return oidc.Endpoints(settings.oidc_authorize_url, settings.oidc_token_url)
    return await oidc.discover(client, str(sessions.verifier.settings.oidc_issuer), settings.oidc_discovery_url)


def redirect_uri(request: Request, deps: ConsoleDeps) -> str:
    return deps.settings.oidc_redirect_url or str(request.url_for("sso").replace(query=""))


def router(deps: ConsoleDeps) -> APIRouter:
    api = APIRouter()
    identities = deps.identities

    def login_page(request: Request, *, error: str | None = None, status_code: int = 200, next_path: str | None = None) -> Response:
        token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        response = deps.render(request, "login.html", {
            "identities": identities if deps.settings.demo else {}, "login_csrf": token, "error": error,
            "sso_url": SSO_COOKIE_PATH if sso_enabled(deps, deps.sessions) else None, "next": safe_next(next_path) or ""}, status_code=status_code)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=deps.settings.cookie_secure,
                            path=COOKIE_PATH, max_age=3600)
        return response

    @api.get(LOGIN_PATH, dependencies=[PUBLIC_DEP], include_in_schema=False)
    async def login_form(request: Request, next: Annotated[str | None, Query(max_length=500)] = None) -> Response:
        return login_page(request, next_path=next)

    @api.post(LOGIN_PATH, dependencies=[PUBLIC_DEP], include_in_schema=False)
    async def login(request: Request, user: Annotated[str, Form(max_length=200)] = "",
                    csrf: Annotated[str, Form(max_length=100)] = "", next: Annotated[str, Form(max_length=500)] = "") -> Response:
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not same_origin(request) or not expected or not hmac.compare_digest(csrf, expected):
            return login_page(request, error="common.login_stale", status_code=403, next_path=next)
        principal = identities.get(user) if deps.settings.demo else None
        if principal is None:
            return login_page(request, error="common.login_unknown", status_code=400, next_path=next)
        return start_session(deps, principal, safe_next(next))

    @api.get(LOGIN_PATH + "/sso", dependencies=[PUBLIC_DEP], include_in_schema=False)
    async def sso(request: Request, code: Annotated[str | None, Query(max_length=4096)] = None,
                  state: Annotated[str | None, Query(max_length=200)] = None,
                  error: Annotated[str | None, Query(max_length=200)] = None,
                  next: Annotated[str | None, Query(max_length=500)] = None) -> Response:
        """Without a code: off to the city's sign-on. With one (the issuer sending the user back): the session."""
        sessions: Sessions = deps.sessions
        if not sso_enabled(deps, sessions):
            return login_page(request, error="common.login_sso_off", status_code=404)
        try:
            if code is None and state is None and error is None:
                return await sso_start(request, sessions, safe_next(next) or "")
            return await sso_finish(request, sessions, code, state, error)
        except oidc.SsoError as refused:
            log.warning("console_sso_refused", reason=refused.key, detail=refused.detail)
            response = login_page(request, error=refused.key, status_code=401 if refused.key != "common.login_sso_unavailable" else 502)
            response.delete_cookie(oidc.FLOW_COOKIE, path=SSO_COOKIE_PATH)
            return response

    async def sso_start(request: Request, sessions: Sessions, next_path: str) -> Response:
        flow = oidc.Flow.start(next_path)
        async with upstream_client(deps) as client:
            endpoints = await sso_endpoints(deps, sessions, client)
        settings = deps.settings
        response = RedirectResponse(oidc.authorize_url(endpoints, str(settings.oidc_client_id), redirect_uri(request, deps),
                                                      settings.oidc_scopes, flow), status_code=303)
        # Lax, not Strict: the issuer's redirect back is a cross-site navigation that must carry it.
        response.set_cookie(oidc.FLOW_COOKIE, oidc.seal(flow, sessions.csrf_secret), max_age=oidc.FLOW_TTL_S, httponly=True,
                            samesite="lax", secure=deps.settings.cookie_secure, path=SSO_COOKIE_PATH)
        return response

    async def sso_finish(request: Request, sessions: Sessions, code: str | None, state: str | None, error: str | None) -> Response:
        flow = oidc.unseal(request.cookies.get(oidc.FLOW_COOKIE), sessions.csrf_secret)
        if not state or not hmac.compare_digest(state, flow.state):
            raise oidc.SsoError("common.login_sso_stale", "the state is not this browser's sign-on")
        if error or not code:
            raise oidc.SsoError("common.login_sso_refused", f"the issuer answered {error or 'no code'}")
        async with upstream_client(deps) as client:
            endpoints = await sso_endpoints(deps, sessions, client)
            token = await oidc.exchange(client, endpoints, code=code, flow=flow, client_id=str(deps.settings.oidc_client_id),
                                       client_secret=deps.settings.oidc_client_secret, redirect_uri=redirect_uri(request, deps))
        try:
            principal = sessions.verifier.verify(token)
        except AuthError as exc:
            raise oidc.SsoError("common.login_sso_refused", str(exc)) from None
        oidc.check_nonce(token, flow)
        if not principal.roles:
            raise oidc.SsoError("common.login_sso_no_role", f"{principal.subject} has no console role")
        target = html.escape(safe_next(flow.next) or home_of(principal) or "/console/")
        # A page that moves on, not a redirect: this answer ends a cross-site navigation (from the issuer), and a
        # SameSite=Strict session cookie is only sent once the browser navigates from the console's own page.
        response = HTMLResponse(f'<!doctype html><meta http-equiv="refresh" content="0;url={target}">'
                                f'<a href="{target}">{target}</a>', headers={"Cache-Control": "no-store"})
        sessions.set_cookie(response, token)
        response.delete_cookie(oidc.FLOW_COOKIE, path=SSO_COOKIE_PATH)
        return response

    @api.post("/console/logout", include_in_schema=False)
    async def logout(request: Request, _: Annotated[User, ANY_USER_DEP]) -> Response:
        response = RedirectResponse(LOGIN_PATH, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
        return response

    def start_session(deps: ConsoleDeps, principal: Principal, next_path: str | None) -> Response:
        sessions: Sessions = deps.sessions
        token = sessions.mint(principal)
        response = RedirectResponse(next_path or home_of(principal) or "/console/", status_code=303)
        sessions.set_cookie(response, token)
        response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
        return response

    return api
