"""The caller key store: one AES-256-GCM data key per caller, in intake's own store.

Intake seals each caller's name and phone with that caller's key before the intake record leaves it;
the record on Kafka (kept for ever), the archive and every other copy hold only the sealed bytes, the
masked phone and the pseudonym. Erasing a caller destroys their key: every copy becomes unreadable at
once, and no log is rewritten (crypto-shredding).

A caller is found by a keyed hash of their normalised phone (`phone_ref`); the records name the key by
a random `key_id`, and the pseudonym is a keyed hash of that id, so once the key is gone even the
holder of the hub's pseudonym key cannot tie a record or a pseudonym back to a number.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import LargeBinary, bindparam
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Column, Field, Session, SQLModel, col, delete, func, select

from contracts import events as ev
from contracts.envelope import Envelope, utcnow
from domain.privacy import mask_phone, phone_digits, pseudonym
from services.common.batch_state import table_of
from services.common.direct_sql import insert_ignoring_stored, insert_new, insert_rows, select_rows
from services.common.pipeline import write_lock
from services.common.store import short_write, short_writes_on_loop, upsert_rows

from .domain import sealed_submission
from .models import SubmissionKey, TicketStatus

ALGORITHM = "AES-256-GCM"


class CallerKey(SQLModel, table=True):
    """A caller's data key. Deleting the row is the erasure."""

    __tablename__ = "intake_caller_keys"

    key_id: str = Field(primary_key=True, description="Random id the sealed records name this key by.")
    phone_ref: str | None = Field(default=None, unique=True, description="Keyed hash of the caller's normalised phone (none: a caller without a phone).")
    data_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False), description="The 256-bit AES-GCM key.")
    created_at: datetime = Field(description="When the caller first called.")


class SealedTicket(SQLModel, table=True):
    """Which tickets a key sealed: what an erasure reports, and the plaintext-free index a callback desk opens."""

    __tablename__ = "intake_sealed_tickets"

    ticket_id: str = Field(primary_key=True, description="Ticket whose caller is sealed.")
    key_id: str = Field(index=True, description="The caller's key.")


class SealedCallerCopy(SQLModel, table=True):
    """The sealed name and phone of a ticket's caller, as the intake record carries them: what the callback
    desk opens (GET /callbacks/queue) without reading the log. Useless without the caller's key; erasure
    deletes the key and these copies together."""

    __tablename__ = "intake_sealed_callers"

    ticket_id: str = Field(primary_key=True, description="Ticket whose caller is sealed.")
    key_id: str = Field(index=True, description="The caller's key.")
    nonce: str = Field(description="AES-GCM nonce (base64).")
    ciphertext: str = Field(description="Sealed {name, phone} (base64).")


TABLES = [CallerKey, SealedTicket, SealedCallerCopy]


@dataclass(frozen=True)
class Erasure:
    keys: int
    tickets: int
    status_rows: int = 0

    def summary(self) -> str:
        if not self.keys:
            return "no caller key for that number: nothing to erase"
        return (f"erased {self.keys} caller key(s): the name and phone of {self.tickets} ticket(s) are unrecoverable "
                f"in every copy (Kafka, archive, stores); {self.status_rows} status row(s) cleaned")


def phone_ref(secret: str, phone: str) -> str:
    return pseudonym(secret, phone_digits(phone), purpose="key-store")


def _caller_key(session: Session, secret: str, phone: str | None, now: datetime) -> CallerKey:
    """The caller's key, made on their first call. A caller without a phone gets a key of their own ticket."""
    ref = phone_ref(secret, phone) if phone and phone_digits(phone) else None
    if ref is not None:
        found = session.exec(select(CallerKey).where(CallerKey.phone_ref == ref)).first()
        if found is not None:
            return found
    key = CallerKey(key_id=uuid.uuid4().hex, phone_ref=ref, data_key=AESGCM.generate_key(bit_length=256), created_at=now)
    try:
        with session.begin_nested():
            session.add(key)
    except IntegrityError:  # another writer made this caller's key first
        return session.exec(select(CallerKey).where(CallerKey.phone_ref == ref)).one()
    return key


