"""The console's app factory: sessions, pages, the live feed, static files (our own and the installed npm ones)."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.envelope import utcnow
from domain.catalogue import load_catalogue
from services.common.auth import PUBLIC, AuthError, AuthSettings, Role, TokenVerifier
from services.common.logs import configure_logging, get_logger
from services.common.metrics import ServiceMetrics, serve_metrics

from .deps import ConsoleDeps, NavItem, make_templates
from .live import LiveFeed
from .session import LOGIN_PATH, STAFF, Forbidden, LoginRequired, Sessions, demo_identities, home_of, page_user
from .session import router as session_router
from .settings import ConsoleSettings
from .upstream import Upstream, UpstreamError, UpstreamUnavailable, User

log = get_logger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
VENDOR_DIR = STATIC_DIR / "node_modules"  # `make install` (npm ci in static/)
# Pages modules: services/console/pages/<name>.py with `router(deps) -> APIRouter` and optionally `NAV`.
# A module not written yet is left out, and its section shows a placeholder page.
PAGE_MODULES = ("operator", "unit", "supervisor", "story")
PLACEHOLDERS = {
    "operator": NavItem("nav.operator", "/console/operator/", frozenset({Role.operator})),
    "unit": NavItem("nav.unit", "/console/unit/", frozenset({Role.unit, Role.grid_worker})),
    "supervisor": NavItem("nav.board", "/console/board/", frozenset({Role.supervisor, Role.auditor})),
}
# No inline script: pages embed data as <script type="application/json"> read by console.js. ECharts and htmx
# set inline styles.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def page_modules() -> dict[str, Any]:
    found = {}
    for name in PAGE_MODULES:
        qualified = f"services.console.pages.{name}"
        try:
            found[name] = importlib.import_module(qualified)
        except ModuleNotFoundError as exc:
            if exc.name != qualified:
                raise
    return found


def placeholder_router(deps: ConsoleDeps, section: str, item: NavItem) -> APIRouter:
    api = APIRouter()

    # The rule as a route dependency: an annotation naming this closure's `item` could not be resolved.
    @api.get(item.href, include_in_schema=False, dependencies=[Depends(page_user(*item.roles))])
    async def placeholder(request: Request) -> Response:
        return deps.render(request, "placeholder.html", {"section": section, "title_key": item.key})

    return api


def token_verifier(verifier: TokenVerifier | None) -> tuple[TokenVerifier | None, AuthError | None]:
    if verifier is not None:
        return verifier, None
    try:
        return TokenVerifier(AuthSettings()), None
    except AuthError as exc:
        return None, exc


def create_app(settings: ConsoleSettings | None = None, *, upstream: Upstream | None = None, live: LiveFeed | None = None,
               verifier: TokenVerifier | None = None, clock: Callable[[], datetime] = utcnow) -> FastAPI:
    settings = settings or ConsoleSettings()
    verifier, auth_problem = token_verifier(verifier)
    catalogue = load_catalogue(settings.catalogue_file())
    upstream = upstream or Upstream({"intake": settings.intake_url, "bridge": settings.bridge_url,
                                     "replay": settings.replay_url}, settings.request_timeout_s)
    live = live or LiveFeed(buffer=settings.live_buffer, kafka=settings)
    sessions = Sessions(verifier, verifier.settings.signing_key(), timedelta(seconds=settings.session_ttl_s),
                        settings.cookie_secure) if verifier else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level, settings.log_json, service="console")
        if auth_problem is not None or sessions is None:
            raise RuntimeError(f"the console refuses to start: {auth_problem}")
        await live.start()
        server = serve_metrics(ServiceMetrics(), settings)  # `cityops status` sees the process up
        log.info("service_started", service="console", http=f"{settings.http_host}:{settings.http_port}")
        try:
            yield
        finally:
            await live.stop()
            await upstream.aclose()
            if server is not None:
                server.stop()

    app = FastAPI(title="cityops console", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.token_verifier = verifier
    deps = ConsoleDeps(settings=settings, upstream=upstream, live=live, templates=make_templates(settings.timezone), clock=clock,
                       sessions=sessions,  # type: ignore[arg-type]  # None only when the app refuses to start
                       catalogue=catalogue, identities=demo_identities(catalogue) if settings.demo else {})
    app.state.deps = deps
    app.state.pipelines = {"live": live}  # what it reads (tests/unit/test_topic_owners.py checks it against the catalogue)
    install_handlers(app, deps)
    install_security_headers(app)
    app.mount("/console/static/vendor", StaticFiles(directory=VENDOR_DIR, check_dir=False), name="vendor")
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR / "app"), name="static")
    app.include_router(session_router(deps))
    app.include_router(core_router(deps))
    modules = page_modules()
    for module in modules.values():
        app.include_router(module.router(deps))
        deps.nav.extend(getattr(module, "NAV", ()))
    for section, item in PLACEHOLDERS.items():
        if section not in modules:
            app.include_router(placeholder_router(deps, section, item))
            deps.nav.append(item)
    return app


def core_router(deps: ConsoleDeps) -> APIRouter:
    api = APIRouter()

    @api.get("/health", dependencies=[Depends(PUBLIC)], include_in_schema=False)
    @api.get("/console/health", dependencies=[Depends(PUBLIC)], include_in_schema=False)
    async def health() -> dict[str, Any]:
        """Answers while the pages do; says whether the live feed follows the broker (no personal data)."""
        live = deps.live
        return {"status": "ok", "live": {"following": live.connected, "events": live.published, "skipped": live.skipped,
                                         "subscribers": len(live.subscribers)}}

    @api.get("/console", include_in_schema=False, dependencies=[Depends(PUBLIC)])
    async def bare() -> Response:
        return RedirectResponse("/console/", status_code=307)

    @api.get("/console/", include_in_schema=False)
    async def home(user: Annotated[User, Depends(STAFF)]) -> Response:
        return RedirectResponse(home_of(user) or LOGIN_PATH, status_code=303)

    @api.get("/console/live", include_in_schema=False)
    async def live(user: Annotated[User, Depends(STAFF)]) -> Response:
        """Server-sent events: `ticket` events the session may see (see live.py)."""
        return StreamingResponse(deps.live.stream(user), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return api


def wants_fragment(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def install_handlers(app: FastAPI, deps: ConsoleDeps) -> None:
    def problem(request: Request, status: int, message_key: str, detail: str = "", field: str | None = None) -> Response:
        template = "partials/problem.html" if wants_fragment(request) else "error.html"
        response = deps.render(request, template, {"status": status, "message_key": message_key, "detail": detail,
                                                   "field": field}, status_code=status)
        if wants_fragment(request):  # htmx swaps 4xx/5xx answers only when told to
            response.headers["HX-Reswap"] = "innerHTML"
            response.headers["HX-Retarget"] = "#problems"
        return response

    async def login_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        target = f"{LOGIN_PATH}?next={exc.next_path}" if exc.next_path.startswith("/console/") else LOGIN_PATH
        if wants_fragment(request) or request.url.path == "/console/live":
            return JSONResponse({"detail": "sign in"}, status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    async def forbidden(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Forbidden)
        return problem(request, 403, "common.forbidden", exc.reason)

    async def upstream_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, UpstreamError)
        return problem(request, exc.status, "common.refused", exc.detail, exc.field)

    async def upstream_unavailable(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, UpstreamUnavailable)
        log.warning("upstream_unavailable", service=exc.service, reason=exc.reason)
        return problem(request, 503, "common.try_again", exc.service)

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "form")) or None
        return problem(request, 422, "common.invalid", f"{field}: {first.get('msg', '')}" if field else "", field)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if not request.url.path.startswith("/console") or request.url.path.startswith("/console/static"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        key = "common.not_found" if exc.status_code == 404 else "common.refused"
        return problem(request, exc.status_code, key, str(exc.detail))

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        LoginRequired: login_required, Forbidden: forbidden, UpstreamError: upstream_error,
        UpstreamUnavailable: upstream_unavailable, RequestValidationError: invalid, StarletteHTTPException: http_error}
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)


def install_security_headers(app: FastAPI) -> None:
    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith("/console/static"):
            response.headers.setdefault("Cache-Control", "no-store")  # pages name people and tickets
        return response
