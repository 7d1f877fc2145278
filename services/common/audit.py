"""The audit trail of an HTTP door: one `AuditRecorded` per state-changing call, refused ones included.

`AuditMiddleware` wraps a FastAPI app (intake's, the units' bridge's): for every POST, PUT, PATCH and
DELETE it notes who called (the principal the route's access rule put on `request.state`, when the token
was valid), the route template, the path's ids, the events the handler published (`note_published`,
called by the door's publish function), the status answered and the caller's address, then hands the
record to `publish(AUDIT.name, envelope)`. It never reads a body: the record holds no personal data.

The record is published after the answer went out, so auditing adds no latency to the caller; a record
that cannot be published is logged (`audit_publish_failed`, with everything but the body) and the call
is not undone. Reads (GET, HEAD, OPTIONS) are not recorded, except the reads an app declares as disclosing
personal data (`disclosing_reads`: intake's callback queue opens callers' numbers): who opened which tickets'
callers is on the trail like a change would be (`note_disclosed` names the tickets shown).
"""

from __future__ import annotations

import contextvars
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from contracts import events as ev
from contracts.envelope import Envelope, utcnow
from contracts.topics import AUDIT

from .inputs import ID_MAX, ID_PATTERN, control_character
from .logs import get_logger

log = get_logger(__name__)

Publish = Callable[[str, Envelope[Any]], Awaitable[None]]
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REQUEST_ID_HEADER = b"x-request-id"
# A caller-chosen request id is echoed, so it is bounded and kept to printable ASCII.
_MAX_REQUEST_ID = 128


@dataclass
class CallNote:
    """What a handler's publishes tell about the call being audited."""

    target_ids: list[str] = field(default_factory=list)
    command_types: list[str] = field(default_factory=list)


_current: contextvars.ContextVar[CallNote | None] = contextvars.ContextVar("cityops_audit_call", default=None)


def note_published(envelope: Envelope[Any]) -> None:
    """Record, for the call being audited (if any), the ticket and event type a handler published."""
    note = _current.get()
    if note is None:
        return
    if envelope.ticket_id not in note.target_ids:
        note.target_ids.append(envelope.ticket_id)
    if envelope.type not in note.command_types:
        note.command_types.append(envelope.type)


def note_disclosed(ticket_ids: list[str]) -> None:
    """Record, for the disclosing read being audited (if any), the tickets whose personal data it showed."""
    note = _current.get()
    if note is None:
        return
    note.target_ids.extend(t for t in ticket_ids if t not in note.target_ids)


def outcome_of(status: int) -> str:
    if status < 400:
        return "accepted"
    if status == 401:
        return "unauthenticated"
    if status == 403:
        return "forbidden"
    return "rejected" if status < 500 else "failed"


def request_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER:
            text = value.decode("latin-1")
            if 0 < len(text) <= _MAX_REQUEST_ID and text.isascii() and text.isprintable():
                return text
    return uuid.uuid4().hex


def recordable_id(value: str) -> str:
    """A path id as the trail keeps it: a refused call's id may be anything (a NUL, 60 kB), which the archiver's
    PostgreSQL could not store and no record should carry; it is kept only if it is an id at all."""
    return value if re.fullmatch(ID_PATTERN, value) else "<not an id>"


def recordable_path(path: str) -> str:
    """The path of a call no route matched, kept only if it is printable and short."""
    return path if len(path) <= 2 * ID_MAX and control_character(path, multiline=False) is None else "<unrecognised path>"


def audit_record(scope: Scope, *, service: str, status: int, note: CallNote, request_id: str,
                 received_at: datetime) -> ev.AuditRecorded:
    """The audit record of a finished call, from its ASGI scope (after routing) and what its handler noted."""
    principal = scope.get("state", {}).get("principal")
    route = scope.get("route")
    template = getattr(route, "path", None) or recordable_path(scope.get("path", ""))
    path_ids = [recordable_id(str(v)) for v in (scope.get("path_params") or {}).values()]
    client = scope.get("client")
    return ev.AuditRecorded(
        subject=getattr(principal, "subject", None), roles=tuple(sorted(getattr(principal, "roles", ()))),
        issuer=getattr(principal, "issuer", None), unit=getattr(principal, "unit", None),
        client_id=getattr(principal, "client_id", None), occurred_at=received_at, service=service,
        method=scope["method"], route=template,
        target_ids=tuple(dict.fromkeys([*path_ids, *note.target_ids])), command_types=tuple(note.command_types),
        status_code=status, outcome=outcome_of(status), client_ip=client[0] if client else None, request_id=request_id)


def audit_envelope(record: ev.AuditRecorded, *, source: str) -> Envelope[ev.AuditRecorded]:
    """Keyed by the caller, so one caller's trail stays in order."""
    return Envelope.origin(record, source=source, ticket_id=record.subject or "anonymous", time=record.occurred_at)


class AuditMiddleware:
    """ASGI middleware recording every state-changing call of the app it wraps, and its disclosing reads (paths
    in `disclosing_reads`; see the module docstring)."""

    def __init__(self, app: ASGIApp, *, publish: Publish, service: str, source: str,
                 clock: Callable[[], datetime] = utcnow, disclosing_reads: frozenset[str] = frozenset()) -> None:
        self.app, self.publish, self.service, self.source, self.clock = app, publish, service, source, clock
        self.disclosing_reads = disclosing_reads

    def _audited(self, scope: Scope) -> bool:
        return scope["type"] == "http" and (scope["method"] in STATE_CHANGING or scope.get("path") in self.disclosing_reads)

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]) -> None:
        if not self._audited(scope):
            await self.app(scope, receive, send)
            return
        request_id, received_at, note = request_id_of(scope), self.clock(), CallNote()
        status = 500  # what the caller gets if the app raises before answering

        async def send_noting_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        token = _current.set(note)
        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            _current.reset(token)
            await self._record(scope, status, note, request_id, received_at)

    async def _record(self, scope: Scope, status: int, note: CallNote, request_id: str, received_at: datetime) -> None:
        record = audit_record(scope, service=self.service, status=status, note=note, request_id=request_id,
                              received_at=received_at)
        try:
            await self.publish(AUDIT.name, audit_envelope(record, source=self.source))
        except Exception as exc:  # the call itself was answered: say loudly that its trail is missing
            log.error("audit_publish_failed", error=repr(exc), **record.model_dump(mode="json"))
