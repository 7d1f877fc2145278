"""The hub's HTTP APIs as the signed-in user sees them: every call carries the user's own token.

An upstream 4xx becomes `UpstreamError(status, detail, field)`: the page shows the message next to the field it
names. A 5xx, a refused connection or a timeout becomes `UpstreamUnavailable`: a "try again" banner. No call
waits longer than the settings' timeout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from services.common.auth import Principal

Service = Literal["intake", "bridge", "replay"]


@dataclass(frozen=True)
class User(Principal):
    """A signed-in console user: who they are, and the hub token the console calls the APIs with for them."""

    token: str = ""

    def __repr__(self) -> str:  # the token never reaches a log line
        return f"User(subject={self.subject!r}, roles={sorted(self.roles)!r}, unit={self.unit!r}, grids={self.grids!r})"


class UpstreamError(Exception):
    """The API refused the request (4xx): `detail` says why, `field` names the input when the API said which."""

    def __init__(self, status: int, detail: str, field: str | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status, self.detail, self.field = status, detail, field


class UpstreamUnavailable(Exception):
    """The API did not answer in time, or failed (5xx): try again."""

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"{service}: {reason}")
        self.service, self.reason = service, reason


def explain(response: httpx.Response) -> tuple[str, str | None]:
    """(message, field) of an API's 4xx: FastAPI's `{"detail": "..."}` or its validation list."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return response.text[:300] or response.reason_phrase, None
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        loc = [str(p) for p in first.get("loc", []) if p not in ("body", "query", "path")]
        name = ".".join(loc) or None
        return (f"{name}: {first.get('msg', '')}" if name else str(first.get("msg", ""))), name
    return str(detail if detail is not None else response.reason_phrase), None


class Upstream:
    """One HTTP client per API, shared by every request of the console."""

    def __init__(self, urls: Mapping[str, str], timeout_s: float, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._clients = {name: httpx.AsyncClient(base_url=url, timeout=timeout_s, transport=transport)
                         for name, url in urls.items()}

    async def get(self, service: Service, path: str, user: Principal, *, params: Mapping[str, Any] | None = None) -> Any:
        return await self.request("GET", service, path, user, params=params)

    async def post(self, service: Service, path: str, user: Principal, *, json: Any = None,
                   params: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None) -> Any:
        return await self.request("POST", service, path, user, json=json, params=params, headers=headers)

    async def request(self, method: str, service: Service, path: str, user: Principal, *, json: Any = None,
                      params: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None,
                      files: Any = None, data: Any = None) -> Any:
        """The JSON answer (None for an empty body), or UpstreamError / UpstreamUnavailable."""
        token = getattr(user, "token", "")
        try:
            response = await self._clients[service].request(
                method, path, json=json, params={k: v for k, v in (params or {}).items() if v not in (None, "")},
                headers={"Authorization": f"Bearer {token}", **(headers or {})}, files=files, data=data)
        except httpx.TimeoutException:
            raise UpstreamUnavailable(service, "timeout") from None
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(service, type(exc).__name__) from None
        if response.status_code >= 500:
            raise UpstreamUnavailable(service, f"HTTP {response.status_code}")
        if response.status_code >= 400:
            message, field = explain(response)
            raise UpstreamError(response.status_code, message, field)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
