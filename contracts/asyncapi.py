"""An AsyncAPI 3.0 document of the whole hub, generated from the topic catalogue and the event models.

FastStream could describe each service's own subscribers, but our subscribers take raw records (we
decode ourselves, to dead-letter what does not decode), so the catalogue is the better source.

The document must pass the official parser (@asyncapi/parser; tools/asyncapi-check runs it in
tests/contract/test_asyncapi_document.py), which validates the Kafka bindings against their own
schema: topic configuration values keep Kafka's types there (integers, a list for cleanup.policy),
while the catalogue keeps them as the strings the admin client sends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from .envelope import Envelope
from .registry import EVENT_TYPES
from .topics import CATALOGUE_TOPICS, all_topics

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
SCHEMA_REF_TEMPLATE = "#/components/schemas/{model}"
CLOUDEVENTS_HEADERS = ("id", "type", "source", "time", "subject", "specversion", "ticketid", "correlationid", "causationid")

# Topic configuration keys the Kafka channel binding types; any other key stays a string.
_INTEGER_CONFIGS = frozenset({"retention.ms", "retention.bytes", "delete.retention.ms", "max.message.bytes"})
_LIST_CONFIGS = frozenset({"cleanup.policy"})
_BOOLEAN_CONFIGS = frozenset({"confluent.key.schema.validation", "confluent.value.schema.validation"})


def _message_name(event_type: str) -> str:
    return event_type.removeprefix("cityops.").replace(".", "_")


def _channel_name(topic: str) -> str:
    return topic.replace(".", "_")


def binding_topic_configuration(config: Mapping[str, str]) -> dict[str, Any]:
    """A topic's Kafka configuration with the types the AsyncAPI Kafka channel binding requires."""
    typed: dict[str, Any] = {}
    for key, value in config.items():
        if key in _INTEGER_CONFIGS:
            typed[key] = int(value)
        elif key in _LIST_CONFIGS:
            typed[key] = [part.strip() for part in value.split(",") if part.strip()]
        elif key in _BOOLEAN_CONFIGS:
            typed[key] = value.strip().lower() == "true"
        else:
            typed[key] = value
    return typed


def _schema_with_shared_defs(model: type[BaseModel], shared: dict[str, Any]) -> dict[str, Any]:
    """The model's JSON Schema whose nested definitions move to components/schemas (into `shared`)."""
    schema = model.model_json_schema(ref_template=SCHEMA_REF_TEMPLATE)
    shared.update(schema.pop("$defs", {}))
    return schema


def _headers_schema() -> dict[str, Any]:
    return {"type": "object", "description": "CloudEvents Kafka binding (binary mode)",
            "properties": {f"ce_{attribute}": {"type": "string"} for attribute in CLOUDEVENTS_HEADERS}}


_KEY_TEXT = {"ticket_id": "ticket id", "subject": "the caller's subject", "resident_id": "resident id",
             "unit_id": "the unit id on the units' task topics"}


def _key_of(event_type: str) -> str:
    """What a record's key holds: the ticket id, except on topics keyed otherwise (the audit trail: the caller;
    a unit's task topics: the unit). An event on topics keyed differently names each key."""
    keys = sorted({spec.key for spec in CATALOGUE_TOPICS if event_type in spec.event_types}) or ["ticket_id"]
    return "; ".join(_KEY_TEXT.get(k, k) for k in keys)


def _messages(shared: dict[str, Any]) -> dict[str, Any]:
    return {
        _message_name(event_type): {
            "name": event_type, "title": model.__name__, "summary": (model.__doc__ or "").strip().splitlines()[0],
            "contentType": "application/json",
            "bindings": {"kafka": {"key": {"type": "string", "description": _key_of(event_type)},
                                   "bindingVersion": KAFKA_BINDING_VERSION}},
            "headers": _headers_schema(),
            "payload": _schema_with_shared_defs(model, shared),
        }
        for event_type, model in sorted(EVENT_TYPES.items())
    }


def _channels(own_topic_units: Sequence[str]) -> dict[str, Any]:
    return {
        _channel_name(spec.name): {
            "address": spec.name,
            "description": f"{spec.description} Written by {spec.writer_label}; read by {', '.join(spec.readers)}.",
            "x-writer": spec.writer_label, "x-readers": list(spec.readers),  # the writer (contracts/topics.py)
            "messages": {_message_name(t): {"$ref": f"#/components/messages/{_message_name(t)}"} for t in spec.event_types},
            "bindings": {"kafka": {"partitions": spec.partitions,
                                   "topicConfiguration": binding_topic_configuration(spec.config),
                                   "bindingVersion": KAFKA_BINDING_VERSION}},
        }
        for spec in all_topics(own_topic_units)
    }


def asyncapi_document(own_topic_units: Sequence[str] = ()) -> dict[str, Any]:
    """The AsyncAPI document of every catalogue topic (the shared area task topic included) and of the own task
    topics of `own_topic_units` (`Catalogue.own_topic_units()`)."""
    schemas: dict[str, Any] = {}
    messages = _messages(schemas)
    # The envelope is documented for readers of the binding; its `data` refers to the Event base.
    schemas["Envelope"] = _schema_with_shared_defs(Envelope, schemas)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": "cityops", "version": "1",
                 "description": "Topics and events of the cityops 12345 hotline hub (contracts v1)."},
        "servers": {"local": {"host": "127.0.0.1:9092", "protocol": "kafka"}},
        "channels": _channels(own_topic_units),
        "components": {"messages": messages, "schemas": schemas},
    }
