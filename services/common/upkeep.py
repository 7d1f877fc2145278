"""What keeps a pipeline's store from waiting or growing for ever, run by `EventPipeline.run_upkeep`.

A parked event waits for an event of its ticket that it depends on (pipeline.py); if that never comes (lost
upstream, dead-lettered there) it would wait for ever, so after `parked_timeout_s` it is dead-lettered with
"dependency never arrived" and recorded as dead-lettered (a later copy of it is then a duplicate). Its dead
letter goes through the outbox like any other.

The ids of applied events are pruned after `processed_retention_s` (why an age window is safe: bookkeeping.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session

from .bookkeeping import BatchLedger, Output, ParkedRecord, dead_letter_for, expired_parked, prune_processed
from .logs import get_logger
from .store import write_lock

log = get_logger(__name__)


def expire_parked(engine: Engine, consumer: str, now: datetime, timeout_s: float) -> list[Output]:
    """Dead-letter (through the outbox) the parked events that waited longer than `timeout_s` for their dependency;
    returns the dead letters to publish."""
    with write_lock(engine), Session(engine) as session, session.begin():
        ledger = BatchLedger(consumer, True, now)
        letters: list[Output] = []
        for row in expired_parked(session, consumer, now - timedelta(seconds=timeout_s)):
            reason = f"dependency never arrived: parked at {row.parked_at.isoformat()} ({row.reason})"
            log.warning("parked_expired", service=consumer, event_id=row.event_id, ticket_id=row.ticket_id,
                        topic=row.topic, partition=row.partition, offset=row.offset, reason=row.reason)
            record = ParkedRecord.of(row)
            ledger.processed_rows.append({"consumer": consumer, "event_id": row.event_id, "topic": row.topic,
                                          "partition": row.partition, "offset": row.offset,
                                          "outcome": "dead-lettered", "processed_at": now})
            letters.append(ledger.dead_letter(row.event_id, dead_letter_for(record, consumer, reason)))
            session.delete(row)
        session.flush()
        ledger.write(session)
    return letters


def prune_applied_ids(engine: Engine, consumer: str, applied_before: datetime) -> int:
    """Forget the ids of events applied before `applied_before`; returns how many."""
    with write_lock(engine), Session(engine) as session, session.begin():
        pruned = prune_processed(session.connection(), consumer, applied_before)
    if pruned:
        log.info("processed_pruned", service=consumer, ids=pruned, applied_before=applied_before.isoformat())
    return pruned
