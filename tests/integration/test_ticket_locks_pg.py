"""Several instances on PostgreSQL (issue 12, point 6): a batch transaction is the one writer of its tickets'
state for its service until it commits (services/common/store.py `lock_tickets`, taken first by every
pipeline batch), so an instance that receives records again after a rebalance waits for the old owner's
commit and then sees what it applied. Real PostgreSQL (tests/integration/pg.py)."""

from __future__ import annotations

import threading
import time

from sqlmodel import Session

from services.common.store import lock_tickets, make_engine
from tests.integration.pg import postgres_server  # noqa: F401


def _blocked_while_held(url: str, held: tuple[str, list[str]], wanted: tuple[str, list[str]]) -> tuple[bool, float]:
    """Whether `wanted` waited for the transaction holding `held`, and how long it took once released."""
    engine = make_engine(url)
    got = threading.Event()

    def second_instance() -> None:
        with Session(engine) as session, session.begin():
            lock_tickets(session, *wanted)
            got.set()

    with Session(engine) as first, first.begin():
        lock_tickets(first, *held)
        other = threading.Thread(target=second_instance)
        other.start()
        waited = not got.wait(1.0)
        released_at = time.monotonic()
    other.join(10)
    assert got.is_set(), "the second instance never got its locks"
    engine.dispose()
    return waited, time.monotonic() - released_at


def test_a_second_writer_of_the_same_ticket_waits_for_the_first_ones_commit(postgres_server) -> None:  # noqa: F811
    url = postgres_server.new_database()
    waited, _ = _blocked_while_held(url, ("act", ["T-1"]), ("act", ["T-2", "T-1"]))
    assert waited


def test_other_tickets_and_other_services_do_not_wait(postgres_server) -> None:  # noqa: F811
    url = postgres_server.new_database()
    assert _blocked_while_held(url, ("act", ["T-1"]), ("act", ["T-2", "T-3"]))[0] is False
    assert _blocked_while_held(url, ("act", ["T-1"]), ("sla", ["T-1"]))[0] is False
