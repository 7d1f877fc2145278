"""Every HTTP route of the hub declares who may call it, and the rule holds: built from each app's own route list.

For every Any of intake's app (hotline + Open311) and of the replay app: no token → 401, a bad,
expired, foreign or untrusted token → 401, a role the rule does not name → 403, each role it names → neither.
A route that declares no rule (or two) fails `test_every_route_declares_exactly_one_rule`; the test after
it adds such a route to prove it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from domain.catalogue import load_catalogue
from services.common.auth import Access, Principal, Role, install_verifier, mint_token, route_access
from services.common.auth import api_routes as auth_api_routes
from services.common.metrics import METRICS_READERS, ServiceMetrics, metrics_route
from services.common.store import create_tables, make_engine
from services.intake.api import build_api
from services.intake.app import store_tables
from services.projections.api import replay_app
from services.projections.logsource import MemoryLog
from services.projections.migrate import upgrade
from services.projections.settings import ProjectionsSettings
from tests.harness.auth import TEST_KEY, bearer, token, verifier

NOW = datetime(2026, 5, 6, 9, 0, tzinfo=UTC)
PUBLIC_ROUTES = {("GET", "/health"), ("GET", "/open311/v2/services.json"), ("GET", "/open311/v2/services/{code}.json")}


def intake_app(tmp: Path) -> FastAPI:
    async def publish(topic: str, envelope: Any) -> None:
        return None

    engine = make_engine(f"sqlite:///{tmp / 'intake.db'}")
    create_tables(engine, store_tables())
    app = build_api(publish=publish, engine=engine, catalogue=load_catalogue(), now=lambda: NOW, verifier=verifier())
    metrics_route(app, ServiceMetrics())  # as create_app does (test_the_http_services_serve_metrics_behind_a_token)
    return app


def replay(tmp: Path) -> FastAPI:
    engine = make_engine(f"sqlite:///{tmp / 'proj.db'}")
    upgrade(engine)
    return replay_app(ProjectionsSettings(timezone="UTC"), engine=engine, log_factory=lambda archive: MemoryLog([]),
                      verifier=verifier())


def bridge(tmp: Path) -> FastAPI:
    from services.bridge.api import build_api as build_bridge_api
    from services.bridge.handlers import TABLES as BRIDGE_TABLES

    async def publish(topic: str, envelope: Any) -> None:
        return None

    engine = make_engine(f"sqlite:///{tmp / 'bridge.db'}")
    create_tables(engine, BRIDGE_TABLES)
    app = build_bridge_api(publish=publish, engine=engine, catalogue=load_catalogue(), now=lambda: NOW)
    metrics_route(app, ServiceMetrics())
    install_verifier(app, verifier=verifier())
    return app


# Every HTTP door of the hub (tests/unit/test_bridge_access.py also checks the bridge's unit binding).
APPS = {"intake": intake_app, "replay": replay, "bridge": bridge}


def api_routes(app: FastAPI) -> Iterator[tuple[str, Any]]:
    """Every (method, route) of the app's own route list (`app.routes`, included routers flattened)."""
    for method, _, route in auth_api_routes(app):
        yield method, route


def unruled(app: FastAPI) -> list[str]:
    """Routes declaring no access rule, or more than one (which would hide which one holds)."""
    return [f"{method} {route.path}: {len(route_access(route))} rules" for method, route in api_routes(app)
            if len(route_access(route)) != 1]


def rule_of(route: Any) -> Access:
    (rule,) = route_access(route)
    return rule


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "T-1", path)


def call(client: TestClient, method: str, route: Any, headers: dict[str, str] | None = None) -> int:
    body = {} if method in {"POST", "PUT", "PATCH"} else None
    params = {"time": NOW.isoformat()} if route.path.endswith("/as-of") else None
    return client.request(method, concrete(route.path), json=body, params=params, headers=headers or {}).status_code


def table(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str, Any, TestClient]]:
    rows = []
    for name, build in APPS.items():
        client = TestClient(build(tmp_path_factory.mktemp(name)))
        rows += [(name, method, route, client) for method, route in api_routes(client.app)]  # type: ignore[arg-type]
    return rows


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str, Any, TestClient]]:
    return table(tmp_path_factory)


def expired() -> str:
    principal = Principal("op-old", frozenset({Role.operator}))
    return mint_token(TEST_KEY.encode(), principal, timedelta(minutes=5), now=datetime.now(UTC) - timedelta(hours=2))