def seal_caller(session: Session, secret: str, caller: ev.Caller, ticket_id: str,
                now: datetime | None = None) -> tuple[ev.SealedCaller | None, ev.CallerRef]:
    """The sealed name and phone and what everyone else may see of the caller (masked phone, pseudonym)."""
    if not caller.name and not caller.phone:
        return None, ev.CallerRef(anonymous=True)
    key = _caller_key(session, secret, caller.phone, now or utcnow())
    sealed, ref = seal_with(key, secret, caller, ticket_id)
    session.merge(SealedTicket(ticket_id=ticket_id, key_id=key.key_id))
    session.merge(SealedCallerCopy(ticket_id=ticket_id, key_id=key.key_id, nonce=sealed.nonce, ciphertext=sealed.ciphertext))
    return sealed, ref


class KeyRow(NamedTuple):
    """A caller's key as the sealing batch reads and writes it: plain values, not a `CallerKey` instance
    (SQLAlchemy's instrumented construction, for every caller of a batch, cost more than sealing them)."""

    key_id: str
    phone_ref: str | None
    data_key: bytes


def seal_with(key: CallerKey | KeyRow, secret: str, caller: ev.Caller, ticket_id: str) -> tuple[ev.SealedCaller, ev.CallerRef]:
    """The caller's name and phone sealed with their key, bound to the ticket (its id is the associated data,
    so a sealed copy moved to another ticket does not open)."""
    nonce = os.urandom(12)
    plain = json.dumps({"name": caller.name, "phone": caller.phone}, ensure_ascii=False).encode()
    ciphertext = AESGCM(key.data_key).encrypt(nonce, plain, ticket_id.encode())
    sealed = ev.SealedCaller(key_id=key.key_id, algorithm=ALGORITHM, nonce=base64.b64encode(nonce).decode(),
                             ciphertext=base64.b64encode(ciphertext).decode())
    ref = ev.CallerRef(pseudonym=pseudonym(secret, key.key_id) if caller.phone else None,
                       masked_phone=mask_phone(caller.phone), anonymous=not caller.phone)
    return sealed, ref


def open_sealed(session: Session, sealed: ev.SealedCaller, ticket_id: str) -> ev.Caller | None:
    """The caller's name and phone, or None once their key is erased."""
    key = session.get(CallerKey, sealed.key_id)
    if key is None:
        return None
    try:
        plain = AESGCM(key.data_key).decrypt(base64.b64decode(sealed.nonce), base64.b64decode(sealed.ciphertext),
                                             ticket_id.encode())
    except InvalidTag:
        return None  # not sealed for this ticket, or tampered with
    return ev.Caller.model_validate(json.loads(plain))


def erase_caller(session: Session, secret: str, phone: str) -> Erasure:
    """Destroy the key of the caller with this phone, and the index of their tickets."""
    key = session.exec(select(CallerKey).where(CallerKey.phone_ref == phone_ref(secret, phone))).first()
    if key is None:
        return Erasure(0, 0)
    tickets = session.exec(select(func.count()).select_from(SealedTicket).where(SealedTicket.key_id == key.key_id)).one()
    session.exec(delete(SealedTicket).where(col(SealedTicket.key_id) == key.key_id))  # type: ignore[call-overload]
    session.exec(delete(SealedCallerCopy).where(col(SealedCallerCopy.key_id) == key.key_id))  # type: ignore[call-overload]
    session.delete(key)
    return Erasure(1, int(tickets))


@dataclass(frozen=True)
class Claim:
    """The Idempotency-Key a submission came with (scoped to its caller) and a hash of its validated body."""

    key: str
    fingerprint: str


class KeyReused(ValueError):
    """The Idempotency-Key was first used for another body (answered 409: the second text would otherwise be
    dropped silently behind the first ticket)."""

    def __init__(self, ticket_id: str) -> None:
        super().__init__(f"this Idempotency-Key was already used for ticket {ticket_id} with another body: "
                         "a new complaint needs a new key")
        self.ticket_id = ticket_id


@dataclass(frozen=True)
class PlainRow:
    """A row of an intake table as plain values: building the SQLModel instance (SQLAlchemy's instrumented
    __init__) on the event loop for every request cost more than the rest of the request's own code."""

    model: type[SQLModel]
    values: dict[str, Any]


