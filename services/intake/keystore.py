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

import base64
import json
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import LargeBinary
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Column, Field, Session, SQLModel, col, delete, func, select

from contracts import events as ev
from contracts.envelope import Envelope, utcnow
from domain.privacy import mask_phone, phone_digits, pseudonym
from services.common.pipeline import write_lock

from .domain import sealed_submission
from .models import TicketStatus

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
    session.merge(SealedTicket(ticket_id=ticket_id, key_id=key.key_id))
    nonce = os.urandom(12)
    plain = json.dumps({"name": caller.name, "phone": caller.phone}, ensure_ascii=False).encode()
    ciphertext = AESGCM(key.data_key).encrypt(nonce, plain, ticket_id.encode())
    sealed = ev.SealedCaller(key_id=key.key_id, algorithm=ALGORITHM, nonce=base64.b64encode(nonce).decode(),
                             ciphertext=base64.b64encode(ciphertext).decode())
    session.merge(SealedCallerCopy(ticket_id=ticket_id, key_id=key.key_id, nonce=sealed.nonce, ciphertext=sealed.ciphertext))
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


def seal_in_store(engine: Engine, secret: str, envelope: Envelope[Any],
                  also: Callable[[Session], None] | None = None) -> Envelope[Any]:
    """An HTTP submission sealed in its own transaction (under the store's one write lock, which the
    machine channel's batches take too, so one caller never gets two keys). `also` writes the request's
    other rows (who submitted it) in the same transaction: one thread hop and one commit per request."""
    with write_lock(engine), Session(engine) as session, session.begin():
        if also is not None:
            also(session)
        return sealed_submission(envelope, lambda caller, ticket_id: seal_caller(session, secret, caller, ticket_id))


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