def foreign() -> str:
    return mint_token(b"another-hub-key-" + b"x" * 40, Principal("op-7", frozenset({Role.operator})), timedelta(hours=1))


def untrusted_issuer() -> str:
    import jwt

    claims = {"sub": "op-7", "roles": ["operator"], "iss": "https://sso.example.org", "aud": "cityops",
              "exp": datetime.now(UTC) + timedelta(hours=1)}
    return jwt.encode(claims, TEST_KEY, algorithm="HS256")


BAD_TOKENS = {"malformed": lambda: "not-a-jwt", "expired": expired, "signed by another key": foreign,
              "untrusted issuer": untrusted_issuer}


# --- the table -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", APPS)
def test_every_route_declares_exactly_one_rule(name: str, tmp_path: Path) -> None:
    app = APPS[name](tmp_path)
    assert list(api_routes(app)), "no routes found: the table would prove nothing"
    assert unruled(app) == []


def test_a_route_without_a_rule_fails_the_table(tmp_path: Path) -> None:
    app = intake_app(tmp_path)

    @app.post("/tickets/{ticket_id}/reopen-for-free")
    async def forgotten(ticket_id: str) -> dict[str, str]:
        return {"ticket_id": ticket_id}

    assert unruled(app) == ["POST /tickets/{ticket_id}/reopen-for-free: 0 rules"]


def test_only_the_health_checks_and_the_open311_service_list_are_public(routes: list[Any]) -> None:
    public = {(method, route.path) for _, method, route, _ in routes if rule_of(route).public}
    assert public == PUBLIC_ROUTES


def test_no_token_is_401_everywhere_but_the_public_routes(routes: list[Any]) -> None:
    for app, method, route, client in routes:
        status = call(client, method, route)
        if rule_of(route).public:
            assert status not in (401, 403), f"{app} {method} {route.path}: {status}"
        else:
            assert status == 401, f"{app} {method} {route.path} without a token: {status}"


@pytest.mark.parametrize("kind", BAD_TOKENS)
def test_a_bad_token_is_401(routes: list[Any], kind: str) -> None:
    headers = {"Authorization": f"Bearer {BAD_TOKENS[kind]()}"}
    for app, method, route, client in routes:
        if not rule_of(route).public:
            assert call(client, method, route, headers) == 401, f"{app} {method} {route.path} with a {kind} token"


def test_a_role_the_rule_does_not_name_is_403(routes: list[Any]) -> None:
    checked = 0
    for app, method, route, client in routes:
        rule = rule_of(route)
        for role in sorted(set(Role) - rule.roles):
            if rule.public:
                continue
            status = call(client, method, route, bearer(role, unit="water"))
            assert status == 403, f"{app} {method} {route.path} as {role}: {status}"
            checked += 1
    assert checked > 50


def test_each_role_the_rule_names_gets_past_the_door(routes: list[Any]) -> None:
    for app, method, route, client in routes:
        for role in sorted(rule_of(route).roles):
            status = call(client, method, route, bearer(role, unit="water", grids=("grid-east-1-a-1",)))
            assert status not in (401, 403), f"{app} {method} {route.path} as {role}: {status}"


def test_the_public_routes_show_no_security_requirement_in_the_openapi(routes: list[Any]) -> None:
    for client in {id(c): c for *_, c in routes}.values():
        document = client.get("/openapi.json").json()
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                public = (method.upper(), path) in PUBLIC_ROUTES
                assert ("security" in operation) != public, f"{method} {path}"


def test_the_rules_of_the_hotline_are_the_documented_ones(routes: list[Any]) -> None:
    rules = {(method, route.path): rule_of(route).roles for app, method, route, _ in routes if app == "intake"}
    o, s, a, app, g = Role.operator, Role.supervisor, Role.auditor, Role.app, Role.grid_worker
    assert rules[("POST", "/tickets")] == {o, app, g}
    assert rules[("GET", "/tickets")] == rules[("GET", "/tickets/{ticket_id}")] == rules[("GET", "/stats")] == {o, s, a}
    assert rules[("POST", "/triage/{ticket_id}/resolve")] == rules[("POST", "/callbacks")] == {o}
    assert rules[("POST", "/tickets/{ticket_id}/split")] == {o, s}
    assert rules[("POST", "/supervisor/decisions")] == {s}
    assert rules[("POST", "/residents/events")] == {app}
    assert rules[("POST", "/open311/v2/requests.json")] == {app, o}
    assert rules[("GET", "/callbacks/queue")] == {o}  # the callers' numbers: operators only
    assert rules[("GET", "/triage/suggestions")] == {o, app, g}
    assert rules[("GET", "/catalogue/areas")] == set(Role)
    assert token(Role.app)  # the helper gives an app a client id


