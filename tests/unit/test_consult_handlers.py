"""consult's handlers through its real pipeline (tests/harness): convene, opinions, plan agreed, disagreement
and missing opinions -> supervisor review, decision, ping-pong arbitration; redelivery and out-of-order arrival."""

from __future__ import annotations

from datetime import timedelta

import pytest

from contracts import events as ev
from contracts.topics import AREA_TASKS, own_task_topic, topic_for_event
from services.units import sdk
from tests.harness.pipeline import by_key, record_of, start
from tests.harness.redelivery import check_redelivery_after_a_confirmed_publish, check_redelivery_after_an_unconfirmed_publish
from tests.harness.workflow import inputs, of_type, one, story_hub


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    return story_hub(tmp_path_factory.mktemp("consult-stories"))


def _consult(tmp_path, **settings):
    return start("consult", tmp_path, **settings)


def _classified(hub, ticket_id):
    return [r for r in hub.log.records if r.ticket_id == ticket_id and r.type == ev.TicketClassified.event_type]


def _consultations(svc, ticket_id):
    return [c for c in svc.rows("consultations") if c["ticket_id"] == ticket_id]


def test_a_category_without_consultation_is_only_remembered(tmp_path, hub):
    svc = _consult(tmp_path)
    assert svc.feed(_classified(hub, "T-HAPPY")) == []
    assert [r["ticket_id"] for r in svc.rows("consult_routed_tickets")] == ["T-HAPPY"]
    assert svc.rows("consultations") == []


def test_a_category_that_needs_consultation_convenes_every_party_on_its_own_topic(tmp_path, hub):
    svc = _consult(tmp_path)
    out = svc.feed(_classified(hub, "T-CONSULT"))
    request = one(out, ev.ConsultationRequested, "T-CONSULT")
    assert request.data.parties == ("street-east-1", "housing")
    assert request.data.consultation_id == f"C-{request.causation_id[:8]}"
    cause = next(r for r in _classified(hub, "T-CONSULT")).envelope()
    assert request.data.opinions_due == cause.time + timedelta(hours=4)
    assert {r.topic for r in out} == {topic_for_event(ev.ConsultationRequested.event_type)}
    forwarded = start("act", tmp_path).feed(out)  # act, the one writer of the units' task topics, passes it on
    assert sorted((r.topic, r.id) for r in forwarded) == sorted(
        [(AREA_TASKS.name, request.id), (own_task_topic("housing"), request.id)])
    assert all(r.value == out[0].value for r in forwarded)
    (row,) = _consultations(svc, "T-CONSULT")
    assert (row["status"], row["parties"]) == ("open", "street-east-1,housing")


def test_the_consultation_says_why_triage_convened_it(tmp_path, hub):
    """T-CONSULT's text ("楼上漏水物业不管 property dispute over a leak") names a party and a dispute: triage's
    reason, from the text, is the consultation's reason (not a generic "the catalogue requires consultation")."""
    classified = next(r for r in _classified(hub, "T-CONSULT")).envelope().data
    assert classified.consultation_reason and "dispute" in classified.consultation_reason
    request = one(_consult(tmp_path).feed(_classified(hub, "T-CONSULT")), ev.ConsultationRequested, "T-CONSULT")
    assert request.data.reason == classified.consultation_reason


def test_the_plan_is_agreed_when_every_party_accepts(tmp_path, hub):
    svc = _consult(tmp_path)
    records = inputs(svc, hub.log, "T-CONSULT")
    opinions = [r for r in records if r.type == ev.OpinionGiven.event_type]
    svc.feed([r for r in records if r.type == ev.TicketClassified.event_type])
    assert svc.feed(opinions[:1]) == []  # one of two: still waiting
    out = svc.feed(opinions[1:])
    plan = one(out, ev.PlanAgreed, "T-CONSULT")
    assert plan.data.routing.lead == "street-east-1" and plan.data.routing.co_units == ("housing",)
    assert plan.data.deadline > plan.time - timedelta(minutes=1)
    assert _consultations(svc, "T-CONSULT")[0]["status"] == "agreed"
    assert svc.feed([record_of(sdk.opinion(of_type(hub.log.records, ev.ConsultationRequested, "T-CONSULT")[0], "housing", False)
                                .model_copy(update={"id": "late"}))]) == []  # late: changes nothing


def test_a_refusal_asks_a_supervisor_and_the_decision_closes_the_consultation(tmp_path, hub):
    svc = _consult(tmp_path)
    records = inputs(svc, hub.log, "T-DISPUTE")
    upto = records.index(next(r for r in records if r.type == ev.SupervisorDecisionSubmitted.event_type))
    out = svc.feed(records[:upto])
    review = one(out, ev.SupervisorReviewRequested, "T-DISPUTE")
    assert "housing did not accept" in review.data.reason
    assert ("housing", False, "housing") in review.data.opinions
    assert _consultations(svc, "T-DISPUTE")[0]["status"] == "supervisor-review"
    out = svc.feed(records[upto:upto + 1])  # the supervisor's decision, as intake received it
    decided = one(out, ev.SupervisorDecided, "T-DISPUTE")  # consult writes it as its fact, for act
    assert [r.topic for r in out] == [topic_for_event(ev.SupervisorDecided.event_type)]
    assert (decided.causation_id, decided.data.consultation_id) == (records[upto].id, review.data.consultation_id)
    assert (decided.data.routing.lead, decided.data.routing.co_units) == ("street-west-2", ("housing",))
    assert _consultations(svc, "T-DISPUTE")[0]["status"] == "decided"


