"""evaluate's handlers through its real pipeline (tests/harness): callback, close, re-handle, merged repeats,
rates; redelivery and out-of-order arrival."""

from __future__ import annotations

import pytest

from contracts import events as ev
from contracts.topics import topic_for_event
from tests.harness.pipeline import by_key, record_of, start
from tests.harness.redelivery import check_redelivery_after_a_confirmed_publish, check_redelivery_after_an_unconfirmed_publish
from tests.harness.workflow import callback_submitted, inputs, of_type, one, story_hub


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    return story_hub(tmp_path_factory.mktemp("evaluate-stories"))


def _evaluate(tmp_path, **settings):
    return start("evaluate", tmp_path, **settings)


def _tickets(svc):
    return {t["ticket_id"]: t for t in svc.rows("evaluate_tickets")}


def _upto(records, event_type, ticket_id=None):
    """The records up to (without) the first of this type."""
    first = next(i for i, r in enumerate(records) if r.type == event_type.event_type and ticket_id in (None, r.ticket_id))
    return records[:first], records[first:]


def test_a_handled_ticket_gets_a_callback_request_with_the_masked_caller(tmp_path, hub):
    svc = _evaluate(tmp_path)
    before, _ = _upto(inputs(svc, hub.log, "T-HAPPY"), ev.CallbackSubmitted)
    out = svc.feed(before)
    request = one(out, ev.CallbackRequested, "T-HAPPY")
    assert [r.topic for r in out] == [topic_for_event(ev.CallbackRequested.event_type)]
    assert request.data.round == 1 and request.data.units == ("city-management",)
    assert request.data.caller.masked_phone == "138****5678" and request.data.caller.pseudonym
    assert b"13812345678" not in out[0].value
    assert _tickets(svc)["T-HAPPY"]["status"] == "awaiting-callback"


def test_a_satisfied_resident_closes_the_ticket_and_its_merged_repeat_with_it(tmp_path, hub):
    svc = _evaluate(tmp_path)
    out = svc.feed(inputs(svc, hub.log, "T-HAPPY", "T-REPEAT"))
    closed = {e.ticket_id: e.data for e in of_type(out, ev.TicketClosed)}
    assert closed["T-HAPPY"].outcome == "resolved" and closed["T-HAPPY"].rounds == 1
    assert closed["T-REPEAT"].outcome == "merged" and closed["T-REPEAT"].master_ticket_id == "T-HAPPY"
    assert closed["T-REPEAT"].satisfaction == ev.Satisfaction.satisfied
    assert {t: row["status"] for t, row in _tickets(svc).items()} == {"T-HAPPY": "closed", "T-REPEAT": "closed"}


def test_a_merged_repeats_caller_is_called_back_when_the_master_closes(tmp_path, hub):
    svc = _evaluate(tmp_path)
    before, rest = _upto(inputs(svc, hub.log, "T-HAPPY", "T-REPEAT"), ev.CallbackSubmitted)
    assert {e.ticket_id for e in of_type(svc.feed(before), ev.CallbackRequested)} == {"T-HAPPY"}
    out = svc.feed(rest)
    request = one(out, ev.CallbackRequested, "T-REPEAT")
    assert request.data.round == 1 and request.data.units == ("city-management",)
    assert request.data.caller.masked_phone == "139****1111"  # the repeat's own caller, not the master's
    assert [r.type for r in out if r.ticket_id == "T-REPEAT"] == [ev.CallbackRequested.event_type, ev.TicketClosed.event_type]


def _callbacks(svc):
    return {(r["scope"], r["key"]): (r["callbacks"], r["satisfied"]) for r in svc.rows("evaluate_rates") if r["callbacks"]}


