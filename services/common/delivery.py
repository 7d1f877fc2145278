"""How the pipeline tells a failure that one record caused from one that stops every record, and what it does.

A record can only fail itself:
- an output larger than `max_record_bytes` (the broker's record limit) is refused before its event's
  transaction commits (`check_size`): the event is dead-lettered and its effects rolled back;
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
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import Session, col

from contracts.codec import KafkaRecord

from .bookkeeping import (
    INSERT_OUTBOX,
    Output,
    dead_letter_for,
    letter_output,
    mark_dead_lettered,
    outbox_values,
    stand_in_cause,
    str_headers,
)
from .logs import get_logger
from .store import OutboxRecord, write_lock

log = get_logger(__name__)

# The broker's answers that no retry changes. UnknownTopicOrPartition is "retriable" to Kafka (a topic being
# created), but the producer has already waited its metadata timeout for it: our topics are created before
# a service starts, so one still missing then does not exist (a unit report naming a unit without a topic).
UNPUBLISHABLE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError, UnknownTopicOrPartitionError,
                 TopicAuthorizationFailedError, InvalidTopicError)


class OutputTooLarge(ValueError):
    """A handler produced a record larger than the broker takes (`max_record_bytes`): raised before anything is
    stored, so the event is dead-lettered with its effects rolled back. Sending it would not only fail: an
    idempotent producer whose batch the broker refused keeps failing that partition (out-of-order sequence)."""


def check_size(topic: str, rec: KafkaRecord, limit: int) -> None:
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(rec.key, rec.value, rec.headers)
    if size > limit:
        raise OutputTooLarge(f"the output to {topic} is {size} bytes, over the {limit} bytes a record may have")


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
    too_large_in_flight: list[Output] = []
    for (output, _), result in zip(pending, await _settle(pending), strict=True):
        if result is None:
            continue
        if too_large(result):
            too_large_in_flight.append(output)
        elif unpublishable(result):
            refused.append((output, result))
        elif transient is None:
            transient = result
    if transient is not None:
        raise transient
    return refused + await _each_alone(broker, too_large_in_flight)


async def _each_alone(broker: Any, outputs: list[Output]) -> list[tuple[Output, BaseException]]:
    """The broker refuses a producer's whole batch when one record in it is too large, so the records of such a
    batch are sent again one at a time (each alone in its batch): only those refused alone are unpublishable."""
    refused: list[tuple[Output, BaseException]] = []
    for output in outputs:
        _, topic, rec = output
        try:
            await (await broker.publish(rec.value, topic, key=rec.key, headers=str_headers(rec.headers), no_confirm=True))
        except Exception as exc:
            if not unpublishable(exc):
                raise
            refused.append((output, exc))
    return refused


async def _settle(pending: list[tuple[Output, Any]]) -> list[BaseException | None]:
    results = await asyncio.gather(*(future for _, future in pending), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result  # cancellation, interpreter exit: not a delivery result
    return [result if isinstance(result, BaseException) else None for result in results]


def dead_letter_refused(engine: Engine, consumer: str, refused: list[tuple[Output, BaseException]],
                        causes: dict[str, Any]) -> list[Output]:
    """In one transaction: replace the outbox rows of each refused output's cause by one dead letter of that
    cause, and record the cause as dead-lettered. A refused dead letter is dropped with an error log."""
    letters: list[Output] = []
    lettered: set[str] = set()
    with write_lock(engine), Session(engine) as session, session.begin():
        connection = session.connection()
        for (cause, topic, rec), exc in refused:
            connection.execute(delete(OutboxRecord).where(col(OutboxRecord.consumer) == consumer,
                                                          col(OutboxRecord.cause_id) == cause, col(OutboxRecord.topic) == topic))
            reason = f"output to {topic} could not be published: {type(exc).__name__}: {exc}"
            if topic.endswith(".dlq"):
                log.error("dead_letter_lost", service=consumer, cause_id=cause, topic=topic, bytes=len(rec.value), error=reason)
                continue
            log.error("output_unpublishable", service=consumer, cause_id=cause, topic=topic, bytes=len(rec.value), error=reason)
            if cause in lettered:
                continue
            lettered.add(cause)
            record = causes.get(cause) or stand_in_cause(connection, consumer, cause, topic, rec, too_large(exc))
            letter = dead_letter_for(record, consumer, reason)
            letters.append(letter_output(cause, letter))
        if letters:
            connection.execute(INSERT_OUTBOX, [outbox_values(consumer, *letter) for letter in letters])
            mark_dead_lettered(connection, consumer, [cause for cause, _, _ in letters])
    return letters
