"""Envelope <-> Kafka record, in the CloudEvents Kafka protocol binding's binary content mode.

The CloudEvents attributes travel as `ce_*` headers and the record value is the event data as
JSON, so kcat and Kafka's console consumer show a readable body and every attribute. The key is
the ticket id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from pydantic import ValidationError

from .envelope import CONTENT_TYPE, Envelope
from .registry import UnknownEventType, model_for

Headers = list[tuple[str, bytes]]

# CloudEvents extension attribute names must be lower-case alphanumerics.
_EXTENSIONS = {"ticket_id": "ticketid", "correlation_id": "correlationid", "causation_id": "causationid"}
_REQUIRED = ("id", "type", "source", "specversion")


class DecodeError(ValueError):
    """A record that is not a valid cityops event; it belongs on the dead-letter topic."""


class KafkaRecord(NamedTuple):
    key: bytes
    value: bytes
    headers: Headers


def encode(envelope: Envelope[Any], key: str | None = None) -> KafkaRecord:
    """The record of an envelope, keyed by `key` or else the ticket id (which travels in ce_ticketid either way)."""
    headers: Headers = [
        ("ce_specversion", envelope.specversion.encode()),
        ("ce_id", envelope.id.encode()),
        ("ce_source", envelope.source.encode()),
        ("ce_type", envelope.type.encode()),
        ("ce_time", envelope.time.isoformat().encode()),
        ("content-type", envelope.datacontenttype.encode()),
    ]
    if envelope.subject is not None:
        headers.append(("ce_subject", envelope.subject.encode()))
    for field_name, ext in _EXTENSIONS.items():
        value = getattr(envelope, field_name)
        if value is not None:
            headers.append((f"ce_{ext}", value.encode()))
    return KafkaRecord((key or envelope.ticket_id).encode(), envelope.data.model_dump_json().encode(), headers)


def _header_map(headers: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, raw in headers or ():
        try:
            out[name] = raw.decode() if isinstance(raw, (bytes, bytearray)) else str(raw)
        except UnicodeDecodeError as exc:
            raise DecodeError(f"header {name} is not UTF-8") from exc
    return out


def decode(key: bytes | None, value: bytes | None, headers: Any) -> Envelope[Any]:
    """Rebuild the envelope; raise DecodeError with a readable reason for anything malformed."""
    h = _header_map(headers)
    missing = [a for a in _REQUIRED if f"ce_{a}" not in h]
    if missing:
        raise DecodeError(f"missing CloudEvents header(s): {', '.join('ce_' + m for m in missing)}")
    try:
        model = model_for(h["ce_type"])
    except UnknownEventType as exc:
        raise DecodeError(str(exc)) from None
    if value is None:
        raise DecodeError("record has no value")
    try:
        data = model.model_validate_json(value)
    except ValidationError as exc:
        raise DecodeError(f"invalid {h['ce_type']} data: {validation_reason(exc)}") from None
    ticket_id = h.get("ce_ticketid") or (key.decode(errors="replace") if key else None)
    if not ticket_id:
        raise DecodeError("record has neither ce_ticketid nor a key")
    try:
        time = datetime.fromisoformat(h["ce_time"]) if "ce_time" in h else None
    except ValueError:
        raise DecodeError("invalid envelope: ce_time is not an ISO 8601 time") from None
    try:
        return Envelope(
            id=h["ce_id"], type=h["ce_type"], source=h["ce_source"], specversion=h["ce_specversion"],
            time=time, subject=h.get("ce_subject"), datacontenttype=h.get("content-type", CONTENT_TYPE),
            ticket_id=ticket_id, correlation_id=h.get("ce_correlationid") or h["ce_id"],
            causation_id=h.get("ce_causationid"), data=data,
        )
    except ValidationError as exc:
        raise DecodeError(f"invalid envelope: {validation_reason(exc)}") from None


def validation_reason(exc: ValidationError, limit: int = 5) -> str:
    """Where and why a value was refused (`loc: msg [type]` per error), without the value itself.

    pydantic's own text (`str(exc)`) and each error's `input` carry the rejected value, which may be a
    caller's phone number or name: a reason ends up in dead-letter headers and logs, where it must not."""
    errors = refusals(exc.errors(include_url=False, include_context=False))
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']} [{e['type']}]" for e in errors[:limit]]
    if len(errors) > limit:
        parts.append(f"... {len(errors) - limit} more")
    return "; ".join(parts)


def refusals(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """pydantic (or FastAPI) validation errors as loc, msg and type only: no `input`, no `ctx`, and a message
    that quotes the input (a discriminated union's unknown tag, a custom validator's text) with it blanked."""
    return [{"loc": list(e.get("loc", ())), "msg": _without(str(e.get("msg", "")), e.get("input")), "type": e.get("type", "")}
            for e in errors]


def _without(msg: str, rejected: Any) -> str:
    if isinstance(rejected, (str, int, float)) and not isinstance(rejected, bool) and len(str(rejected)) >= 3:
        return msg.replace(str(rejected), "<rejected value>")
    return msg
