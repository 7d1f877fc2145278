"""The console's sign-in, sessions, CSRF, language switch and upstream errors (FastAPI TestClient, no network)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from services.common.auth import Principal, Role, mint_token
from services.console.i18n import MESSAGES_DIR, messages
from services.console.live import LiveFeed, visible_to
from services.console.session import LOGIN_COOKIE, SESSION_COOKIE, demo_identities, safe_next
from services.console.upstream import Upstream, UpstreamError, UpstreamUnavailable, User
from tests.harness.auth import TEST_KEY, verifier
from tests.harness.console import console_app, principal, recorded, signed_in

TEMPLATES = Path(__file__).resolve().parents[2] / "services" / "console" / "templates"


def login_form(client: TestClient) -> str:
    """Open the login page; the login form's CSRF token (also set as a cookie)."""
    page = client.get("/console/login")
    assert page.status_code == 200
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match and client.cookies.get(LOGIN_COOKIE) == match.group(1)
    return match.group(1)


# --- signing in ----------------------------------------------------------------------------------

def test_demo_mode_offers_the_demo_identities_and_a_session_is_a_hub_token() -> None:
    app = console_app()
    client = TestClient(app, follow_redirects=False)
    csrf = login_form(client)
    page = client.get("/console/login").text
    assert 'value="operator"' in page and 'value="unit:water"' in page and 'value="grid-worker:grid-east-1-a-1"' in page
    answer = client.post("/console/login", data={"user": "unit:water", "csrf": csrf})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/unit/"
    cookie = answer.headers["set-cookie"]
    assert f"{SESSION_COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    who = verifier().verify(client.cookies[SESSION_COOKIE])
    assert who.unit == "water" and who.roles == {Role.unit}


@pytest.mark.parametrize(("user", "home"), [("operator", "/console/operator/"), ("supervisor", "/console/board/"),
                                            ("auditor", "/console/board/"), ("grid-worker:grid-east-1-a-1", "/console/unit/")])
def test_each_role_lands_on_its_section(user: str, home: str) -> None:
    client = TestClient(console_app(), follow_redirects=False)
    answer = client.post("/console/login", data={"user": user, "csrf": login_form(client)})
    assert answer.headers["location"] == home
    assert client.get(home).status_code == 200
    assert client.get("/console/").headers["location"] == home


def test_every_unit_and_grid_of_the_catalogue_has_a_demo_identity() -> None:
    from domain.catalogue import load_catalogue

    catalogue = load_catalogue()
    people = demo_identities(catalogue)
    assert {p.unit for p in people.values() if p.unit} == {u.id for u in catalogue.units}
    assert {g for p in people.values() for g in p.grids} == {a.id for a in catalogue.areas if a.level == "grid"}
    assert people["operator"].subject == "demo-operator"


def test_production_mode_offers_no_demo_identity_and_refuses_one() -> None:
    client = TestClient(console_app(mode="production"), follow_redirects=False)
    page = client.get("/console/login").text
    assert 'value="operator"' not in page and "<select" not in page
    csrf = client.cookies[LOGIN_COOKIE]  # no form to read it from: a forger with the cookie still gets nowhere
    answer = client.post("/console/login", data={"user": "operator", "csrf": csrf})
    assert answer.status_code == 400 and SESSION_COOKIE not in client.cookies


def test_a_login_without_the_forms_token_or_from_another_site_is_refused() -> None:
    client = TestClient(console_app(), follow_redirects=False)
    csrf = login_form(client)
    assert client.post("/console/login", data={"user": "operator", "csrf": "forged"}).status_code == 403
    assert client.post("/console/login", data={"user": "operator", "csrf": csrf},
                       headers={"Origin": "https://evil.example"}).status_code == 403
    assert SESSION_COOKIE not in client.cookies
    assert client.post("/console/login", data={"user": "operator", "csrf": csrf},
                       headers={"Origin": "http://testserver"}).status_code == 303


def test_an_unknown_identity_is_refused() -> None:
    client = TestClient(console_app(), follow_redirects=False)
    assert client.post("/console/login", data={"user": "root", "csrf": login_form(client)}).status_code == 400


def test_next_is_followed_only_inside_the_console() -> None:
    assert safe_next("/console/operator/?x=1") == "/console/operator/?x=1"
    for bad in ("https://evil.example/", "//evil.example/console/", "/console\\..", "/other", None):
        assert safe_next(bad) is None
    client = TestClient(console_app(), follow_redirects=False)
    assert client.get("/console/operator/").headers["location"] == "/console/login?next=/console/operator/"
    answer = client.post("/console/login", data={"user": "operator", "csrf": login_form(client), "next": "https://evil.example/"})
    assert answer.headers["location"] == "/console/operator/"


