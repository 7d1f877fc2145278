"""One valid example of every event type: used by the round-trip tests, the schema docs and demos.

Built from the models themselves (field types, constraints, literals), so a new event type gets
an example without anyone writing one.
"""

from __future__ import annotations

import types
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from .envelope import Envelope, Event
from .registry import EVENT_TYPES

EXAMPLE_TIME = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
_SPECIAL_STRINGS = {"phone": "13812345678", "text": "小区门口路灯坏了三天 / street light out for three days"}


def _constraint(info: FieldInfo | None, name: str) -> Any:
    for meta in (info.metadata if info else ()):
        if hasattr(meta, name):
            return getattr(meta, name)
    return None


def example_value(annotation: Any, info: FieldInfo | None = None, field_name: str = "") -> Any:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        return example_value(options[0], info, field_name)
    if origin is Literal:
        return get_args(annotation)[0]
    if origin is tuple:
        args = get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return (example_value(args[0], None, field_name),)
        return tuple(example_value(a, None, field_name) for a in args)
    if isinstance(annotation, type):
        if issubclass(annotation, Enum):
            return next(iter(annotation))
        if issubclass(annotation, BaseModel):
            return build_example(annotation)
        if annotation is bool:
            return True
        if annotation is int:
            return max(_constraint(info, "ge") or 0, 2)
        if annotation is float:
            return 0.9 if (_constraint(info, "le") or 2) <= 1 else 1.5
        if annotation is datetime:
            return EXAMPLE_TIME
        if annotation is date:
            return EXAMPLE_TIME.date()
        if annotation is str:
            return _SPECIAL_STRINGS.get(field_name, f"example-{field_name or 'value'}")
    raise TypeError(f"no example for {annotation!r}")


def build_example(model: type[BaseModel]) -> Any:
    values = {name: example_value(f.annotation, f, name) for name, f in model.model_fields.items()}
    return model(**values)


def example_envelope(event_type: str, ticket_id: str = "T-EXAMPLE-0001") -> Envelope[Any]:
    data: Event = build_example(EVENT_TYPES[event_type])
    return Envelope(type=event_type, source="/cityops/examples", time=EXAMPLE_TIME, subject=ticket_id,
                    ticket_id=ticket_id, correlation_id="corr-example", causation_id="cause-example", data=data)


def all_examples() -> list[Envelope[Any]]:
    return [example_envelope(t, f"T-EXAMPLE-{i:04d}") for i, t in enumerate(sorted(EVENT_TYPES))]
