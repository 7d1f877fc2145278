"""Training data from the event log: the categories people confirmed (an operator chose it at
intake, or resolved it in the manual-triage queue), with the ticket's text."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer

from contracts import codec
from contracts import events as ev
from contracts.topics import TRIAGE
from services.common.kafka import kafka_access

CONFIRMED_METHODS = ("operator", "manual")


async def confirmed_examples(bootstrap: str, on_record: Callable[[], None] | None = None,
                             idle_ms: int = 2000) -> tuple[list[str], list[str]]:
    """Read cityops.triage.v1 from the start to its current end; the last confirmed category of a ticket wins."""
    consumer = AIOKafkaConsumer(TRIAGE.name, **kafka_access(bootstrap).options, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    latest: dict[str, tuple[str, str]] = {}
    try:
        partitions = consumer.assignment()
        while not partitions:
            await asyncio.sleep(0.05)
            partitions = consumer.assignment()
        ends = await consumer.end_offsets(list(partitions))
        while not await _caught_up(consumer, ends):
            batch = await consumer.getmany(timeout_ms=idle_ms)
            if not batch:
                break
            for records in batch.values():
                for r in records:
                    if on_record:
                        on_record()
                    if dict(r.headers or ()).get("ce_type") != ev.TicketClassified.event_type.encode():
                        continue
                    data = codec.decode(r.key, r.value, r.headers).data
                    if data.method in CONFIRMED_METHODS:
                        latest[r.key.decode()] = (data.ticket.text, data.category)
    finally:
        await consumer.stop()
    return [t for t, _ in latest.values()], [c for _, c in latest.values()]


async def _caught_up(consumer: AIOKafkaConsumer, ends: dict) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True
