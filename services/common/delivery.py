"""How the pipeline tells a failure that one record caused from one that stops every record, and what it does.

A record can only fail itself:
- an output the broker will never take (larger than the topic's limit, a topic that does not exist, a
  topic this service may not write) is *unpublishable*: retrying would block its partition for ever, so
  the event that produced it is dead-lettered with the reason (pipeline.py) and the partition moves on;
- a database error about one record's values (IntegrityError, DataError) dead-letters that record: the
  pipeline applies the batch again with a savepoint per event, so the others still commit.

Everything else that stops a batch is *transient* for the whole service (the broker unreachable or not
confirming, the database down, locked or its disk full): the batch is redelivered after a pause that
doubles with each consecutive failure (`retry_backoff_s` up to `retry_backoff_max_s`), and each failing
batch is logged once, as an error, with its topics, partitions, offsets and the error.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from aiokafka.errors import (
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from .bookkeeping import Output, str_headers

# The broker's answers that no retry changes. UnknownTopicOrPartition is "retriable" to Kafka (a topic being
# created), but the producer has already waited its metadata timeout for it: our topics are created before
# a service starts, so one still missing then does not exist (a unit report naming a unit without a topic).
UNPUBLISHABLE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError, UnknownTopicOrPartitionError,
                 TopicAuthorizationFailedError, InvalidTopicError)


def unpublishable(exc: BaseException) -> bool:
    return isinstance(exc, UNPUBLISHABLE)


def too_large(exc: BaseException) -> bool:
    return isinstance(exc, (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError))


def stops_the_batch(exc: BaseException) -> bool:
    """True: no record can be applied now (the store is down, locked, full, or its connection lost): retry
    the whole batch. False: the error is the record's own (its values, or the handler's bug) and only that
    record is dead-lettered."""
    if isinstance(exc, (IntegrityError, DataError)):
        return False
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeout)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def failure_kind(exc: BaseException) -> str:
    """What stopped a batch, in words an operator acts on."""
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeout, DBAPIError)):
        return "database unavailable"
    if isinstance(exc, (KafkaError, ConnectionError, TimeoutError)):
        return "broker unavailable"
    return "unexpected"


def backoff_s(failures: int, first_s: float, most_s: float) -> float:
    """The pause before the `failures`-th consecutive redelivery: doubling from `first_s`, at most `most_s`."""
    return float(min(most_s, first_s * 2 ** min(max(failures - 1, 0), 32)))


def positions(records: Sequence[Any]) -> list[str]:
    """Where a batch's records sit, as `topic[partition]@first-last`, for the one log line of a failing batch."""
    spans: dict[tuple[str, int], list[int]] = defaultdict(list)
    for record in records:
        spans[(record.topic, record.partition)].append(record.offset)
    return [f"{topic}[{partition}]@{min(offsets)}-{max(offsets)}" for (topic, partition), offsets in sorted(spans.items())]


async def send_all(broker: Any, outputs: Sequence[Output]) -> list[tuple[Output, BaseException]]:
    """Send every output without waiting for each acknowledgement, then await them all. Returns the outputs
    the broker will never take, with why; raises the first transient error after every send has settled
    (what was confirmed stays confirmed; the rest is re-sent when the batch comes back)."""
    pending: list[tuple[Output, Any]] = []
    refused: list[tuple[Output, BaseException]] = []
    for output in outputs:
        _, topic, rec = output
        try:
            pending.append((output, await broker.publish(rec.value, topic, key=rec.key, headers=str_headers(rec.headers),
                                                         no_confirm=True)))
        except Exception as exc:  # the producer refuses some records before sending them (too large, no metadata)
            if not unpublishable(exc):
                await _settle(pending)
                raise
            refused.append((output, exc))
    transient: BaseException | None = None
    for (output, _), result in zip(pending, await _settle(pending), strict=True):
        if result is None:
            continue
        if unpublishable(result):
            refused.append((output, result))
        elif transient is None:
            transient = result
    if transient is not None:
        raise transient
    return refused


async def _settle(pending: list[tuple[Output, Any]]) -> list[BaseException | None]:
    results = await asyncio.gather(*(future for _, future in pending), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result  # cancellation, interpreter exit: not a delivery result
    return [result if isinstance(result, BaseException) else None for result in results]