def test_metrics_need_a_supervisors_or_auditors_token_on_the_api(routes: list[Any]) -> None:
    """The metrics carry no personal data, but on a service's API they are not public: without a token only on
    the process's own metrics port (settings.metrics_port, bound to 127.0.0.1 by default)."""
    rules = {(app, method, route.path): rule_of(route) for app, method, route, _ in routes}
    for app in ("intake", "bridge"):
        assert rules[(app, "GET", "/metrics")] == METRICS_READERS
        assert METRICS_READERS.roles == {Role.supervisor, Role.auditor}


@pytest.mark.parametrize("service", ["intake", "bridge"])
def test_the_http_services_serve_metrics_behind_a_token(service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app factories mount the same /metrics route the table above checks."""
    import importlib

    monkeypatch.setenv("CITYOPS_AUTH_KEY", TEST_KEY)
    monkeypatch.setenv("CITYOPS_STATE_DIR", str(tmp_path))
    factory = importlib.import_module(f"services.{service}.app").create_app
    api = factory(verifier=verifier()) if service == "intake" else factory()
    [route] = [r for method, r in api_routes(api) if method == "GET" and r.path == "/metrics"]
    assert rule_of(route) == METRICS_READERS
    client = TestClient(api)  # not started: the route reads the registry and the store only
    assert client.get("/metrics").status_code == 401
    answer = client.get("/metrics", headers=bearer(Role.auditor))
    assert answer.status_code == 200 and "cityops_batch_seconds" in answer.text


# --- the console (a cookie session instead of a bearer token; services/console/session.py) ---------

CONSOLE_PUBLIC = {("GET", "/health"), ("GET", "/console/health"), ("GET", "/console"), ("GET", "/console/login"),
                  ("POST", "/console/login"), ("GET", "/console/login/sso")}


@pytest.fixture(scope="module")
def console() -> FastAPI:
    from tests.harness.console import console_app

    return console_app()


def console_routes(app: FastAPI) -> list[tuple[str, Any]]:
    return list(api_routes(app))


def console_call(client: TestClient, method: str, route: Any) -> Any:
    return client.request(method, concrete(route.path), data={} if method == "POST" else None)


def test_every_console_route_declares_exactly_one_rule(console: FastAPI) -> None:
    assert len(console_routes(console)) >= 8, "the console's routes were not found: the table would prove nothing"
    assert unruled(console) == []
    public = {(method, route.path) for method, route in console_routes(console) if rule_of(route).public}
    assert public == CONSOLE_PUBLIC


def test_without_a_session_every_console_page_sends_to_the_login(console: FastAPI) -> None:
    client = TestClient(console, follow_redirects=False)
    for method, route in console_routes(console):
        if rule_of(route).public:
            continue
        answer = console_call(client, method, route)
        if route.path == "/console/live":
            assert answer.status_code == 401
            continue
        assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login"), f"{method} {route.path}"


def test_a_console_role_the_rule_does_not_name_is_403_and_one_it_names_gets_in(console: FastAPI) -> None:
    from tests.harness.console import principal, signed_in

    checked = 0
    for role in Role:
        client = signed_in(console, principal(role, unit="water", grids=("grid-east-1-a-1",)))
        for method, route in console_routes(console):
            rule = rule_of(route)
            if rule.public or route.path == "/console/live":  # a stream: checked in test_console_session.py
                continue
            answer = console_call(client, method, route)
            status = answer.status_code
            if role in rule.roles:  # (logging out also ends on the login page, but not as a refusal naming `next`)
                refused = status in (401, 403) or "/console/login?next=" in answer.headers.get("location", "")
                assert not refused, f"{method} {route.path} as {role}: {status}"
            else:
                assert status == 403, f"{method} {route.path} as {role}: {status}"
            checked += 1
    assert checked >= len(Role) * 4
