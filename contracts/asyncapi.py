"""An AsyncAPI 3.0 document of the whole hub, generated from the topic catalogue and the event models.

FastStream could describe each service's own subscribers, but our subscribers take raw records (we
decode ourselves, to dead-letter what does not decode), so the catalogue is the better source.
"""

from __future__ import annotations

from typing import Any

from .envelope import Envelope
from .registry import EVENT_TYPES
from .topics import all_topics


def _message_name(event_type: str) -> str:
    return event_type.removeprefix("cityops.").replace(".", "_")


def asyncapi_document(unit_ids: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    messages = {
        _message_name(t): {
            "name": t, "title": model.__name__, "summary": (model.__doc__ or "").strip().splitlines()[0],
            "contentType": "application/json",
            "bindings": {"kafka": {"key": {"type": "string", "description": "ticket id"}}},
            "headers": {"type": "object", "description": "CloudEvents Kafka binding (binary mode)",
                        "properties": {f"ce_{a}": {"type": "string"} for a in
                                       ("id", "type", "source", "time", "subject", "specversion", "ticketid",
                                        "correlationid", "causationid")}},
            "payload": model.model_json_schema(ref_template="#/components/schemas/{model}"),
        }
        for t, model in sorted(EVENT_TYPES.items())
    }
    channels = {}
    for spec in all_topics(list(unit_ids)):
        channels[spec.name.replace(".", "_")] = {
            "address": spec.name, "description": f"{spec.description} Written by {spec.writer}; read by {', '.join(spec.readers)}.",
            "x-writer": spec.writer, "x-readers": list(spec.readers),  # the one writer (contracts/topics.py)
            "messages": {_message_name(t): {"$ref": f"#/components/messages/{_message_name(t)}"} for t in spec.event_types},
            "bindings": {"kafka": {"partitions": spec.partitions, "topicConfiguration": dict(spec.config)}},
        }
    schemas: dict[str, Any] = {}
    for msg in messages.values():
        schemas.update(msg["payload"].pop("$defs", {}))
    schemas["Envelope"] = {k: v for k, v in Envelope.model_json_schema().items() if k != "$defs"}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "cityops", "version": "1",
                 "description": "Topics and events of the cityops 12345 hotline hub (contracts v1)."},
        "servers": {"local": {"host": "127.0.0.1:9092", "protocol": "kafka"}},
        "channels": channels,
        "components": {"messages": messages, "schemas": schemas},
    }