# --- pages' access rule ----------------------------------------------------------------------------

def test_without_a_session_a_page_redirects_to_the_login_and_the_live_feed_is_401() -> None:
    client = TestClient(console_app(), follow_redirects=False)
    assert client.get("/console/operator/").status_code == 303
    assert client.get("/console/live").status_code == 401
    assert client.get("/console/operator/", headers={"HX-Request": "true"}).headers["HX-Redirect"].startswith("/console/login")


def test_a_forged_or_expired_session_is_no_session() -> None:
    client = TestClient(console_app(), follow_redirects=False)
    who = Principal("op", frozenset({Role.operator}))
    expired = mint_token(TEST_KEY.encode(), who, timedelta(minutes=1), now=datetime.now(UTC) - timedelta(hours=1))
    forged = mint_token(b"x" * 48, who, timedelta(hours=1))
    for token in (expired, forged, "garbage"):
        client.cookies.set(SESSION_COOKIE, token, path="/console")
        assert client.get("/console/operator/").status_code == 303


def test_a_role_the_page_does_not_name_gets_a_403_page() -> None:
    app = console_app()
    answer = signed_in(app, principal(Role.unit, unit="water")).get("/console/operator/")
    assert answer.status_code == 403 and "operator" in answer.text and "<html" in answer.text
    assert signed_in(app, principal(Role.operator)).get("/console/operator/").status_code == 200


def test_an_apps_token_has_no_console() -> None:
    answer = signed_in(console_app(), principal(Role.app)).get("/console/")
    assert answer.status_code == 403


# --- CSRF ----------------------------------------------------------------------------------------

