"""Offsets committed behind the next fetch (services/common/offsets.py): one commit in flight per consumer,
later batches' positions folded into the next commit, a failed commit logged and never raised; a fetch's
partitions interleaved by record time, each partition's order kept."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka.structs import TopicPartition

from services.common.offsets import BackgroundCommitter, in_time_order, next_positions, stamps_by_topic


class SlowConsumer:
    def __init__(self, fail_first: bool = False) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.in_flight = self.most_in_flight = 0
        self.release = asyncio.Event()
        self.fail_first = fail_first

    async def commit(self, offsets):
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.release.wait()
            if self.fail_first and not self.commits:
                self.commits.append({})
                raise RuntimeError("CommitFailedError: the group rebalanced")
            self.commits.append({tp: meta.offset for tp, meta in offsets.items()})
        finally:
            self.in_flight -= 1


def records(topic: str, partition: int, *offsets: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(topic=topic, partition=partition, offset=o) for o in offsets]


def stamped(topic: str, partition: int, *offset_ms: tuple[int, int | None]) -> list[SimpleNamespace]:
    return [SimpleNamespace(topic=topic, partition=partition, offset=o, timestamp=ms) for o, ms in offset_ms]


def test_a_fetchs_partitions_are_interleaved_by_record_time():
    # As a fetch hands them over: partition by partition, each in its own order.
    batch = stamped("t", 0, (7, 300), (8, 500)) + stamped("t", 3, (1, 100), (2, 400)) + stamped("u", 0, (9, 200))
    assert [(r.topic, r.partition, r.offset) for r in in_time_order(batch)] == [
        ("t", 3, 1), ("u", 0, 9), ("t", 0, 7), ("t", 3, 2), ("t", 0, 8)]


def test_a_partitions_own_order_is_kept_even_when_its_timestamps_go_back():
    batch = stamped("t", 0, (5, 900), (6, 100)) + stamped("t", 1, (1, 500))
    ordered = [(r.partition, r.offset) for r in in_time_order(batch)]
    assert ordered.index((0, 5)) < ordered.index((0, 6)) and ordered == [(1, 1), (0, 5), (0, 6)]


def test_records_without_a_time_or_with_the_same_time_keep_the_fetchs_order():
    batch = stamped("t", 1, (4, None), (5, 0)) + stamped("t", 0, (2, None)) + stamped("u", 2, (1, 50), (2, 50)) + stamped("u", 1, (8, 50))
    assert [(r.topic, r.partition, r.offset) for r in in_time_order(batch)] == [
        ("t", 1, 4), ("t", 1, 5), ("t", 0, 2), ("u", 2, 1), ("u", 2, 2), ("u", 1, 8)]
    interleaved = stamped("t", 0, (1, None)) + stamped("u", 0, (1, None)) + stamped("t", 0, (2, None)) + stamped("t", 1, (3, 0))
    assert in_time_order(interleaved) == interleaved
    single = stamped("t", 0, (1, 900), (2, 100))
    assert in_time_order(single) is single


def test_each_topics_record_times_across_its_partitions_records_without_one_left_out():
    batch = (stamped("a", 0, (1, 300), (2, 250)) + stamped("b", 0, (7, 900)) + stamped("a", 1, (4, 280), (5, 120))
             + stamped("c", 0, (1, 0), (2, None)))
    assert stamps_by_topic(batch) == {"a": [300, 250, 280, 120], "b": [900]}
    assert stamps_by_topic(records("a", 0, 1, 2)) == {}  # no timestamps at all (a replay's records)


def test_the_position_after_each_partitions_last_record_is_committed():
    batch = records("t", 0, 5, 6, 7) + records("t", 1, 40) + records("u", 0, 3, 2)
    assert next_positions(batch) == {TopicPartition("t", 0): 8, TopicPartition("t", 1): 41, TopicPartition("u", 0): 4}


async def test_batches_handled_during_a_commit_go_together_in_the_next_one():
    consumer, timed = SlowConsumer(), []
    committer = BackgroundCommitter("act", timed.append)
    committer.commit_soon(consumer, next_positions(records("t", 0, 0, 1)))
    await asyncio.sleep(0)  # the first commit is under way
    committer.commit_soon(consumer, next_positions(records("t", 0, 2)))
    committer.commit_soon(consumer, next_positions(records("t", 0, 3) + records("t", 1, 9)))
    consumer.release.set()
    await committer.flush()
    assert consumer.commits == [{TopicPartition("t", 0): 2}, {TopicPartition("t", 0): 4, TopicPartition("t", 1): 10}]
    assert consumer.most_in_flight == 1 and len(timed) == 2


async def test_a_failed_commit_is_logged_and_the_next_batch_commits_again():
    consumer = SlowConsumer(fail_first=True)
    committer = BackgroundCommitter("act", lambda _s: None)
    committer.commit_soon(consumer, next_positions(records("t", 0, 0)))
    consumer.release.set()
    await committer.flush()  # does not raise
    committer.commit_soon(consumer, next_positions(records("t", 0, 1)))
    await committer.flush()
    assert consumer.commits[-1] == {TopicPartition("t", 0): 2}
