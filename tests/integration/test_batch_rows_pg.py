"""discover, triage and consult keep a batch's rows in memory and write them at its end (services/common/batch_state.py);
on PostgreSQL their reads and writes are SQLAlchemy's statements rather than SQLite's cursor. The same stories as
their unit tests, through each service's real pipeline (tests/harness) on a real PostgreSQL database
(tests/integration/pg.py): a repeat whose master came earlier in the same batch, a ticket closed earlier in the
batch that takes no repeat, a split, a manual decision in the batch of the request it answers, a consultation
convened again in one batch, and the tick that sends late opinions to a supervisor."""

from __future__ import annotations

from datetime import timedelta

from contracts import events as ev
from tests.harness.pipeline import record_of, start
from tests.harness.workflow import T0, KeywordClassifier, inputs, of_type, one, story_hub, submitted
from tests.integration.pg import postgres_server  # noqa: F401

GARBAGE = "垃圾没人收 garbage not collected for three days"


def _rows(svc, table):
    return {r["ticket_id"]: r for r in svc.rows(table)}


def test_discover_merges_splits_and_forgets_closed_tickets_within_one_batch_on_postgresql(tmp_path, postgres_server):  # noqa: F811
    hub = story_hub(tmp_path / "stories")
    svc = start("discover", tmp_path, db_url=postgres_server.new_database())
    out = svc.feed([record_of(submitted("T-1", GARBAGE)), record_of(submitted("T-2", GARBAGE + " again", at=T0 + timedelta(hours=1)))])
    assert one(out, ev.TicketMerged, "T-2").data.master_ticket_id == "T-1"
    assert {k: r["master_ticket_id"] for k, r in _rows(svc, "discover_tickets").items()} == {"T-1": None, "T-2": "T-1"}

    closed = start("discover", tmp_path, db_url=postgres_server.new_database())
    closed.feed(inputs(closed, hub.log, "T-HAPPY")[:1])
    closing = [r for r in inputs(closed, hub.log, "T-HAPPY") if r.type == ev.TicketClosed.event_type]
    late = closed.feed([*closing, record_of(submitted("T-3", GARBAGE, at=T0 + timedelta(hours=2)))])
    assert not _rows(closed, "discover_tickets")["T-HAPPY"]["open"]
    assert one(late, ev.TicketRegistered, "T-3").data.master_ticket_id is None
    # Without the close in its batch, the same submission is a repeat of T-HAPPY (the store's read on PostgreSQL).
    still_open = start("discover", tmp_path, db_url=postgres_server.new_database())
    still_open.feed(inputs(still_open, hub.log, "T-HAPPY")[:1])
    repeat = still_open.feed([record_of(submitted("T-3", GARBAGE, at=T0 + timedelta(hours=2)))])
    assert one(repeat, ev.TicketRegistered, "T-3").data.master_ticket_id == "T-HAPPY"

    records = inputs(svc, hub.log, "T-JOINT", "T-SPLIT")
    split = one(svc.feed(records), ev.TicketSplit, "T-SPLIT")
    assert split.data.former_master_ticket_id == "T-JOINT"
    assert _rows(svc, "discover_tickets")["T-SPLIT"]["master_ticket_id"] is None


def test_triage_applies_a_decision_in_the_batch_of_its_request_on_postgresql(tmp_path, postgres_server):  # noqa: F811
    hub = story_hub(tmp_path / "stories")
    svc = start("triage", tmp_path, classifier=KeywordClassifier(), db_url=postgres_server.new_database())
    out = svc.feed(inputs(svc, hub.log, "T-MANUAL"))
    assert one(out, ev.ManualTriageRequested, "T-MANUAL") and one(out, ev.ManualTriageResolved, "T-MANUAL")
    assert one(out, ev.TicketClassified, "T-MANUAL").data.method == "manual"
    row = _rows(svc, "triage_tickets")["T-MANUAL"]
    assert (row["status"], row["category"]) == ("classified", "city-management.street-cleaning")
    again = svc.feed(inputs(svc, hub.log, "T-HAPPY"))
    assert one(again, ev.TicketClassified, "T-HAPPY").data.category == "city-management.garbage-collection"
    assert _rows(svc, "triage_tickets")["T-HAPPY"]["status"] == "classified"


def test_consult_supersedes_within_one_batch_and_ticks_late_opinions_on_postgresql(tmp_path, postgres_server):  # noqa: F811
    hub = story_hub(tmp_path / "stories")
    svc = start("consult", tmp_path, opinion_window_s=3600, db_url=postgres_server.new_database())
    first = next(r for r in hub.log.records if r.ticket_id == "T-CONSULT" and r.type == ev.TicketClassified.event_type)
    again = record_of(first.envelope().model_copy(update={"id": "again-0001"}), topic=first.topic)
    earlier, later = (r.data for r in of_type(svc.feed([first, again]), ev.ConsultationRequested, "T-CONSULT"))
    statuses = {r["consultation_id"]: r["status"] for r in svc.rows("consultations")}
    assert statuses == {earlier.consultation_id: "superseded", later.consultation_id: "open"}
    svc.clock.now = later.opinions_due - timedelta(seconds=1)
    assert svc.tick() == []  # the time compared on PostgreSQL's side: not due yet
    svc.clock.now = later.opinions_due
    assert one(svc.tick(), ev.SupervisorReviewRequested, "T-CONSULT").data.consultation_id == later.consultation_id
    assert {r["consultation_id"]: r["status"] for r in svc.rows("consultations")}[later.consultation_id] == "supervisor-review"
