"""Broker factory and topic administration shared by every service."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker

from contracts.topics import TopicSpec

from .logs import get_logger
from .settings import ServiceSettings

log = get_logger(__name__)


async def lenient_batch_parser(records: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream decodes every header as UTF-8; one record with binary header bytes would fail its
    batch for ever. Parse a UTF-8-safe copy and keep the original records (and bytes) as the raw
    message, so our own decoding can dead-letter that record alone."""
    try:
        return await original(records)
    except UnicodeDecodeError:
        safe = tuple(dataclasses.replace(r, headers=[(k, v.decode(errors="replace").encode()) for k, v in r.headers])
                     for r in records)
        parsed = await original(safe)
        parsed.raw_message = records
        return parsed


def make_broker(settings: ServiceSettings) -> KafkaBroker:
    """A FastStream broker whose producer batches (linger) and never loses an acknowledged record."""
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=f"cityops-{settings.service_name}",
        acks="all",
        enable_idempotence=True,
        linger_ms=settings.linger_ms,
        logger=None,  # our pipeline logs per batch; FastStream's per-message lines cost an order of magnitude
    )


async def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec], replication: int = 1,
                        timeout_s: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if not missing:
            return []
        new = [NewTopic(s.name, num_partitions=s.partitions, replication_factor=replication,
                        topic_configs=dict(s.config)) for s in missing]
        try:
            await admin.create_topics(new, timeout_ms=int(timeout_s * 1000))
        except TopicAlreadyExistsError:
            pass  # another process created them first
        await _wait_for_metadata(admin, {s.name for s in missing}, timeout_s)
        log.info("topics_created", count=len(missing))
        return [s.name for s in missing]
    finally:
        await admin.close()


async def _wait_for_metadata(admin: AIOKafkaAdminClient, names: set[str], timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if names <= set(await admin.list_topics()):
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"topics not visible after {timeout_s}s: {sorted(names - set(await admin.list_topics()))}")
