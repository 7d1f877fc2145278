"""Batch polls without FastStream's nap (services/common/kafka.py `poll_without_naps`): an empty poll goes straight
back to waiting, so a record that arrives is taken at once however long the poll timeout is."""

from __future__ import annotations

import asyncio
import time

import pytest
from faststream.kafka import KafkaBroker

from services.common.kafka import poll_without_naps


class Consumer:
    """getmany as aiokafka's: waits up to timeout_ms, returns as soon as records are there."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.polls = 0

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[str, list[int]]:
        self.polls += 1
        try:
            await asyncio.wait_for(self.arrived.wait(), timeout_ms / 1000)
        except TimeoutError:
            return {}
        return {"t-0": [1, 2], "t-1": [3]}


def batch_subscriber(timeout_ms: int):
    return KafkaBroker("127.0.0.1:1").subscriber("t", group_id="g", batch=True, batch_timeout_ms=timeout_ms, max_records=10)


@pytest.fixture
def naps(monkeypatch):
    """The sleeps FastStream's batch subscriber takes after an empty poll (it sleeps with anyio.sleep)."""
    taken: list[float] = []

    async def sleep(seconds: float) -> None:
        taken.append(seconds)

    import faststream.kafka.subscriber.usecase as usecase

    monkeypatch.setattr(usecase.anyio, "sleep", sleep)
    return taken


async def test_an_empty_poll_does_not_sleep_before_the_next(naps):
    subscriber, consumer = poll_without_naps(batch_subscriber(20)), Consumer()
    assert await subscriber.get_msg(consumer) == ()
    assert naps == [] and consumer.polls == 1


async def test_faststreams_own_poll_naps_after_an_empty_poll(naps):
    """The behaviour the wrapper removes (if FastStream stops napping, the wrapper can go)."""
    subscriber, consumer = batch_subscriber(20), Consumer()
    assert not await subscriber.get_msg(consumer)
    assert naps == [0.02]


async def test_records_that_arrive_end_a_long_poll_at_once():
    subscriber, consumer = poll_without_naps(batch_subscriber(5_000)), Consumer()
    asyncio.get_running_loop().call_later(0.02, consumer.arrived.set)
    started = time.monotonic()
    assert await subscriber.get_msg(consumer) == (1, 2, 3)
    assert time.monotonic() - started < 1


def test_only_a_batch_subscriber_is_accepted():
    with pytest.raises(TypeError, match="not a FastStream batch subscriber"):
        poll_without_naps(object())
