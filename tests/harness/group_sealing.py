"""The checks of intake's group commit (services/intake/keystore.py `seal_many`, `GroupSealer`), run on SQLite
(tests/unit/test_intake_group_sealing.py) and on PostgreSQL (tests/integration/test_intake_group_sealing_pg.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from typing import Any
from unittest import mock

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.common.batch_state import table_of
from services.common.store import create_tables, write_lock
from services.intake import keystore
from services.intake.domain import ComplaintIn, submission_event
from services.intake.keystore import (
    TABLES,
    CallerKey,
    Claim,
    GroupSealer,
    KeyReused,
    SealedCallerCopy,
    Submission,
    caller_of,
    seal_many,
)
from services.intake.models import SubmissionKey, Submitter, TicketStatus

SECRET = "s" * 40
NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def prepare(engine: Engine) -> Engine:
    create_tables(engine, [table_of(TicketStatus), table_of(Submitter), table_of(SubmissionKey), *(table_of(t) for t in TABLES)])
    return engine


def submission(text: str, name: str | None, phone: str | None, submitter: str | None = "sub:op-1",
               key: str | None = None) -> Submission:
    complaint = ComplaintIn(text=text, caller_name=name, caller_phone=phone)
    envelope = submission_event(complaint, now=NOW, idempotency_key=key)
    row: Any = Submitter(ticket_id=envelope.ticket_id, submitter=submitter)
    return Submission(envelope, (row,), Claim(key, complaint.fingerprint()) if key else None)


def a_batch_is_sealed_in_one_transaction_with_one_key_per_caller(engine: Engine) -> None:
    batch = [submission("路灯不亮了", "钱七", "13812345678"), submission("路灯还是不亮", "钱七", "+86 138-1234-5678"),
             submission("井盖丢了", "周九", None), submission("匿名反映噪音", None, None),
             submission("垃圾没人收", "孙八", "13987654321")]
    sealed = seal_many(engine, SECRET, batch)
    assert all(not isinstance(s, Exception) for s in sealed), sealed
    first, again, no_phone, anonymous, other = (s.data for s in sealed)  # type: ignore[union-attr]
    assert first.sealed_caller.key_id == again.sealed_caller.key_id  # one number, one key, in one batch
    assert first.caller_ref.pseudonym == again.caller_ref.pseudonym
    assert len({first.sealed_caller.key_id, no_phone.sealed_caller.key_id, other.sealed_caller.key_id}) == 3
    assert anonymous.sealed_caller is None and anonymous.caller_ref.anonymous
    assert all(s.data.caller.name is None and s.data.caller.phone is None for s in sealed)  # type: ignore[union-attr]
    for envelope in sealed:
        d = envelope.data  # type: ignore[union-attr]
        if d.sealed_caller is not None:
            assert caller_of(engine, d.sealed_caller, envelope.ticket_id) is not None  # type: ignore[union-attr]
    with Session(engine) as s:
        assert len(s.exec(select(CallerKey)).all()) == 3
        assert len(s.exec(select(SealedCallerCopy)).all()) == 4
        assert {r.ticket_id for r in s.exec(select(Submitter))} == {b.envelope.ticket_id for b in batch}
    # the next batch finds the caller's key made by this one
    later = seal_many(engine, SECRET, [submission("又坏了", "钱七", "13812345678")])[0]
    assert later.data.sealed_caller.key_id == first.sealed_caller.key_id  # type: ignore[union-attr]


def one_bad_submission_fails_only_itself(engine: Engine) -> None:
    batch = [submission("路灯不亮了", "钱七", "13812345678"), submission("坏的一条", "周九", "13700000000", submitter=None),
             submission("井盖丢了", "孙八", "13987654321")]
    sealed = seal_many(engine, SECRET, batch)
    assert isinstance(sealed[1], Exception)
    assert not isinstance(sealed[0], Exception) and not isinstance(sealed[2], Exception)
    with Session(engine) as s:
        stored = {r.ticket_id for r in s.exec(select(SealedCallerCopy))}
    assert stored == {batch[0].envelope.ticket_id, batch[2].envelope.ticket_id}  # the bad one left nothing behind


async def concurrent_requests_share_commits(engine: Engine) -> tuple[int, int]:
    """50 requests at once: every one answered with its own sealed record, in fewer transactions than requests."""
    calls: list[int] = []
    real = keystore.seal_many

    def counted(engine: Engine, secret: str, submissions: Any) -> Any:
        calls.append(len(submissions))
        return real(engine, secret, submissions)

    sealer = GroupSealer(engine, SECRET)
    batch = [submission(f"第{i}条投诉", "钱七", f"1380000{i:04d}") for i in range(50)]
    with mock.patch.object(keystore, "seal_many", counted):
        sealed = await asyncio.gather(*(sealer.seal(b) for b in batch))
    assert [s.ticket_id for s in sealed] == [b.envelope.ticket_id for b in batch]
    assert sum(calls) == 50
    return len(calls), max(calls)


async def the_thread_that_seals(engine: Engine, hold_write_lock: bool = False) -> str:
    """Seal one request through `GroupSealer`: "loop" when its batch was sealed on the event loop's thread, else
    "worker". With `hold_write_lock`, another thread holds the store's write lock while the request arrives and
    lets it go 50 ms later; the request must still be answered."""
    threads: list[int] = []
    real = keystore.seal_many

    def noting_thread(engine: Engine, secret: str, submissions: Any) -> Any:
        threads.append(threading.get_ident())
        return real(engine, secret, submissions)

    lock, taken = write_lock(engine), threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            time.sleep(0.05)

    holder = threading.Thread(target=hold) if hold_write_lock else None
    if holder is not None:
        holder.start()
        taken.wait(5)
    try:
        with mock.patch.object(keystore, "seal_many", noting_thread):
            sealed = await asyncio.wait_for(GroupSealer(engine, SECRET).seal(submission("路灯不亮了", "钱七", "13812345678")), 10)
    finally:
        if holder is not None:
            holder.join()
    assert sealed.data.sealed_caller is not None  # type: ignore[union-attr]
    assert len(threads) == 1
    return "loop" if threads[0] == threading.get_ident() else "worker"


def an_idempotency_key_names_one_body_within_a_batch_and_across_batches(engine: Engine) -> None:
    batch = [submission("路灯不亮了", "钱七", "13812345678", key="app:k-1"),
             submission("路灯不亮了", "钱七", "13812345678", key="app:k-1"),  # a retry in the same batch
             submission("另一件事", "钱七", "13812345678", key="app:k-1"),  # the key again, another body
             submission("井盖丢了", "孙八", "13987654321", key="app:k-2")]
    first, retry, reused, other = seal_many(engine, SECRET, batch)
    assert first.ticket_id == retry.ticket_id != other.ticket_id  # type: ignore[union-attr]
    assert isinstance(reused, KeyReused) and reused.ticket_id == first.ticket_id  # type: ignore[union-attr]
    later_same, later_other = seal_many(engine, SECRET, [submission("路灯不亮了", "钱七", "13812345678", key="app:k-1"),
                                                         submission("又一件事", None, None, key="app:k-2")])
    assert later_same.ticket_id == first.ticket_id  # type: ignore[union-attr]
    assert isinstance(later_other, KeyReused) and later_other.ticket_id == other.ticket_id  # type: ignore[union-attr]


def a_key_made_meanwhile_by_another_writer_is_the_callers_key(engine: Engine) -> None:
    """Another intake instance stores a caller's first key between this batch's read of the keys and its insert:
    the insert skips it and the batch seals with that writer's key (one caller, one key)."""
    theirs = seal_many(engine, SECRET, [submission("路灯不亮了", "钱七", "13812345678")])[0]
    real_read = keystore._stored_keys
    reads: list[list[str]] = []

    def read_before_the_other_writer(session: Any, refs: list[str]) -> Any:
        reads.append(refs)
        return {} if len(reads) == 1 else real_read(session, refs)  # the first read saw no key yet

    with mock.patch.object(keystore, "_stored_keys", read_before_the_other_writer):
        mine = seal_many(engine, SECRET, [submission("又坏了", "钱七", "138 1234 5678"),
                                          submission("井盖丢了", "孙八", "13987654321")])
    assert len(reads) == 2 and len(reads[1]) == 1  # read back: only the key the insert skipped
    assert mine[0].data.sealed_caller.key_id == theirs.data.sealed_caller.key_id  # type: ignore[union-attr]
    assert caller_of(engine, mine[0].data.sealed_caller, mine[0].ticket_id) is not None  # type: ignore[union-attr]
    with Session(engine) as s:
        assert len(s.exec(select(CallerKey)).all()) == 2


def a_resealed_retry_replaces_its_rows(engine: Engine) -> None:
    """A retried submission (same Idempotency-Key, same body) is sealed again under its ticket id: its sealed copy
    and submitter rows are replaced, not duplicated and not refused."""
    first = seal_many(engine, SECRET, [submission("路灯不亮了", "钱七", "13812345678", key="app:k-9")])[0]
    again = seal_many(engine, SECRET, [submission("路灯不亮了", "钱七", "13812345678", submitter="sub:op-2",
                                                  key="app:k-9")])[0]
    assert again.ticket_id == first.ticket_id  # type: ignore[union-attr]
    with Session(engine) as s:
        copies = s.exec(select(SealedCallerCopy)).all()
        assert [(c.ticket_id, c.nonce) for c in copies] == [(first.ticket_id, again.data.sealed_caller.nonce)]  # type: ignore[union-attr]
        assert [r.submitter for r in s.exec(select(Submitter))] == ["sub:op-2"]
    assert caller_of(engine, again.data.sealed_caller, again.ticket_id) is not None  # type: ignore[union-attr]
