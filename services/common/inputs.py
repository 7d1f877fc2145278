"""What an HTTP door of the hub accepts: a body no larger than a budget, text without control characters,
every string capped, dates within bounds. Shared by intake and the unit bridge (issue 12, point 1).

A refusal names the field (422 from the model's own validation) or says the body is too large (413),
and nothing is published: the checks run before a handler does anything.

Why each rule:
* control characters (NUL above all) cannot be stored by PostgreSQL and would dead-letter a ticket the
  caller was told was accepted; lone surrogates cannot be encoded as UTF-8 at all. Free text may keep
  tab and line breaks, one-line fields (ids, names, addresses) may not;
* a cap on every string keeps every record a ticket can produce under the broker's record limit
  (tests/unit/test_size_budget.py follows the largest accepted ticket to closed);
* dates outside 2000..2100 are typos or attacks, and the far ones overflow when converted to UTC.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from contracts.codec import refusals

from .logs import get_logger

log = get_logger(__name__)

# The largest request body any route needs: a batch of 500 callbacks, or a complaint of 5,000 characters
# escaped by a JSON encoder (\uXXXX, 12 bytes for a character outside the BMP), fits with room to spare.
MAX_BODY_BYTES = 512 * 1024

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)

# Ids the hub makes or reads from its catalogue (ticket T-…, task T-…:unit:round, consultation C-…, unit and area
# ids, category codes) and the ids other systems send (external ids, Idempotency-Keys) fit in this.
ID_MAX = 128
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"
KEY_MAX = 200
ADDRESS_MAX = 500
NOTE_MAX = 2000
TEXT_MAX = 5000
_LINE_BREAKS = frozenset("\t\n\r")


def control_character(value: str, *, multiline: bool) -> int | None:
    """Index of the first character a text field may not hold, or None."""
    for i, char in enumerate(value):
        if multiline and char in _LINE_BREAKS:
            continue
        if unicodedata.category(char) in ("Cc", "Cs"):  # C0/C1 controls, DEL; lone surrogates
            return i
    return None


def _line(value: str) -> str:
    at = control_character(value, multiline=False)
    if at is not None:
        raise ValueError(f"control character at position {at} (a one-line field holds printable text only)")
    return value


def _text(value: str) -> str:
    at = control_character(value, multiline=True)
    if at is not None:
        raise ValueError(f"control character at position {at} (only tab and line breaks are allowed)")
    return value


def _bounded(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value  # the field's own validator says a timezone is required, where one is
    if not EARLIEST <= value <= LATEST:
        raise ValueError(f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    return value


# Use them as a field's type; the field's own `Field(...)` adds its description (and a min_length).
Id = Annotated[str, Field(max_length=ID_MAX, pattern=ID_PATTERN), AfterValidator(_line)]
"""An id of the hub's or its catalogue's (ticket, task, unit, area, category): ascii, no spaces."""
Ref = Annotated[str, Field(max_length=ID_MAX), AfterValidator(_line)]
"""Another system's id (an external id, a resident's pseudonymous ref): any printable text, capped as an id."""
Name = Annotated[str, Field(max_length=100), AfterValidator(_line)]
"""A person's or a unit's name, a handler's name."""
Address = Annotated[str, Field(max_length=ADDRESS_MAX), AfterValidator(_line)]
"""A free-text address."""
Note = Annotated[str, Field(max_length=NOTE_MAX), AfterValidator(_text)]
"""A comment, reason, note, result: free text of a paragraph or two."""
LongText = Annotated[str, Field(max_length=TEXT_MAX), AfterValidator(_text)]
"""The request itself, in the caller's words."""
Key = Annotated[str, Field(max_length=KEY_MAX), AfterValidator(_line)]
"""An Idempotency-Key sent in a body (the header's cap)."""
Moment = Annotated[datetime, AfterValidator(_bounded)]
"""A date and time between 2000 and 2100."""


def refuse_invalid_requests(api: FastAPI, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
    """Install both refusals on an app: 413 for a body over the budget, 422 naming each refused field."""
    api.add_exception_handler(RequestValidationError, invalid_request)
    api.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each refused field and why, never the value: FastAPI's default answer would carry each error's
    `input` (a caller's phone number, a name), and one holding a lone surrogate cannot even be encoded (a 500)."""
    assert isinstance(exc, RequestValidationError)
    detail = refusals(exc.errors())
    log.info("request_invalid", method=request.method, path=request.url.path,
             refused=[{"loc": ".".join(str(p) for p in e["loc"]), "type": e["type"]} for e in detail])
    return JSONResponse(status_code=422, content={"detail": detail})


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """ASGI middleware: 413 for a request body over `max_bytes`, read no further than that.

    A declared Content-Length is refused before anything is read; a chunked body is read up to the limit
    and handed on as one message, so the app never sees more than the budget."""

    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        try:
            body = await self._read(receive)
        except BodyTooLarge:
            await self._refuse(send)
            return
        delivered = False

        async def replay() -> Any:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # http.disconnect once the client goes

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _refuse(self, send: Send) -> None:
        body = f'{{"detail":"request body larger than {self.max_bytes} bytes"}}'.encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
