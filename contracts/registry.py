"""Every event type of contracts v1, looked up by its CloudEvents type."""

from __future__ import annotations

import inspect

from . import events as _events
from .envelope import Event


def _collect() -> dict[str, type[Event]]:
    found: dict[str, type[Event]] = {}
    for _, obj in inspect.getmembers(_events, inspect.isclass):
        if issubclass(obj, Event) and obj is not Event and hasattr(obj, "event_type"):
            if obj.event_type in found:
                raise RuntimeError(f"duplicate event type {obj.event_type}")
            found[obj.event_type] = obj
    return found


EVENT_TYPES: dict[str, type[Event]] = _collect()


class UnknownEventType(LookupError):
    pass


def model_for(event_type: str) -> type[Event]:
    try:
        return EVENT_TYPES[event_type]
    except KeyError:
        raise UnknownEventType(f"unknown event type {event_type!r}") from None
