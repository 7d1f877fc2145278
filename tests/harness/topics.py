"""A clean log for an end-to-end test: the session's broker is shared with integration tests that write
their own records (raw bytes, example events naming units that do not exist) to the hub's real topics, and
an end-to-end run reads every hub topic from the beginning."""

from __future__ import annotations

import asyncio

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
