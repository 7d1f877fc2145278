"""triage's handlers through its real pipeline (tests/harness): confident -> classified, unsure -> manual queue,
operator's category, manual decision, reroute without the returning unit; redelivery and early events.

triage parks nothing: every event it handles depends only on what triage itself wrote before (a manual
decision answers triage's own request; a reroute carries the whole ticket). A decision for a ticket that
is not waiting for one is an error and goes to the dead-letter topic."""

from __future__ import annotations

import pytest

from contracts import events as ev
from contracts.topics import topic_for_event
from tests.harness.pipeline import by_key, record_of, start
from tests.harness.redelivery import check_redelivery_after_a_confirmed_publish, check_redelivery_after_an_unconfirmed_publish
from tests.harness.workflow import KeywordClassifier, inputs, manual_triage_submitted, of_type, one, story_hub


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    return story_hub(tmp_path_factory.mktemp("triage-stories"))


def _triage(tmp_path, **settings):
    return start("triage", tmp_path, classifier=KeywordClassifier(), **settings)


def _row(svc, ticket_id):
    return next(r for r in svc.rows("triage_tickets") if r["ticket_id"] == ticket_id)


def test_a_confident_classifier_classifies_and_routes(tmp_path, hub):
    svc = _triage(tmp_path)
    out = svc.feed(inputs(svc, hub.log, "T-HAPPY"))
    c = one(out, ev.TicketClassified, "T-HAPPY")
    assert [r.topic for r in out] == [topic_for_event(ev.TicketClassified.event_type)]
    assert (c.data.category, c.data.method, c.data.confidence) == ("city-management.garbage-collection", "model", 0.92)
    assert c.data.routing.lead == "city-management" and not c.data.needs_consultation
    assert c.data.limits.resolution.amount > 0 and c.data.ticket.text.startswith("垃圾")
    assert (_row(svc, "T-HAPPY")["status"], _row(svc, "T-HAPPY")["category"]) == ("classified", "city-management.garbage-collection")


def test_the_operators_category_wins_over_the_classifier(tmp_path, hub):
    svc = _triage(tmp_path)
    c = one(svc.feed(inputs(svc, hub.log, "T-JOINT")), ev.TicketClassified, "T-JOINT")
    assert (c.data.category, c.data.method, c.data.confidence) == ("city-management.manhole-cover", "operator", 1.0)
    assert c.data.routing.co_units == ("water",)


def test_an_unsure_classifier_sends_the_ticket_to_the_manual_queue_and_the_operator_decides(tmp_path, hub):
    svc = _triage(tmp_path)
    records = inputs(svc, hub.log, "T-MANUAL")
    registered = [r for r in records if r.type == ev.TicketRegistered.event_type]
    out = svc.feed(registered)
    request = one(out, ev.ManualTriageRequested, "T-MANUAL")
    assert request.data.reason == "low confidence 0.12 < 0.65"
    assert request.data.candidates[0] == ("city-management.street-cleaning", 0.12)
    assert _row(svc, "T-MANUAL")["status"] == "manual-triage"
    command = one(records, ev.ManualTriageSubmitted, "T-MANUAL")
    out = svc.feed([r for r in records if r.id == command.id])
    resolved = one(out, ev.ManualTriageResolved, "T-MANUAL")  # triage writes the operator's decision as its fact
    assert (resolved.causation_id, resolved.data.category, resolved.data.operator) == (
        command.id, "city-management.street-cleaning", "op-7")
    assert {r.topic for r in out} == {topic_for_event(ev.ManualTriageResolved.event_type)}
    c = one(out, ev.TicketClassified, "T-MANUAL")
    assert (c.data.category, c.data.method) == ("city-management.street-cleaning", "manual")
    assert _row(svc, "T-MANUAL")["status"] == "classified"


