"""Contracts v1 may only grow: every frozen schema must still accept what it accepted."""

from __future__ import annotations

import copy
import json

import pytest

from contracts.events import TicketSubmitted
from contracts.registry import EVENT_TYPES
from contracts.schemas import compatibility_problems, current_schemas, load_frozen

FROZEN = load_frozen()
CURRENT = current_schemas()


def test_every_event_type_has_a_frozen_schema():
    missing = sorted(set(CURRENT) - set(FROZEN))
    assert not missing, f"run `cityops contracts export` and commit: {missing}"


@pytest.mark.parametrize("event_type", sorted(FROZEN))
def test_current_model_is_compatible_with_frozen_schema(event_type):
    assert event_type in CURRENT, f"{event_type} was removed from contracts v1"
    assert compatibility_problems(FROZEN[event_type], CURRENT[event_type]) == []


def test_checker_catches_a_removed_field():
    changed = copy.deepcopy(CURRENT[TicketSubmitted.event_type])
    del changed["properties"]["text"]
    assert any("text: field removed" in p for p in compatibility_problems(CURRENT[TicketSubmitted.event_type], changed))


def test_checker_catches_a_new_required_field():
    changed = copy.deepcopy(CURRENT[TicketSubmitted.event_type])
    changed["properties"]["ward"] = {"type": "string"}
    changed["required"] = [*changed["required"], "ward"]
    assert any("new required" in p for p in compatibility_problems(CURRENT[TicketSubmitted.event_type], changed))


def test_checker_catches_a_retyped_field_but_not_a_new_description():
    base = CURRENT[TicketSubmitted.event_type]
    retyped = copy.deepcopy(base)
    retyped["properties"]["text"] = {"type": "integer"}
    reworded = copy.deepcopy(base)
    reworded["properties"]["text"]["description"] = "reworded"
    assert any("type changed" in p for p in compatibility_problems(base, retyped))
    assert compatibility_problems(base, reworded) == []


def test_adding_an_optional_field_is_allowed():
    base = CURRENT[TicketSubmitted.event_type]
    grown = copy.deepcopy(base)
    grown["properties"]["ward"] = {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
    assert compatibility_problems(base, grown) == []


def test_every_field_is_described():
    undocumented = []
    for event_type, schema in CURRENT.items():
        for scope in [schema, *schema.get("$defs", {}).values()]:
            for name, prop in scope.get("properties", {}).items():
                if "description" not in prop:
                    undocumented.append(f"{event_type}:{scope.get('title')}.{name}")
    assert undocumented == []


def test_event_type_names_follow_the_convention():
    for event_type in EVENT_TYPES:
        parts = event_type.split(".")
        assert parts[0] == "cityops" and parts[-1] == "v1" and len(parts) == 5, event_type


def test_asyncapi_names_every_topic_and_event():
    from contracts.asyncapi import asyncapi_document
    from contracts.topics import WORKFLOW_TOPICS

    doc = asyncapi_document(["water"])
    addresses = {c["address"] for c in doc["channels"].values()}
    assert {t.name for t in WORKFLOW_TOPICS} | {"cityops.unit.water.tasks.v1"} <= addresses
    assert {m["name"] for m in doc["components"]["messages"].values()} == set(EVENT_TYPES)
    refs = {r["$ref"].rsplit("/", 1)[1] for c in doc["channels"].values() for r in c["messages"].values()}
    assert refs <= set(doc["components"]["messages"])


def test_marking_a_field_deprecated_is_allowed_but_removing_it_is_not():
    base = CURRENT[TicketSubmitted.event_type]
    deprecated = copy.deepcopy(base)
    deprecated["properties"]["language"]["deprecated"] = True
    assert compatibility_problems(base, deprecated) == []
    removed = copy.deepcopy(deprecated)
    del removed["properties"]["language"]
    assert any("language: field removed" in p for p in compatibility_problems(base, removed))


def test_a_deprecated_model_field_keeps_old_records_decodable():
    from pydantic import Field

    from contracts.envelope import Event

    class Old(Event):
        event_type = "cityops.test.thing.happened.v1"
        area: str | None = Field(default=None, description="Where it happened.")

    class Retiring(Event):
        event_type = "cityops.test.thing.happened.v1"
        area: str | None = Field(default=None, deprecated="nothing reads it", description="Where it happened.")

    old, new = Old.model_json_schema(), Retiring.model_json_schema()
    assert new["properties"]["area"].get("deprecated") is True
    assert compatibility_problems(old, new) == []
    assert Retiring.model_validate_json(Old(area="east").model_dump_json()).model_dump() == {"area": "east"}


def test_no_event_declares_topic_area_any_more():
    """It was a class constant on every event, read nowhere and never on the wire (not in any schema)."""
    assert not any(hasattr(model, "topic_area") for model in EVENT_TYPES.values())
    assert not any("topic_area" in json.dumps(schema) for schema in FROZEN.values())


def test_the_events_package_exports_every_model_of_its_modules():
    """contracts.registry finds event types on the package: a model left out of __init__ would not decode."""
    import importlib
    import inspect
    import pkgutil

    from contracts import events

    defined = set()
    for info in pkgutil.iter_modules(events.__path__):
        module = importlib.import_module(f"{events.__name__}.{info.name}")
        defined |= {name for name, obj in inspect.getmembers(module, inspect.isclass) if obj.__module__ == module.__name__}
    assert defined and defined <= set(events.__all__), sorted(defined - set(events.__all__))
    assert set(events.__all__) <= set(dir(events)), sorted(set(events.__all__) - set(dir(events)))