def test_a_repeats_callback_is_recorded_and_counted_once_and_decides_nothing(tmp_path, hub):
    svc = _evaluate(tmp_path)
    out = svc.feed(inputs(svc, hub.log, "T-HAPPY", "T-REPEAT") + [record_of(callback_submitted("T-REPEAT", 1, satisfied=False))])
    assert one(out, ev.CallbackRecorded, "T-REPEAT").data.satisfaction == ev.Satisfaction.unsatisfied
    assert not of_type(out, ev.TicketReopened) and len(of_type(out, ev.TicketClosed, "T-REPEAT")) == 1
    assert _callbacks(svc)[("grid", "grid-east-1-a-1")] == (2, 1)  # both residents' verdicts count
    again = svc.feed([record_of(callback_submitted("T-REPEAT", 1, satisfied=True).model_copy(update={"id": "again"}))])
    assert not of_type(again, ev.CallbackRecorded) and _callbacks(svc)[("grid", "grid-east-1-a-1")] == (2, 1)


def test_a_repeats_callback_before_it_was_asked_for_is_refused(tmp_path, hub):
    svc = _evaluate(tmp_path)
    before, _ = _upto(inputs(svc, hub.log, "T-HAPPY", "T-REPEAT"), ev.CallbackSubmitted)
    svc.feed(before)
    out = svc.feed([record_of(callback_submitted("T-REPEAT", 1, satisfied=True))])
    assert not of_type(out, ev.CallbackRecorded) and _callbacks(svc) == {}


def test_a_split_ticket_is_not_closed_with_its_former_master(tmp_path, hub):
    svc = _evaluate(tmp_path)
    out = svc.feed(inputs(svc, hub.log, "T-JOINT", "T-SPLIT"))
    assert {e.ticket_id for e in of_type(out, ev.TicketClosed)} == {"T-JOINT"}
    assert _tickets(svc)["T-SPLIT"]["master_ticket_id"] is None and _tickets(svc)["T-SPLIT"]["status"] == "open"


def test_an_unsatisfied_resident_reopens_the_ticket_for_another_round(tmp_path, hub):
    svc = _evaluate(tmp_path)
    before, after = _upto(inputs(svc, hub.log, "T-JOINT"), ev.CallbackSubmitted)
    svc.feed(before)
    out = svc.feed(after[:1])  # the first callback: unresolved
    reopened = one(out, ev.TicketReopened, "T-JOINT")
    assert reopened.data.round == 2 and reopened.data.units == ("city-management", "water")
    assert reopened.data.reason == "unresolved"
    assert _tickets(svc)["T-JOINT"]["status"] == "open"
    rates = {(r["scope"], r["key"]): r for r in svc.rows("evaluate_rates")}
    assert rates[("unit", "water")]["reopened"] == 1 and rates[("grid", "grid-west-1-a-1")]["callbacks"] == 1


def test_the_last_round_closes_unresolved_instead_of_reopening(tmp_path, hub):
    svc = _evaluate(tmp_path, max_rounds=1)
    before, _ = _upto(inputs(svc, hub.log, "T-JOINT"), ev.CallbackSubmitted)
    svc.feed(before)
    out = svc.feed([record_of(callback_submitted("T-JOINT", 1, satisfied=False))])
    closed = one(out, ev.TicketClosed, "T-JOINT")
    assert closed.data.outcome == "unresolved" and not of_type(out, ev.TicketReopened)


def test_rates_count_assignments_sign_fors_and_callbacks_per_unit_grid_and_district(tmp_path, hub):
    svc = _evaluate(tmp_path)
    svc.feed(inputs(svc, hub.log))
    rates = {(r["scope"], r["key"]): r for r in svc.rows("evaluate_rates")}
    water = rates[("unit", "water")]
    assert (water["assigned"], water["signed_for"], water["callbacks"], water["resolved"], water["satisfied"]) == (3, 2, 2, 1, 1)  # T-JOINT twice, T-SPLIT
    assert rates[("grid", "grid-east-1-a-1")]["callbacks"] == 1


def test_a_callback_for_a_round_not_awaited_is_dead_lettered(tmp_path, hub):
    svc = _evaluate(tmp_path)
    before, _ = _upto(inputs(svc, hub.log, "T-HAPPY"), ev.CallbackSubmitted)
    svc.feed(before)
    wrong = record_of(callback_submitted("T-HAPPY", 3, satisfied=True))
    out = svc.feed([wrong])
    assert [r.topic for r in out] == [wrong.topic + ".dlq"] and out[0].value == wrong.value
    assert "not awaiting a callback for round 3" in out[0].header("dlq_error")
    assert svc.processed()[wrong.id] == "dead-lettered"
    assert _tickets(svc)["T-HAPPY"]["status"] == "awaiting-callback"