@dataclass(frozen=True)
class Submission:
    """An HTTP submission to seal, the request's other rows (who submitted it) and its Idempotency-Key claim,
    written in the same transaction: one thread hop and one commit for all of it."""

    envelope: Envelope[Any]
    rows: tuple[SQLModel | PlainRow, ...] = ()
    claim: Claim | None = None


def seal_in_store(engine: Engine, secret: str, submission: Submission) -> Envelope[Any]:
    """One submission sealed in its own transaction (HTTP requests go through `GroupSealer`)."""
    result = seal_many(engine, secret, [submission])[0]
    if isinstance(result, Exception):
        raise result
    return result


def seal_many(engine: Engine, secret: str, submissions: Sequence[Submission]) -> list[Envelope[Any] | Exception]:
    """Submissions sealed together in ONE transaction, a few statements for the whole batch (under the
    store's one write lock, which the machine channel's batches take too, so one caller never gets two keys).
    If the batch fails, each is tried again alone: one bad submission fails only itself, answered with its
    exception. One commit for many requests is what lets intake take hundreds a second (group commit,
    docs/performance.md)."""
    try:
        with write_lock(engine), Session(engine) as session, session.begin():
            refused = _claim_keys(session, submissions)
            sealed = iter(_seal_together(session, secret, [s for i, s in enumerate(submissions) if i not in refused],
                                         utcnow()))
            return [refused[i] if i in refused else next(sealed) for i in range(len(submissions))]
    except Exception as exc:  # noqa: BLE001  # answered per submission below
        if len(submissions) == 1:
            return [exc]
    return [seal_many(engine, secret, [one])[0] for one in submissions]


_CLAIMED = select(col(SubmissionKey.scoped_key), col(SubmissionKey.fingerprint), col(SubmissionKey.ticket_id)).where(
    col(SubmissionKey.scoped_key).in_(bindparam("keys", expanding=True)))


def _claim_keys(session: Session, submissions: Sequence[Submission]) -> dict[int, Exception]:
    """Remember what each Idempotency-Key was first used for; the submissions (by index) whose key was first used
    with another body. A retry with the same body is sealed again under the same ticket id (same rows)."""
    claims = {i: s.claim for i, s in enumerate(submissions) if s.claim is not None}
    if not claims:
        return {}
    rows = {c.key: {"scoped_key": c.key, "fingerprint": c.fingerprint, "ticket_id": submissions[i].envelope.ticket_id}
            for i, c in sorted(claims.items(), reverse=True)}  # the first use of a key in the batch wins
    connection = session.connection()
    insert_ignoring_stored(connection, table_of(SubmissionKey), list(rows.values()))
    # Read back: what this batch or anyone before it (another instance included) stored for each key.
    stored = {key: (fingerprint, ticket_id) for key, fingerprint, ticket_id in select_rows(connection, _CLAIMED, {"keys": list(rows)})}
    return {i: KeyReused(stored[c.key][1]) for i, c in claims.items() if c.key in stored and stored[c.key][0] != c.fingerprint}


def _seal_together(session: Session, secret: str, submissions: Sequence[Submission], now: datetime) -> list[Envelope[Any]]:
    if not submissions:
        return []
    callers = [s.envelope.data.caller for s in submissions]
    keys = _caller_keys(session, secret, [c.phone for c in callers if c.phone and phone_digits(c.phone)], now)
    copies: list[dict[str, Any]] = []
    own_keys: list[dict[str, Any]] = []
    seal = _batch_sealer(secret, keys, own_keys, copies, now)
    out = [sealed_submission(s.envelope, seal) for s in submissions]
    connection = session.connection()
    insert_rows(connection, table_of(CallerKey), own_keys)  # the callers without a phone: a key of their ticket's own
    upsert_rows(session, table_of(SealedTicket), [{"ticket_id": c["ticket_id"], "key_id": c["key_id"]} for c in copies],
                ["ticket_id"])
    upsert_rows(session, table_of(SealedCallerCopy), copies, ["ticket_id"])
    _write_rows(session, [row for s in submissions for row in s.rows])
    return out


