"""The chaos run's judgement (tools/chaos_audit.py, tools/chaos_report.py) on events built here: a
redelivered copy (same event id) is harmless, the same effect under two ids is a duplicate, and any loss
or duplicate fails the run."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts import events as ev
from contracts.envelope import Envelope, derive_event_id
from tools.chaos_audit import LogFacts, rows_left
from tools.chaos_report import verdict

T = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _event(data: ev.Event, ticket: str, name: str) -> Envelope[Any]:
    return Envelope.origin(data, source="/test", ticket_id=ticket, time=T,
                           event_id=derive_event_id(f"test:{ticket}", data.event_type, 0, name))


def closed(ticket: str, rounds: int, name: str = "close") -> Envelope[Any]:
    return _event(ev.TicketClosed(outcome="resolved", rounds=rounds), ticket, name)


def reminder(ticket: str, name: str = "remind") -> Envelope[Any]:
    data = ev.SlaReminderSent(task_id=f"{ticket}:housing:1", unit="housing", clock="resolution", fraction=0.75, deadline=T)
    return _event(data, ticket, name)


def test_a_redelivered_close_is_not_a_duplicate_but_a_second_id_for_one_round_is() -> None:
    facts = LogFacts()
    for event in (closed("t-1", 1), closed("t-1", 1), closed("t-2", 1), closed("t-2", 1, name="again")):
        facts.add(event)
    assert facts.duplicates()["ticket closed twice in one round"] == ["t-2 round 1"]
    assert facts.closed_tickets() == {"t-1", "t-2"}


def test_a_reminder_sent_twice_under_two_ids_is_a_duplicate() -> None:
    facts = LogFacts()
    for event in (reminder("t-1"), reminder("t-1"), reminder("t-2"), reminder("t-2", name="other")):
        facts.add(event)
    assert facts.duplicates()["reminder sent twice"] == ["t-2:housing:1 resolution 0.75"]


def findings(lost: int = 0, duplicated: int = 0, mismatched: int = 0) -> dict[str, Any]:
    return {"lost": {"count": lost, "sample": []}, "load": {"retry_answered_another_ticket": mismatched},
            "duplicates": {"task assigned twice": {"count": duplicated, "sample": []},
                           "reminder sent twice": {"count": 0, "sample": []}},
            "dead_letters": {"cityops.triage.v1.dlq": 3}, "rows_left": {"act": {"outbox": 2}}}


def test_the_run_fails_on_any_loss_or_duplicate_and_only_then() -> None:
    assert verdict(findings()) == []  # dead letters and rows left are reported, not judged
    assert verdict(findings(lost=1)) == ["1 accepted tickets never closed"]
    assert verdict(findings(duplicated=2)) == ["2 × task assigned twice"]
    assert verdict(findings(mismatched=1)) != []


def test_rows_left_counts_outbox_and_parked_rows_of_each_store(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "act.db") as db:
        db.execute("create table outbox (id integer)")
        db.execute("create table parked_events (id integer)")
        db.executemany("insert into outbox values (?)", [(1,), (2,)])
    with sqlite3.connect(tmp_path / "triage.db") as db:
        db.execute("create table outbox (id integer)")
    assert rows_left(tmp_path, ["act", "triage", "consult"]) == {"act": {"outbox": 2, "parked_events": 0}}
