"""The live feed: lifecycle events fanned out to the browsers' server-sent-event streams (GET /console/live).

Each event reaches a subscriber only when the session may see it (`visible_to`): a unit its own tickets, a grid
worker its grids, operators, supervisors and auditors all. A subscriber that falls `buffer` events behind is
dropped: its browser's EventSource reconnects, and the page's next refresh catches up.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from contracts.topics import ACT, CONSULT, EVALUATE, SLA, TICKETS, TRIAGE, UNIT_REPORTS
from services.common.auth import Principal, Role
from services.common.logs import get_logger

log = get_logger(__name__)

HEARTBEAT_S = 15.0  # keeps proxies from closing an idle stream; also how soon a gone browser is noticed
SEES_ALL = (Role.operator, Role.supervisor, Role.auditor)
# The ticket lifecycle (no personal data on any of them); contracts/topics.py names "console" as their reader.
LIFECYCLE_TOPICS = tuple(spec.name for spec in (TICKETS, TRIAGE, CONSULT, ACT, UNIT_REPORTS, EVALUATE, SLA))


def visible_to(principal: Principal, event: Mapping[str, Any]) -> bool:
    if principal.has(*SEES_ALL):
        return True
    if principal.has(Role.unit) and principal.unit:
        return principal.unit == event.get("unit") or principal.unit in (event.get("units") or ())
    if principal.has(Role.grid_worker):
        return event.get("grid") in principal.grids
    return False


def sse_frame(event: str, data: Mapping[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n"


@dataclass(eq=False)
class Subscriber:
    principal: Principal
    queue: asyncio.Queue[dict[str, Any]]
    dropped: bool = False


@dataclass
class LiveFeed:
    """Fan-out of ticket events to subscribers. `publish` is called by the Kafka reader (or a test)."""

    buffer: int = 200
    topics: tuple[str, ...] = LIFECYCLE_TOPICS
    subscribers: set[Subscriber] = field(default_factory=set)
    published: int = 0

    async def start(self) -> None:
        """Start reading the broker (a feed without one, as in unit tests, only fans out what it is given)."""

    async def stop(self) -> None:
        for sub in list(self.subscribers):
            self._drop(sub)

    def publish(self, event: dict[str, Any]) -> None:
        self.published += 1
        for sub in list(self.subscribers):
            if not visible_to(sub.principal, event):
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                self._drop(sub)

    def _drop(self, sub: Subscriber) -> None:
        sub.dropped = True
        self.subscribers.discard(sub)
        with suppress(asyncio.QueueFull):
            sub.queue.put_nowait({})  # wakes the stream so it ends

    async def stream(self, principal: Principal, heartbeat_s: float = HEARTBEAT_S) -> AsyncIterator[str]:
        """SSE text for one browser until it goes away (the server cancels the generator) or falls behind."""
        sub = Subscriber(principal, asyncio.Queue(maxsize=self.buffer))
        self.subscribers.add(sub)
        try:
            yield ": connected\n\n"
            while not sub.dropped:
                try:
                    event = await asyncio.wait_for(sub.queue.get(), timeout=heartbeat_s)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if event:
                    yield sse_frame("ticket", event)
        finally:
            self.subscribers.discard(sub)