def test_a_decision_in_the_same_batch_as_the_request_it_answers_is_applied(tmp_path, hub):
    # A batch keeps its rows in memory until it ends: the decision finds the row the request made in that batch.
    svc = _triage(tmp_path)
    out = svc.feed(inputs(svc, hub.log, "T-MANUAL"))
    assert one(out, ev.ManualTriageRequested, "T-MANUAL") and one(out, ev.ManualTriageResolved, "T-MANUAL")
    assert one(out, ev.TicketClassified, "T-MANUAL").data.method == "manual"
    assert (_row(svc, "T-MANUAL")["status"], _row(svc, "T-MANUAL")["category"]) == ("classified", "city-management.street-cleaning")


def test_a_merged_repeat_is_not_triaged_but_a_split_one_is(tmp_path, hub):
    svc = _triage(tmp_path)
    out = svc.feed(inputs(svc, hub.log, "T-REPEAT", "T-SPLIT"))
    assert {e.ticket_id for e in of_type(out, ev.TicketClassified)} == {"T-SPLIT"}
    assert [r["ticket_id"] for r in svc.rows("triage_tickets")] == ["T-SPLIT"]


def test_a_reroute_routes_without_the_returning_unit_and_convenes_after_repeated_returns(tmp_path, hub):
    svc = _triage(tmp_path, consult_after_returns=2)
    out = svc.feed(inputs(svc, hub.log, "T-PINGPONG"))
    reroutes = [c for c in of_type(out, ev.TicketClassified) if c.data.method == "reroute"]
    assert [c.data.excluded_units for c in reroutes] == [
        ("city-management",), ("city-management", "environment"), ("city-management", "environment", "housing")]
    assert [c.data.routing.lead for c in reroutes][:2] == ["environment", "housing"]
    assert all(c.data.routing.lead not in c.data.excluded_units for c in reroutes)
    assert [c.data.needs_consultation for c in reroutes] == [False, True, True]


def test_a_decision_for_a_ticket_not_waiting_for_one_is_dead_lettered(tmp_path, hub):
    svc = _triage(tmp_path)
    svc.feed(inputs(svc, hub.log, "T-HAPPY"))
    early = record_of(manual_triage_submitted("T-HAPPY", "city-management.street-cleaning"))
    out = svc.feed([early])
    assert [r.topic for r in out] == [early.topic + ".dlq"]
    assert "not waiting for manual triage" in out[0].header("dlq_error")
    assert svc.processed()[early.id] == "dead-lettered" and svc.parked() == []
    assert _row(svc, "T-HAPPY")["category"] == "city-management.garbage-collection"


def test_a_batch_redelivered_after_an_unconfirmed_publish_resends_the_same_records_and_changes_nothing(tmp_path, hub):
    check_redelivery_after_an_unconfirmed_publish(lambda: _triage(tmp_path), hub.log)


def test_a_batch_redelivered_after_it_was_confirmed_publishes_nothing_and_changes_nothing(tmp_path, hub):
    check_redelivery_after_a_confirmed_publish(lambda: _triage(tmp_path), hub.log)


def test_the_topics_interleaving_does_not_change_the_outcome(tmp_path, hub):
    """triage reads several topics, each in order but not in step with the others: reading all the
    registrations first, then the operators' decisions, then the reroutes (each still after its cause)
    gives what the log's interleaving gave."""
    records = inputs(_triage(tmp_path), hub.log)
    as_logged = _triage(tmp_path)
    expected = as_logged.feed(records)
    topic_by_topic = _triage(tmp_path)
    topics = [topic_for_event(t.event_type) for t in (ev.TicketRegistered, ev.ManualTriageSubmitted, ev.RerouteRequested)]
    assert set(topics) >= {r.topic for r in records}
    out = topic_by_topic.feed([r for t in topics for r in records if r.topic == t])
    assert by_key(out) == by_key(expected)
    assert topic_by_topic.snapshot()["triage_tickets"] == as_logged.snapshot()["triage_tickets"]
