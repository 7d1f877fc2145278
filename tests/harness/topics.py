"""A clean log for an end-to-end test: the session's broker is shared with integration tests that write
their own records (raw bytes, example events naming units that do not exist) to the hub's real topics, and
an end-to-end run reads every hub topic from the beginning."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.common.kafka import ensure_topics, kafka_access
from tools.topics_cli import hub_topics

HUB_PREFIX = "cityops."


async def fresh_hub_topics(bootstrap: str, timeout_s: float = 60.0) -> None:
    """Delete every `cityops.*` topic (as the session's admin) and create the hub's topics anew."""
    admin = AIOKafkaAdminClient(request_timeout_ms=int(timeout_s * 1000), **kafka_access(bootstrap).options)
    await admin.start()
    try:
        old = [t for t in await admin.list_topics() if t.startswith(HUB_PREFIX)]
        if old:
            await admin.delete_topics(old, timeout_ms=int(timeout_s * 1000))
        deadline = asyncio.get_running_loop().time() + timeout_s
        while set(old) & set(await admin.list_topics()):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("old hub topics still listed after deletion")
            await asyncio.sleep(0.3)
    finally:
        await admin.close()
    for attempt in range(20):  # a deleted topic's name can be refused for a moment after it disappears
        try:
            await ensure_topics(bootstrap, hub_topics())
            return
        except Exception:  # noqa: BLE001 - retried, then raised below
            if attempt == 19:
                raise
            await asyncio.sleep(0.5)


async def start_group_at_the_end(bootstrap: str, group: str, topics: Iterable[str]) -> None:
    """Commit consumer group `group` at the current end of `topics`: the session's broker holds other tests' events
    (an end-to-end run leaves thousands), and they are not this test's to handle or wait for."""
    partitions_of = {spec.name: spec.partitions for spec in hub_topics()}
    unknown = sorted(set(topics) - set(partitions_of))
    if unknown:
        raise ValueError(f"not topics of the hub: {unknown}")
    consumer = AIOKafkaConsumer(**kafka_access(bootstrap).options, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in sorted(set(topics)) for p in range(partitions_of[t])]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        await consumer.commit({tp: await consumer.position(tp) for tp in partitions})
    finally:
        await consumer.stop()