def test_a_post_needs_the_sessions_csrf_token_and_this_origin() -> None:
    app = console_app()
    client = signed_in(app, principal(Role.operator))
    csrf = client.headers.pop("X-CSRF-Token")
    assert client.post("/console/logout").status_code == 403
    assert client.post("/console/logout", data={"csrf": "0" * 40}).status_code == 403
    other = signed_in(app, principal(Role.operator, "op-2")).headers["X-CSRF-Token"]
    assert client.post("/console/logout", data={"csrf": other}).status_code == 403  # bound to the session
    assert client.post("/console/logout", data={"csrf": csrf}, headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.post("/console/logout", data={"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    answer = client.post("/console/logout", data={"csrf": csrf}, headers={"Origin": "http://testserver"})
    assert answer.status_code == 303 and 'cityops_session=""' in answer.headers["set-cookie"]


def test_every_page_carries_its_sessions_csrf_token_for_htmx_and_forms() -> None:
    app = console_app()
    client = signed_in(app, principal(Role.operator))
    page = client.get("/console/operator/").text
    assert f'"X-CSRF-Token": "{client.headers["X-CSRF-Token"]}"' in page
    assert f'name="csrf" value="{client.headers["X-CSRF-Token"]}"' in page


def test_pages_forbid_inline_scripts_and_framing() -> None:
    answer = signed_in(console_app(), principal(Role.operator)).get("/console/operator/")
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["x-frame-options"] == "DENY" and answer.headers["cache-control"] == "no-store"
    assert "<script>" not in answer.text


# --- language ------------------------------------------------------------------------------------

def test_chinese_by_default_english_by_switch_and_remembered() -> None:
    client = signed_in(console_app(), principal(Role.operator))
    assert "接线台" in client.get("/console/operator/").text
    english = client.get("/console/operator/?lang=en")
    assert "Hotline desk" in english.text and "lang=en" in english.headers["set-cookie"]
    client.cookies.set("lang", "en", path="/console")
    assert "Hotline desk" in client.get("/console/operator/").text
    assert "接线台" in client.get("/console/operator/?lang=zh").text
    assert "接线台" in client.get("/console/operator/?lang=fr").text  # an unknown language: the default


def test_both_languages_have_the_same_keys_and_every_key_a_template_uses() -> None:
    zh, en = messages("zh"), messages("en")
    assert set(zh) == set(en), sorted(set(zh) ^ set(en))
    used = {key for path in TEMPLATES.rglob("*.html") for key in re.findall(r"t\('([a-z0-9_.]+)'\)", path.read_text())}
    assert used and used <= set(zh), sorted(used - set(zh))
    assert all(json.loads(p.read_text()) for p in MESSAGES_DIR.glob("*.json"))


# --- upstream ------------------------------------------------------------------------------------

def upstream(answer: httpx.MockTransport) -> Upstream:
    return Upstream({"intake": "http://intake", "bridge": "http://bridge", "replay": "http://replay"}, 1.0, transport=answer)


def test_upstream_calls_carry_the_users_own_token_and_name_the_refused_field() -> None:
    calls: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/tickets" and request.method == "POST":
            return httpx.Response(422, json={"detail": [{"loc": ["body", "location", "grid"], "msg": "unknown grid"}]})
        return httpx.Response(200, json={"ok": True})

    api = upstream(httpx.MockTransport(recorded(calls, answer)))
    user = User("op", frozenset({Role.operator}), token="the-users-token")
    assert asyncio.run(api.get("intake", "/stats", user, params={"empty": "", "n": 3})) == {"ok": True}
    assert calls[0].headers["authorization"] == "Bearer the-users-token" and calls[0].url.query == b"n=3"
    with pytest.raises(UpstreamError) as refused:
        asyncio.run(api.post("intake", "/tickets", user, json={}))
    assert refused.value.status == 422 and refused.value.field == "location.grid" and "unknown grid" in refused.value.detail


@pytest.mark.parametrize("failure", ["timeout", "refused", "500"])
def test_an_upstream_that_fails_is_unavailable_never_a_hang(failure: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if failure == "timeout":
            raise httpx.ReadTimeout("slow", request=request)
        if failure == "refused":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(500, text="boom")

    with pytest.raises(UpstreamUnavailable):
        asyncio.run(upstream(httpx.MockTransport(answer)).get("bridge", "/tasks", User("u", frozenset({Role.unit}))))


def test_a_user_never_shows_its_token() -> None:
    assert "secret-token" not in repr(User("op", frozenset({Role.operator}), token="secret-token"))


# --- live feed -----------------------------------------------------------------------------------

EVENT = {"ticket_id": "T-1", "event_type": "TaskAssigned", "status": "dispatched", "unit": "water",
         "grid": "grid-east-1-a-1", "district": "district-east", "at": "2026-05-06T09:00:00Z"}


def test_live_events_reach_only_who_may_see_them() -> None:
    assert visible_to(principal(Role.operator), EVENT) and visible_to(principal(Role.supervisor), EVENT)
    assert visible_to(principal(Role.unit, unit="water"), EVENT)
    assert not visible_to(principal(Role.unit, unit="power"), EVENT)
    assert visible_to(principal(Role.grid_worker, grids=("grid-east-1-a-1",)), EVENT)
    assert not visible_to(principal(Role.grid_worker, grids=("grid-west-1-a-1",)), EVENT)
    assert not visible_to(principal(Role.app), EVENT)


def test_the_live_stream_sends_visible_events_as_sse() -> None:
    async def run() -> list[str]:
        feed = LiveFeed(buffer=10)
        water = feed.stream(principal(Role.unit, unit="water"), heartbeat_s=5)
        power = feed.stream(principal(Role.unit, unit="power"), heartbeat_s=0.05)
        assert await anext(water) == await anext(power) == ": connected\n\n"
        feed.publish(EVENT)
        frames = [await anext(water), await anext(power)]
        await water.aclose()
        await power.aclose()
        assert not feed.subscribers
        return frames

    water, power = asyncio.run(run())
    assert water.startswith("event: ticket\ndata: ") and json.loads(water.split("data: ", 1)[1]) == EVENT
    assert power == ": keep-alive\n\n"


def test_a_subscriber_that_falls_behind_is_dropped() -> None:
    async def run() -> bool:
        feed = LiveFeed(buffer=2)
        stream = feed.stream(principal(Role.operator))
        await anext(stream)
        for _ in range(3):
            feed.publish(EVENT)
        return not feed.subscribers

    assert asyncio.run(run())


# --- static files --------------------------------------------------------------------------------

def test_the_installed_browser_files_and_our_own_are_served() -> None:
    client = TestClient(console_app())
    from services.console.app import VENDOR_DIR

    if not (VENDOR_DIR / "htmx.org").is_dir():
        pytest.fail("run `make install` (npm ci in services/console/static): the console has no htmx to serve")
    for path in ("/console/static/vendor/htmx.org/dist/htmx.min.js", "/console/static/vendor/htmx-ext-sse/dist/sse.min.js",
                 "/console/static/vendor/echarts/dist/echarts.min.js", "/console/static/console.js", "/console/static/console.css"):
        assert client.get(path).status_code == 200, path
    assert client.get("/console/static/vendor/nope.js").status_code == 404
