"""discover's handlers through its real pipeline (tests/harness): registration with the caller masked,
repeats merged and split again, closed tickets taking no repeats, proactive life-event rules; redelivery.

discover parks nothing: a split, a category or a closing always concerns a ticket discover registered
itself before its registration was published (no record can name it earlier); one that names a ticket
discover does not know changes nothing."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.topics import topic_for_event
from tests.harness.pipeline import by_key, record_of, start
from tests.harness.redelivery import check_redelivery_after_a_confirmed_publish, check_redelivery_after_an_unconfirmed_publish
from tests.harness.workflow import T0, inputs, life_event, of_type, one, split_submitted, story_hub, submitted


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    return story_hub(tmp_path_factory.mktemp("discover-stories"))


def _discover(tmp_path, **settings):
    return start("discover", tmp_path, **settings)


def _known(svc):
    return {r["ticket_id"]: r for r in svc.rows("discover_tickets")}


GARBAGE = "垃圾没人收 garbage not collected for three days"


def test_a_submission_is_registered_with_the_caller_masked(tmp_path):
    svc = _discover(tmp_path)
    out = svc.feed([record_of(submitted("T-1", GARBAGE, phone="13812345678"))])
    registered = one(out, ev.TicketRegistered, "T-1")
    assert [r.topic for r in out] == [topic_for_event(ev.TicketRegistered.event_type)]
    caller = registered.data.ticket.caller
    assert caller.masked_phone == "138****5678" and len(caller.pseudonym) == 16 and not caller.anonymous
    assert b"13812345678" not in out[0].value and "张三".encode() not in out[0].value
    assert registered.data.master_ticket_id is None
    assert _known(svc)["T-1"]["place_key"] == "grid:grid-east-1-a-1"


def test_the_registration_carries_what_the_read_models_need_of_the_submission(tmp_path):
    # The projections no longer read the intake topic (issue 11): the registration is all they see.
    svc = _discover(tmp_path)
    record = submitted("T-1", GARBAGE, category="city-management.garbage", at=T0 - timedelta(hours=2))
    record = record.model_copy(update={"data": record.data.model_copy(update={
        "external_id": "open311:abc", "urgency": ev.Urgency.urgent})})
    ticket = one(svc.feed([record_of(record)]), ev.TicketRegistered, "T-1").data.ticket
    assert (ticket.channel, ticket.text, ticket.category, ticket.urgency, ticket.submitted_at, ticket.external_id) == (
        ev.Channel.phone, GARBAGE, "city-management.garbage", ev.Urgency.urgent, T0 - timedelta(hours=2), "open311:abc")
    assert ticket.location == record.data.location


def test_the_same_submission_again_is_not_registered_twice(tmp_path):
    svc = _discover(tmp_path)
    svc.feed([record_of(submitted("T-1", GARBAGE))])
    again = submitted("T-1", GARBAGE, name="retry")
    assert svc.feed([record_of(again)]) == []


def test_a_repeat_at_the_same_place_is_merged_into_the_open_ticket(tmp_path):
    svc = _discover(tmp_path)
    svc.feed([record_of(submitted("T-1", GARBAGE))])
    out = svc.feed([record_of(submitted("T-2", GARBAGE + " again", at=T0 + timedelta(hours=1)))])
    assert one(out, ev.TicketRegistered, "T-2").data.master_ticket_id == "T-1"
    merged = one(out, ev.TicketMerged, "T-2")
    assert merged.data.master_ticket_id == "T-1" and merged.data.similarity >= 0.55
    assert _known(svc)["T-2"]["master_ticket_id"] == "T-1"


@pytest.mark.parametrize("repeat", [
    submitted("T-2", GARBAGE, at=T0 + timedelta(hours=100)),                      # outside the 72 h window
    submitted("T-2", GARBAGE, grid="grid-west-1-a-1", at=T0 + timedelta(hours=1)),   # another place
    submitted("T-2", GARBAGE, category="city-management.street-cleaning", at=T0 + timedelta(hours=1)),  # another category
    submitted("T-2", "路灯不亮 street light out", at=T0 + timedelta(hours=1)),       # another problem
], ids=["late", "elsewhere", "other-category", "other-text"])
def test_what_is_not_a_repeat_is_registered_on_its_own(tmp_path, repeat):
    svc = _discover(tmp_path)
    svc.feed([record_of(submitted("T-1", GARBAGE, category="city-management.garbage-collection"))])
    out = svc.feed([record_of(repeat)])
    assert one(out, ev.TicketRegistered, "T-2").data.master_ticket_id is None and not of_type(out, ev.TicketMerged)


def test_a_closed_ticket_takes_no_more_repeats(tmp_path, hub):
    svc = _discover(tmp_path)
    svc.feed(inputs(svc, hub.log, "T-HAPPY", "T-REPEAT"))
    assert not _known(svc)["T-HAPPY"]["open"]
    out = svc.feed([record_of(submitted("T-3", GARBAGE, at=T0 + timedelta(hours=2)))])
    assert one(out, ev.TicketRegistered, "T-3").data.master_ticket_id is None


@pytest.mark.parametrize("together", [True, False], ids=["one-batch", "batch-each"])
def test_a_repeat_in_the_same_batch_as_its_master_is_merged_into_it(tmp_path, together):
    # A batch keeps its rows in memory until it ends: the ticket registered earlier in the batch is a candidate.
    svc = _discover(tmp_path)
    records = [record_of(submitted("T-1", GARBAGE)), record_of(submitted("T-2", GARBAGE + " again", at=T0 + timedelta(hours=1)))]
    out = svc.feed(records) if together else svc.feed_each(records)
    assert one(out, ev.TicketRegistered, "T-1").data.master_ticket_id is None
    assert one(out, ev.TicketMerged, "T-2").data.master_ticket_id == "T-1"
    assert {k: r["master_ticket_id"] for k, r in _known(svc).items()} == {"T-1": None, "T-2": "T-1"}


def test_a_repeat_fetched_before_its_master_from_another_partition_is_still_merged_into_it(tmp_path):
    # Complaints are keyed by ticket: a master and its repeat sent 5 ms apart sit on different partitions, and
    # one fetch hands them over partition by partition, the repeat's first. The earlier complaint is the master.
    svc = _discover(tmp_path)
    master = dataclasses.replace(record_of(submitted("T-1", GARBAGE)), partition=5, timestamp=1_000)
    repeat = dataclasses.replace(record_of(submitted("T-2", GARBAGE + " again")), partition=0, timestamp=1_005)
    out = svc.feed([repeat, master])
    assert one(out, ev.TicketRegistered, "T-1").data.master_ticket_id is None
    assert one(out, ev.TicketMerged, "T-2").data.master_ticket_id == "T-1"


def test_a_ticket_closed_earlier_in_the_same_batch_takes_no_repeat(tmp_path, hub):
    svc = _discover(tmp_path)
    svc.feed(inputs(svc, hub.log, "T-HAPPY")[:1])  # registered (stored, open)
    closing = [r for r in inputs(svc, hub.log, "T-HAPPY") if r.type == ev.TicketClosed.event_type]
    out = svc.feed([*closing, record_of(submitted("T-3", GARBAGE, at=T0 + timedelta(hours=2)))])
    assert one(out, ev.TicketRegistered, "T-3").data.master_ticket_id is None
    assert not _known(svc)["T-HAPPY"]["open"]


def test_a_stored_open_ticket_takes_a_repeat_of_a_later_batch(tmp_path, hub):
    # The counterpart of the test above: the same ticket, not closed, is the repeat's master.
    svc = _discover(tmp_path)
    svc.feed(inputs(svc, hub.log, "T-HAPPY")[:1])
    out = svc.feed([record_of(submitted("T-3", GARBAGE, at=T0 + timedelta(hours=2)))])
    assert one(out, ev.TicketRegistered, "T-3").data.master_ticket_id == "T-HAPPY"


def test_the_category_triage_chose_replaces_the_guess_for_repeat_detection(tmp_path, hub):
    svc = _discover(tmp_path)
    out = svc.feed(inputs(svc, hub.log, "T-HAPPY")[:1])
    # The classifier's guess is kept for comparing repeats, never published: triage alone decides the category.
    assert one(out, ev.TicketRegistered, "T-HAPPY").data.ticket.category is None
    assert _known(svc)["T-HAPPY"]["category"] == "city-management.garbage-collection"
    classified = [r for r in inputs(svc, hub.log, "T-HAPPY") if r.type == ev.TicketClassified.event_type]
    envelope = classified[0].envelope()
    other = envelope.model_copy(update={"data": envelope.data.model_copy(update={"category": "city-management.street-cleaning"})})
    svc.feed([record_of(other)])
    assert _known(svc)["T-HAPPY"]["category"] == "city-management.street-cleaning"


def test_a_split_undoes_the_merge_and_sends_the_ticket_on_its_own(tmp_path, hub):
    svc = _discover(tmp_path)
    records = inputs(svc, hub.log, "T-JOINT", "T-SPLIT")
    out = svc.feed(records)
    split = one(out, ev.TicketSplit, "T-SPLIT")
    assert split.data.former_master_ticket_id == "T-JOINT" and split.data.reason == "a different manhole"
    assert split.data.ticket.text.endswith("near the school") and split.data.ticket.caller.masked_phone == "138****5678"
    assert _known(svc)["T-SPLIT"]["master_ticket_id"] is None
    command = one(records, ev.SplitSubmitted, "T-SPLIT")
    requested = one(out, ev.SplitRequested, "T-SPLIT")  # discover writes the operator's request as its fact
    assert (requested.causation_id, split.causation_id) == (command.id, requested.id)
    again = svc.feed([record_of(split_submitted("T-SPLIT").model_copy(update={"id": "second-split"}))])
    assert [r.type for r in again] == [ev.SplitRequested.event_type]  # recorded, but nothing left to undo
    assert _known(svc)["T-SPLIT"]["master_ticket_id"] is None


def test_a_resident_turning_70_gets_a_proactive_ticket_and_69_or_71_does_not(tmp_path):
    svc = _discover(tmp_path)
    out = svc.feed([record_of(life_event("R-1", "birthday", age=70)), record_of(life_event("R-2", "birthday", age=69)),
                    record_of(life_event("R-3", "birthday", age=71)), record_of(life_event("R-4", "unemployed"))])
    (registered,) = of_type(out, ev.TicketRegistered)
    assert registered.ticket_id.startswith("P-")
    t = registered.data.ticket
    assert (t.channel, t.proactive_rule, t.category) == (ev.Channel.proactive, "old-age-allowance-70", "civil-affairs.elderly-services")
    assert t.caller.pseudonym == "R-1" and t.location.grid == "grid-east-1-a-1"
    assert registered.ticket_id in _known(svc)


def test_a_split_or_closing_of_a_ticket_discover_does_not_know_changes_nothing(tmp_path, hub):
    svc = _discover(tmp_path)
    foreign = [r for r in inputs(svc, hub.log, "T-HAPPY") if r.type != ev.TicketSubmitted.event_type]
    out = svc.feed(foreign + [record_of(split_submitted("T-UNKNOWN"))])
    assert [(r.type, r.ticket_id) for r in out] == [(ev.SplitRequested.event_type, "T-UNKNOWN")]  # the request only
    assert _known(svc) == {} and svc.parked() == [] and set(svc.processed().values()) == {"applied"}


def test_a_batch_redelivered_after_an_unconfirmed_publish_resends_the_same_records_and_changes_nothing(tmp_path, hub):
    check_redelivery_after_an_unconfirmed_publish(lambda: _discover(tmp_path), hub.log)


def test_a_batch_redelivered_after_it_was_confirmed_publishes_nothing_and_changes_nothing(tmp_path, hub):
    check_redelivery_after_a_confirmed_publish(lambda: _discover(tmp_path), hub.log)


def test_the_topics_interleaving_does_not_change_the_outcome(tmp_path, hub):
    """discover reads several topics, each in order but not in step with the others: reading every
    submission and life event first, then the splits, the categories and the closings (each still after
    its cause) gives what the log's interleaving gave."""
    records = inputs(_discover(tmp_path), hub.log)
    as_logged = _discover(tmp_path)
    expected = as_logged.feed(records)
    topics = [topic_for_event(t.event_type) for t in (ev.TicketSubmitted, ev.ResidentLifeEventRecorded, ev.SplitSubmitted,
                                                      ev.TicketClassified, ev.TicketClosed)]
    assert set(topics) >= {r.topic for r in records}
    topic_by_topic = _discover(tmp_path)
    out = topic_by_topic.feed([r for t in dict.fromkeys(topics) for r in records if r.topic == t])
    assert by_key(out) == by_key(expected)
    assert topic_by_topic.snapshot()["discover_tickets"] == as_logged.snapshot()["discover_tickets"]


