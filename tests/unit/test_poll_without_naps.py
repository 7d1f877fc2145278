"""Batch polls without FastStream's nap (services/common/kafka.py `poll_without_naps`): an empty poll goes straight
back to waiting, so a record that arrives is taken at once however long the poll timeout is; and fetches paced by
how busy the consumer is (`FetchPacing`)."""

from __future__ import annotations

import asyncio
import inspect
import time

import pytest
from faststream.kafka import KafkaBroker

from services.common.kafka import FetchPacing, poll_without_naps


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
    started, wall = time.monotonic(), time.time()
    polled = await subscriber.get_msg(consumer)
    assert polled == (1, 2, 3)
    assert time.monotonic() - started < 1
    assert wall + 0.015 <= polled.polled_at <= time.time()  # when the poll returned them, for the pipeline's stages


def test_only_a_batch_subscriber_is_accepted():
    with pytest.raises(TypeError, match="not a FastStream batch subscriber"):
        poll_without_naps(object())


class Fetcher:
    """The two fields of aiokafka's Fetcher that each fetch request is built from."""

    def __init__(self) -> None:
        self._fetch_min_bytes, self._fetch_max_wait_ms = 1, 500


class PacedConsumer(Consumer):
    def __init__(self, records_per_poll: list[int]) -> None:
        super().__init__()
        self._fetcher = Fetcher()
        self.arrived.set()
        self._polls = list(records_per_poll)

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[str, list[int]]:
        return {"t-0": list(range(self._polls.pop(0)))}


async def test_a_busy_consumer_gathers_its_next_fetches_and_a_quiet_one_is_answered_at_once():
    pacing = FetchPacing(quiet_max_wait_ms=500, busy_min_bytes=16_384, busy_max_wait_ms=20, busy_records=2)
    subscriber, consumer = poll_without_naps(batch_subscriber(200), pacing), PacedConsumer([5, 1, 0, 3])
    seen = []
    for _ in range(4):
        await subscriber.get_msg(consumer)
        seen.append((consumer._fetcher._fetch_min_bytes, consumer._fetcher._fetch_max_wait_ms))
    assert seen == [(16_384, 20), (1, 500), (1, 500), (16_384, 20)]


async def test_pacing_with_one_byte_leaves_the_fetches_alone():
    subscriber = poll_without_naps(batch_subscriber(200), FetchPacing(busy_min_bytes=1))
    consumer = PacedConsumer([50])
    await subscriber.get_msg(consumer)
    assert (consumer._fetcher._fetch_min_bytes, consumer._fetcher._fetch_max_wait_ms) == (1, 500)


async def test_a_consumer_without_aiokafkas_fetch_fields_is_refused_loudly():
    subscriber = poll_without_naps(batch_subscriber(200), FetchPacing())
    consumer = Consumer()
    consumer.arrived.set()
    with pytest.raises(TypeError, match="cannot pace the fetches"):
        await subscriber.get_msg(consumer)


def test_the_fetcher_of_aiokafka_still_has_the_fields_pacing_sets():
    """If aiokafka renames them, pacing would silently do nothing: this says so instead."""
    from aiokafka.consumer.fetcher import Fetcher as AioFetcher

    source = inspect.getsource(AioFetcher)
    assert "self._fetch_min_bytes," in source and "self._fetch_max_wait_ms," in source  # read per FetchRequest