def _batch_sealer(secret: str, keys: dict[str, KeyRow], own_keys: list[dict[str, Any]], copies: list[dict[str, Any]],
                  now: datetime) -> Callable[[ev.Caller, str], tuple[ev.SealedCaller | None, ev.CallerRef]]:
    """Seals one caller of the batch with the key found or made for their phone, noting the copy to store (and the
    key made for a caller without a phone)."""
    def seal(caller: ev.Caller, ticket_id: str) -> tuple[ev.SealedCaller | None, ev.CallerRef]:
        if not caller.name and not caller.phone:
            return None, ev.CallerRef(anonymous=True)
        key = keys.get(caller.phone) if caller.phone else None
        if key is None:  # a caller without a phone: a key of this ticket's own
            key = KeyRow(uuid.uuid4().hex, None, AESGCM.generate_key(bit_length=256))
            own_keys.append({**key._asdict(), "created_at": now})
        sealed, ref = seal_with(key, secret, caller, ticket_id)
        copies.append({"ticket_id": ticket_id, "key_id": key.key_id, "nonce": sealed.nonce, "ciphertext": sealed.ciphertext})
        return sealed, ref
    return seal


_KEYS_BY_REF = select(col(CallerKey.key_id), col(CallerKey.phone_ref), col(CallerKey.data_key)).where(
    col(CallerKey.phone_ref).in_(bindparam("refs", expanding=True)))


def _caller_keys(session: Session, secret: str, phones: list[str], now: datetime) -> dict[str, KeyRow]:
    """The keys of these callers by phone number as written, made for those calling for the first time (two calls
    from one number in the same batch, however written, share one key: its `phone_ref` is of the digits)."""
    ref_of = {phone: phone_ref(secret, phone) for phone in phones}
    refs = sorted(set(ref_of.values()))
    if not refs:
        return {}
    found = _stored_keys(session, refs)
    new = [{"key_id": uuid.uuid4().hex, "phone_ref": ref, "data_key": AESGCM.generate_key(bit_length=256),
            "created_at": now} for ref in refs if ref not in found]
    if new:
        found.update(_insert_new_keys(session, new))
    return {phone: found[ref] for phone, ref in ref_of.items()}


def _stored_keys(session: Session, refs: list[str]) -> dict[str, KeyRow]:
    rows = select_rows(session.connection(), _KEYS_BY_REF, {"refs": refs})
    return {ref: KeyRow(key_id, ref, bytes(data_key)) for key_id, ref, data_key in rows}


def _insert_new_keys(session: Session, new: list[dict[str, Any]]) -> dict[str, KeyRow]:
    """Insert the first-time callers' keys; those made first by another writer meanwhile are read back instead.
    RETURNING names the rows this statement inserted, so the read-back is only for the rare conflict."""
    inserted = set(insert_new(session.connection(), table_of(CallerKey), new, returning="phone_ref"))
    mine = {n["phone_ref"]: KeyRow(n["key_id"], n["phone_ref"], n["data_key"]) for n in new if n["phone_ref"] in inserted}
    missing = [n["phone_ref"] for n in new if n["phone_ref"] not in inserted]
    if missing:  # another instance made these callers' keys first: theirs is the key
        mine.update(_stored_keys(session, missing))
    return mine


def _write_rows(session: Session, rows: list[SQLModel | PlainRow]) -> None:
    """Upsert rows of any intake table, one statement per table."""
    by_table: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        if isinstance(row, PlainRow):
            by_table.setdefault(table_of(row.model), []).append(row.values)
        else:
            by_table.setdefault(table_of(type(row)), []).append(row.model_dump())
    for table, values in by_table.items():
        upsert_rows(session, table, values, [c.name for c in table.primary_key.columns])


@dataclass
class _Waiting:
    submission: Submission
    answer: asyncio.Future[Envelope[Any]]