def _legacy_submission(ticket_id: str, phone: str) -> Any:
    """An intake record written before intake sealed callers: the clear name and phone, no caller_ref."""
    data = ev.TicketSubmitted(channel=ev.Channel.phone, text=GARBAGE, caller=ev.Caller(name="张三", phone=phone),
                              location=ev.Location(grid="grid-east-1-a-1"), submitted_at=datetime(2025, 11, 3, 9, tzinfo=UTC))
    return Envelope.origin(data, source="/cityops/intake", ticket_id=ticket_id)


def test_a_record_from_before_sealing_still_registers_masked_with_a_keyed_pseudonym(tmp_path):
    svc = _discover(tmp_path, pseudonym_key="k" * 40)
    out = svc.feed([record_of(_legacy_submission("T-OLD", "138 1234 5678"))])
    caller = one(out, ev.TicketRegistered, "T-OLD").data.ticket.caller
    assert caller.masked_phone == "138****5678" and len(caller.pseudonym) == 16
    assert b"12345678" not in out[0].value and "张三".encode() not in out[0].value


def test_without_a_key_a_record_from_before_sealing_gets_no_pseudonym(tmp_path):
    out = _discover(tmp_path).feed([record_of(_legacy_submission("T-OLD", "13812345678"))])
    caller = one(out, ev.TicketRegistered, "T-OLD").data.ticket.caller
    assert caller.masked_phone == "138****5678" and caller.pseudonym is None
