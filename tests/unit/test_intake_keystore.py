"""The caller key store: a destroyed key leaves no copy in the store's files (free pages, write-ahead log)."""

from __future__ import annotations

from sqlmodel import Session, select

from contracts import events as ev
from services.common.batch_state import table_of
from services.common.store import create_tables, make_engine
from services.intake.keystore import TABLES, CallerKey, caller_of, erase, seal_caller
from services.intake.models import TicketStatus

SECRET = "s" * 40


def test_an_erased_key_is_gone_from_every_file_of_the_store(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'intake.db'}")
    create_tables(engine, [table_of(TicketStatus), *(table_of(t) for t in TABLES)])
    with Session(engine) as s, s.begin():
        sealed, _ = seal_caller(s, SECRET, ev.Caller(name="钱七", phone="13812345678"), "T-1")
        seal_caller(s, SECRET, ev.Caller(name="孙八", phone="13987654321"), "T-2")
    with Session(engine) as s:
        data_key = s.exec(select(CallerKey.data_key).where(CallerKey.key_id == sealed.key_id)).one()
    assert caller_of(engine, sealed, "T-1") is not None
    assert any(data_key in p.read_bytes() for p in tmp_path.iterdir())
    assert erase(engine, SECRET, "+86 138 1234 5678").keys == 1
    assert caller_of(engine, sealed, "T-1") is None
    leftovers = [p.name for p in tmp_path.iterdir() if data_key in p.read_bytes()]
    assert leftovers == []
    engine.dispose()


def test_a_caller_without_a_phone_is_sealed_under_a_key_of_their_own():
    from services.common.store import make_engine as make

    engine = make("sqlite://")
    create_tables(engine, [table_of(TicketStatus), *(table_of(t) for t in TABLES)])
    with Session(engine) as s, s.begin():
        a, ref_a = seal_caller(s, SECRET, ev.Caller(name="周九"), "T-1")
        b, _ = seal_caller(s, SECRET, ev.Caller(name="周九"), "T-2")
        none, ref_none = seal_caller(s, SECRET, ev.Caller(), "T-3")
    assert a.key_id != b.key_id and ref_a.anonymous and ref_a.pseudonym is None
    assert none is None and ref_none.anonymous
    assert caller_of(engine, a, "T-1").name == "周九"