class GroupSealer:
    """Group commit for HTTP submissions: the requests that arrive while a batch is being sealed, or within the
    loop's turn before it, queue up and are sealed together next, in one transaction. At low load a batch is one
    request and nothing waits; under load the commit and the lock are paid once per batch instead of once per
    request. On SQLite a batch is sealed on the event loop, elsewhere in a worker thread (`short_write`)."""

    def __init__(self, engine: Engine, secret: str, max_batch: int = 256) -> None:
        self._engine, self._secret, self._max_batch = engine, secret, max_batch
        self._queue: list[_Waiting] = []
        self._draining: asyncio.Task[None] | None = None

    async def seal(self, submission: Submission) -> Envelope[Any]:
        waiting = _Waiting(submission, asyncio.get_running_loop().create_future())
        self._queue.append(waiting)
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        return await waiting.answer

    async def _drain(self) -> None:
        try:
            while self._queue:
                if short_writes_on_loop(self._engine):  # sealed on the loop: let it read once more, to join this batch
                    await asyncio.sleep(0)
                batch, self._queue = self._queue[:self._max_batch], self._queue[self._max_batch:]
                try:
                    # On the loop on SQLite; in a worker thread on PostgreSQL (round trips) or while the lock is held.
                    results = await short_write(self._engine, seal_many, self._engine, self._secret,
                                                [w.submission for w in batch])
                except Exception as exc:  # noqa: BLE001  # the store failed: every request of the batch hears it
                    results = [exc] * len(batch)
                for waiting, result in zip(batch, results, strict=True):
                    _answer(waiting.answer, result)
        finally:
            self._draining = None


def _answer(answer: asyncio.Future[Envelope[Any]], result: Envelope[Any] | Exception) -> None:
    if answer.done():  # the request was cancelled (its client went away): its ticket is sealed, nobody waits
        return
    if isinstance(result, Exception):
        answer.set_exception(result)
    else:
        answer.set_result(result)


def caller_of(engine: Engine, sealed: ev.SealedCaller, ticket_id: str) -> ev.Caller | None:
    with Session(engine) as session:
        return open_sealed(session, sealed, ticket_id)


def callers_of(engine: Engine, ticket_ids: list[str]) -> dict[str, ev.Caller | None]:
    """The callers of these tickets, opened from intake's copies of their sealed records (None: erased, or
    submitted before intake kept copies, or anonymous)."""
    with Session(engine) as session:
        copies = session.exec(select(SealedCallerCopy).where(col(SealedCallerCopy.ticket_id).in_(ticket_ids))).all()
        opened = {c.ticket_id: open_sealed(session, ev.SealedCaller(key_id=c.key_id, algorithm=ALGORITHM, nonce=c.nonce,
                                                                    ciphertext=c.ciphertext), c.ticket_id) for c in copies}
    return {ticket_id: opened.get(ticket_id) for ticket_id in ticket_ids}


def _number_anywhere(phone: str) -> re.Pattern[str]:
    """The number as people write it: its digits, with a space or dash allowed between any two."""
    return re.compile(r"[ \-]?".join(re.escape(d) for d in phone_digits(phone)))


def scrub_status_rows(session: Session, phone: str) -> int:
    """Mask the number where a status row still holds it in the clear: rows of tickets whose text was
    registered before intake masked numbers in free text."""
    digits = phone_digits(phone)
    if len(digits) < 5:
        return 0
    pattern, tail = _number_anywhere(phone), f"%{digits[-2:]}%"
    rows = session.exec(select(TicketStatus).where(col(TicketStatus.text).like(tail) | col(TicketStatus.address).like(tail))).all()
    changed = 0
    for row in rows:
        text, address = pattern.sub(mask_phone(digits) or "", row.text), pattern.sub(mask_phone(digits) or "", row.address or "")
        if text != row.text or address != (row.address or ""):
            row.text, row.address = text, address if row.address is not None else None
            session.add(row)
            changed += 1
    return changed


def erase(engine: Engine, secret: str, phone: str) -> Erasure:
    """Erase the caller with this phone: their key, the index of their tickets, and clear copies of the
    number in intake's status view. Once committed, nothing the hub keeps can give the number back."""
    sqlite = engine.dialect.name == "sqlite"
    with write_lock(engine), Session(engine) as session, session.begin():
        if sqlite:  # a deleted key must not survive in the file's free pages
            session.connection().exec_driver_sql("PRAGMA secure_delete=ON")
        erased = erase_caller(session, secret, phone)
        erased = Erasure(erased.keys, erased.tickets, scrub_status_rows(session, phone))
    if sqlite and erased.keys:
        _checkpoint(engine)
    return erased


def _checkpoint(engine: Engine) -> None:
    """Copy the write-ahead log into the database and empty it: the WAL holds the key's old page until then."""
    with write_lock(engine), engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