def test_opinions_not_given_in_time_go_to_a_supervisor_at_the_next_tick(tmp_path, hub):
    svc = _consult(tmp_path, opinion_window_s=3600)
    out = svc.feed(_classified(hub, "T-CONSULT"))
    request = one(out, ev.ConsultationRequested)
    svc.clock.now = request.data.opinions_due - timedelta(seconds=1)
    assert svc.tick() == []
    svc.clock.now = request.data.opinions_due
    ticked = svc.tick()
    review = one(ticked, ev.SupervisorReviewRequested, "T-CONSULT")
    assert review.data.reason == "no opinion in time from street-east-1, housing"
    assert review.causation_id == f"timeout-{request.data.consultation_id}"
    assert _consultations(svc, "T-CONSULT")[0]["status"] == "supervisor-review"
    assert svc.tick() == []


def test_a_ping_pong_escalation_asks_a_supervisor_to_arbitrate_from_the_last_routing(tmp_path, hub):
    svc = _consult(tmp_path)
    records = inputs(svc, hub.log, "T-PINGPONG")
    escalation = next(r for r in records if r.type == ev.TicketEscalated.event_type)
    out = svc.feed(records[:records.index(escalation) + 1])
    review = one(out, ev.SupervisorReviewRequested, "T-PINGPONG")
    assert review.data.consultation_id.startswith("A-") and review.data.reason.startswith("ping-pong")
    last_routing = of_type(records[:records.index(escalation)], ev.TicketClassified)[-1].data.routing
    assert review.data.proposed == last_routing
    assert svc.rows("consult_routed_tickets")[0]["arbitrations"] == 1


@pytest.mark.parametrize("together", [True, False], ids=["one-batch", "batch-each"])
def test_convening_again_supersedes_the_open_consultation_even_one_convened_earlier_in_the_batch(tmp_path, hub, together):
    # A batch keeps its rows in memory until it ends: "the ticket's open consultations" must include its own.
    svc = _consult(tmp_path)
    first = _classified(hub, "T-CONSULT")[0]
    again = record_of(first.envelope().model_copy(update={"id": "again-0001"}), topic=first.topic)
    out = svc.feed([first, again]) if together else svc.feed_each([first, again])
    earlier, later = (r.data.consultation_id for r in of_type(out, ev.ConsultationRequested, "T-CONSULT"))
    assert {c["consultation_id"]: c["status"] for c in _consultations(svc, "T-CONSULT")} == {
        earlier: "superseded", later: "open"}


# ---------------------------------------------------------------------------------------------- delivery


def test_a_batch_redelivered_after_an_unconfirmed_publish_resends_the_same_records_and_changes_nothing(tmp_path, hub):
    check_redelivery_after_an_unconfirmed_publish(lambda: _consult(tmp_path), hub.log)


def test_a_batch_redelivered_after_it_was_confirmed_publishes_nothing_and_changes_nothing(tmp_path, hub):
    check_redelivery_after_a_confirmed_publish(lambda: _consult(tmp_path), hub.log)


def test_an_escalation_seen_before_the_ticket_was_routed_is_parked_then_applied(tmp_path, hub):
    records = inputs(_consult(tmp_path), hub.log, "T-PINGPONG")
    escalation = next(r for r in records if r.type == ev.TicketEscalated.event_type)
    routed = _classified(hub, "T-PINGPONG")[0]
    in_order = _consult(tmp_path)
    expected = in_order.feed([routed, escalation])
    svc = _consult(tmp_path)
    assert svc.feed([escalation]) == [] and svc.parked() == [escalation.id]
    out = svc.feed([routed])
    assert svc.parked() == []
    assert one(out, ev.SupervisorReviewRequested).causation_id == escalation.id
    assert by_key(out) == by_key(expected)
    assert svc.snapshot()["consult_routed_tickets"] == in_order.snapshot()["consult_routed_tickets"]


# ---------------------------------------------------------------------------------------------- who may give an opinion


def test_an_opinion_from_a_unit_that_is_not_a_party_changes_nothing_and_is_dead_lettered(tmp_path, hub):
    svc = _consult(tmp_path)
    records = inputs(svc, hub.log, "T-CONSULT")
    svc.feed([r for r in records if r.type == ev.TicketClassified.event_type])
    request = one(hub.log.records, ev.ConsultationRequested, "T-CONSULT")
    before = svc.snapshot()["consultations"]
    # A refusal from a stranger would otherwise send the plan to a supervisor at once.
    forged = sdk.opinion(request, "water", False, proposed_lead="water")
    out = svc.feed([record_of(forged)])
    assert [(r.topic, r.value) for r in out] == [(record_of(forged).topic + ".dlq", record_of(forged).value)]
    reason = out[0].header("dlq_error")
    assert reason is not None and reason.startswith("rejected: ")
    assert all(w in reason for w in ("water", request.data.consultation_id, "street-east-1", "housing")), reason
    assert svc.processed()[forged.id] == "dead-lettered"
    assert svc.snapshot()["consultations"] == before
    out = svc.feed([r for r in records if r.type == ev.OpinionGiven.event_type])  # the parties' own: agreed
    assert one(out, ev.PlanAgreed, "T-CONSULT").data.routing.lead == "street-east-1"
    late = sdk.opinion(request, "water", True).model_copy(update={"id": "late-stranger"})
    assert [r.topic for r in svc.feed([record_of(late)])] == [record_of(late).topic + ".dlq"]  # closed or not
