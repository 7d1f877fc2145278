"""The live feed: lifecycle events fanned out to the browsers' server-sent-event streams (GET /console/live).

One Kafka consumer per console process reads the lifecycle topics as the principal `console` (read ACLs derived
from the topic catalogue), without a consumer group and from the end: a live view, not a processor; nothing is
committed, nothing dead-lettered, a record it cannot decode is skipped. Each event becomes a small summary
`{ticket_id, event_type, status, unit, units, grid, district, at}` (never text or caller data); where a ticket
is and which units hold it are remembered from earlier events (TicketRegistered, TaskAssigned ...), most recent
tickets first, so a unit's report or a callback still reaches the units and grid of its ticket.

Each event reaches a subscriber only when the session may see it (`visible_to`): a unit its own tickets, a grid
worker its grids, operators, supervisors and auditors all. A subscriber that falls `buffer` events behind is
dropped: its browser's EventSource reconnects, and the page's next refresh catches up.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from contracts import codec
from contracts.envelope import Envelope
from contracts.topics import ACT, CONSULT, EVALUATE, SLA, TICKETS, TRIAGE, UNIT_REPORTS
from domain.statuses import TicketStatus as S
from services.common.auth import Principal, Role
from services.common.logs import get_logger
from services.common.settings import KafkaClientSettings

log = get_logger(__name__)

HEARTBEAT_S = 15.0  # keeps proxies from closing an idle stream; also how soon a gone browser is noticed
SEES_ALL = (Role.operator, Role.supervisor, Role.auditor)
# The ticket lifecycle (no personal data on any of them); contracts/topics.py names "console" as their reader.
LIFECYCLE_TOPICS = tuple(spec.name for spec in (TICKETS, TRIAGE, CONSULT, ACT, UNIT_REPORTS, EVALUATE, SLA))


# The status an event leaves its ticket in (the words of domain/statuses.py); None: the status does not change.
STATUS_AFTER: dict[str, S | None] = {
    "TicketRegistered": S.registered, "TicketMerged": S.merged, "SplitRequested": None, "TicketSplit": S.registered,
    "TicketClassified": S.classified, "ManualTriageRequested": S.manual_triage, "ManualTriageResolved": S.classified,
    "ConsultationRequested": S.consulting, "PlanAgreed": S.agreed, "SupervisorReviewRequested": S.supervisor_review,
    "SupervisorDecided": S.decided, "TaskAssigned": S.dispatched, "ExtensionDecided": None, "ReturnRejected": None,
    "RerouteRequested": S.rerouting, "TicketHandled": S.handled, "TaskSignedFor": S.signed_for,
    "ProgressReported": S.in_progress, "ExtensionRequested": None, "TaskReturned": S.returned,
    "TaskCompleted": S.completed, "OpinionGiven": None, "CallbackRequested": S.callback,
    "CallbackRecorded": S.evaluated, "TicketReopened": S.reopened, "TicketClosed": S.closed,
    "SlaReminderSent": None, "SlaBreached": None, "TicketEscalated": None,
}
TICKETS_REMEMBERED = 50_000  # ~200 bytes each: where the most recent tickets are and who holds them


@dataclass
class Whereabouts:
    grid: str | None = None
    district: str | None = None
    units: set[str] = field(default_factory=set)


class TicketMemory:
    """Where recent tickets are and which units hold them (least recently seen forgotten first)."""

    def __init__(self, size: int = TICKETS_REMEMBERED) -> None:
        self.size = size
        self._tickets: OrderedDict[str, Whereabouts] = OrderedDict()

    def of(self, ticket_id: str) -> Whereabouts:
        found = self._tickets.pop(ticket_id, None) or Whereabouts()
        self._tickets[ticket_id] = found
        while len(self._tickets) > self.size:
            self._tickets.popitem(last=False)
        return found

    def __len__(self) -> int:
        return len(self._tickets)


def _location(data: Any) -> Any:
    ticket = getattr(data, "ticket", None)
    return getattr(ticket, "location", None) or getattr(data, "location", None)


def _units_named(data: Any) -> set[str]:
    """The units an event puts on (or reports from) its ticket."""
    units = {u for u in (getattr(data, "unit", None), getattr(data, "to_unit", None)) if isinstance(u, str)}
    routing = getattr(data, "routing", None)
    if routing is not None:
        units |= {routing.lead, *routing.co_units}
    for name in ("units", "parties", "joint_with"):
        value = getattr(data, name, None)
        if isinstance(value, (tuple, list)):
            units |= {u for u in value if isinstance(u, str)}
    return units


def summarise(envelope: Envelope[Any], memory: TicketMemory) -> dict[str, Any]:
    """The live event of one lifecycle event: what changed, on which ticket, where, for which units."""
    data = envelope.data
    kind = type(data).__name__
    where = memory.of(envelope.ticket_id)
    location = _location(data)
    if location is not None:
        where.grid = location.grid or where.grid
        where.district = location.district or where.district
    where.units |= _units_named(data)
    status = STATUS_AFTER.get(kind)
    if kind == "ProgressReported" and getattr(data, "waiting_on_resident", False):
        status = S.waiting_on_resident
    if kind == "TicketClassified" and getattr(data, "needs_consultation", False):
        status = S.consulting
    unit = getattr(data, "unit", None)
    return {"ticket_id": envelope.ticket_id, "event_type": kind, "status": str(status) if status else None,
            "unit": unit if isinstance(unit, str) else None, "units": sorted(where.units), "grid": where.grid,
            "district": where.district, "at": envelope.time.isoformat()}


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

    kafka: KafkaClientSettings | None = None  # none: only what `publish` is given (unit tests)
    retry_s: float = 2.0
    memory: TicketMemory = field(default_factory=TicketMemory)
    skipped: int = 0
    connected: bool = False
    _reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start following the broker in the background: pages are served whether or not it answers."""
        if self.kafka is not None and self._reader is None:
            self._reader = asyncio.create_task(self._follow(), name="console-live-feed")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        for sub in list(self.subscribers):
            self._drop(sub)

    async def _follow(self) -> None:
        while True:
            try:
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a broker outage: retried, the pages keep working
                log.warning("live_feed_interrupted", error=type(exc).__name__, detail=str(exc)[:200])
            self.connected = False
            await asyncio.sleep(self.retry_s)

    async def _read(self) -> None:
        from aiokafka import AIOKafkaConsumer

        from services.common.kafka import kafka_access

        assert self.kafka is not None
        consumer = AIOKafkaConsumer(*self.topics, **kafka_access(self.kafka).options, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="latest")
        try:
            await consumer.start()
            self.connected = True
            log.info("live_feed_following", topics=len(self.topics))
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=500)
                for records in batches.values():
                    for record in records:
                        self._take(record)
        finally:
            await consumer.stop()

    def _take(self, record: Any) -> None:
        try:
            envelope = codec.decode(record.key, record.value, record.headers)
        except codec.DecodeError:
            self.skipped += 1  # not ours to dead-letter: the services reading this topic do
            return
        self.publish(summarise(envelope, self.memory))

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