# ---------------------------------------------------------------------------------------------- delivery


def test_a_batch_redelivered_after_an_unconfirmed_publish_resends_the_same_records_and_changes_nothing(tmp_path, hub):
    check_redelivery_after_an_unconfirmed_publish(lambda: _evaluate(tmp_path), hub.log)


def test_a_batch_redelivered_after_it_was_confirmed_publishes_nothing_and_changes_nothing(tmp_path, hub):
    check_redelivery_after_a_confirmed_publish(lambda: _evaluate(tmp_path), hub.log)


def test_a_handled_ticket_seen_before_its_registration_is_parked_then_applied(tmp_path, hub):
    """The tickets topic may be read behind act's. The resident's callback cannot come before the registration:
    the callback operator answers the request evaluate sends once it has applied both."""
    records = inputs(_evaluate(tmp_path), hub.log, "T-HAPPY")
    tickets_topic = topic_for_event(ev.TicketRegistered.event_type)
    commands_topic = topic_for_event(ev.CallbackSubmitted.event_type)
    registration = [r for r in records if r.topic == tickets_topic]
    callback = [r for r in records if r.topic == commands_topic]
    later = [r for r in records if r.topic not in (tickets_topic, commands_topic)]
    assert callback and later
    in_order = _evaluate(tmp_path)
    expected = in_order.feed(registration + later + callback)
    svc = _evaluate(tmp_path)
    assert svc.feed(later) == []
    assert svc.parked(), "the ticket's events wait for its registration"
    out = svc.feed(registration)
    assert svc.parked() == [] and one(out, ev.CallbackRequested, "T-HAPPY")
    out += svc.feed(callback)
    assert by_key(out) == by_key(expected)
    assert {k: v for k, v in svc.snapshot().items() if k.startswith("evaluate")} == \
        {k: v for k, v in in_order.snapshot().items() if k.startswith("evaluate")}


def test_a_repeat_whose_merge_is_read_after_its_master_closed_is_closed_too(tmp_path, hub):
    """The tickets topic may be read behind the act and evaluate topics: the master's closing then comes
    before the repeat's registration. The repeat must not stay open for ever."""
    records = inputs(_evaluate(tmp_path), hub.log, "T-HAPPY", "T-REPEAT")
    repeat = [r for r in records if r.ticket_id == "T-REPEAT"]
    svc = _evaluate(tmp_path)
    out = svc.feed([r for r in records if r not in repeat])
    assert {e.ticket_id for e in of_type(out, ev.TicketClosed)} == {"T-HAPPY"}
    out = svc.feed(repeat)
    closed = one(out, ev.TicketClosed, "T-REPEAT")
    assert (closed.data.outcome, closed.data.master_ticket_id) == ("merged", "T-HAPPY")
    assert one(out, ev.CallbackRequested, "T-REPEAT").data.caller.masked_phone == "139****1111"  # called back too
    assert _tickets(svc)["T-REPEAT"]["status"] == "closed"
    assert svc.feed(repeat) == []  # and only once


def test_parked_events_of_several_topics_are_retried_in_the_order_they_happened(tmp_path, hub):
    """Offsets order records within one topic only: a ticket's parked events from several topics are
    retried by their time, so a callback parked beside the handling it answers is applied after it."""
    records = inputs(_evaluate(tmp_path), hub.log, "T-HAPPY")
    tickets_topic = topic_for_event(ev.TicketRegistered.event_type)
    registration = [r for r in records if r.topic == tickets_topic]
    rest = [r for r in records if r.topic != tickets_topic]
    in_order = _evaluate(tmp_path)
    expected = in_order.feed(registration + rest)
    svc = _evaluate(tmp_path)
    assert svc.feed(rest) == [] and svc.parked()
    out = svc.feed(registration)
    assert svc.parked() == [] and by_key(out) == by_key(expected)
