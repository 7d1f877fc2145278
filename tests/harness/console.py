"""The console built in-process for tests: a fake upstream (httpx.MockTransport), a session for any principal."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.common.auth import Principal, Role
from services.console.app import create_app
from services.console.live import LiveFeed
from services.console.session import SESSION_COOKIE, Sessions
from services.console.settings import ConsoleSettings
from services.console.upstream import Upstream
from tests.harness.auth import verifier

Answer = Callable[[httpx.Request], httpx.Response]


def empty_answers(request: httpx.Request) -> httpx.Response:
    """Every upstream call answered with an empty list (a page with nothing to show)."""
    return httpx.Response(200, json=[])


def console_app(answer: Answer = empty_answers, *, mode: str = "demo", live: LiveFeed | None = None,
                **settings: Any) -> FastAPI:
    upstream = Upstream({"intake": "http://intake", "bridge": "http://bridge", "replay": "http://replay"}, 2.0,
                        transport=httpx.MockTransport(answer))
    return create_app(ConsoleSettings(mode=mode, **settings), upstream=upstream, live=live or LiveFeed(), verifier=verifier())  # type: ignore[arg-type]


def principal(role: Role | str, subject: str | None = None, *, unit: str | None = None, grids: tuple[str, ...] = ()) -> Principal:
    role = Role(role)
    return Principal(subject or f"test-{role}", frozenset({role}), unit=unit, grids=grids)


def signed_in(app: FastAPI, who: Principal) -> TestClient:
    """A client holding a console session for `who` (and its CSRF header on every request)."""
    sessions: Sessions = app.state.sessions
    token = sessions.mint(who)
    client = TestClient(app, follow_redirects=False)
    client.cookies.set(SESSION_COOKIE, token, path="/console")
    client.headers["X-CSRF-Token"] = sessions.csrf(token)
    return client


def recorded(calls: list[httpx.Request], answer: Answer = empty_answers) -> Answer:
    """An upstream that records each request before answering it."""
    def record(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return answer(request)
    return record


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content or b"null")
