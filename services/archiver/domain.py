"""Kafka record -> archive row (pure)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any


def encode_headers(headers: Iterable[tuple[str, bytes]]) -> str:
    """Headers as JSON text, values base64 so that any bytes survive the round trip."""
    return json.dumps([[k, base64.b64encode(v or b"").decode()] for k, v in headers])


def _text(value: bytes | None) -> str | None:
    return value.decode(errors="replace") if value else None


def archive_row(record: Any, archived_at: datetime) -> dict[str, Any]:
    headers = list(record.headers or ())
    named = dict(headers)
    return {
        "topic": record.topic, "partition": record.partition, "offset": record.offset,
        "key": record.key, "value": record.value, "headers": encode_headers(headers),
        "timestamp_ms": record.timestamp, "ticket_id": _text(named.get("ce_ticketid") or record.key),
        "event_id": _text(named.get("ce_id")), "event_type": _text(named.get("ce_type")), "archived_at": archived_at,
    }
