"""act's handlers through its real pipeline (tests/harness): dispatch, unit reports, extensions, returns,
completion, re-handling; redelivery and out-of-order arrival."""

from __future__ import annotations

import pytest

from contracts import events as ev
from contracts.topics import AREA_TASKS, own_task_topic, topic_for_event
from domain.catalogue import load_catalogue
from services.units import sdk
from tests.harness.pipeline import by_key, record_of, start
from tests.harness.redelivery import check_redelivery_after_a_confirmed_publish, check_redelivery_after_an_unconfirmed_publish
from tests.harness.workflow import fact_of, inputs, of_type, one, story_hub, supervisor_decision_submitted


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    return story_hub(tmp_path_factory.mktemp("act-stories"))


def _act(tmp_path, **settings):
    return start("act", tmp_path, **settings)


def _tasks(svc, ticket_id):
    return {t["task_id"]: t for t in svc.rows("act_tasks") if t["ticket_id"] == ticket_id}


def test_dispatch_sends_the_lead_and_each_co_unit_a_task_on_act_and_on_its_own_topic(tmp_path, hub):
    svc = _act(tmp_path)
    out = svc.feed(inputs(svc, hub.log, "T-JOINT")[:1])  # the TicketClassified
    assigned = of_type(out, ev.TaskAssigned)
    assert [(a.data.unit, a.data.role, a.data.round) for a in assigned] == [
        ("city-management", ev.Role.lead, 1), ("water", ev.Role.co, 1)]
    assert assigned[0].data.joint_with == ("water",) and assigned[1].data.joint_with == ("city-management",)
    assert [(r.topic, r.id) for r in out] == [
        (topic_for_event(ev.TaskAssigned.event_type), assigned[0].id), (own_task_topic("city-management"), assigned[0].id),
        (topic_for_event(ev.TaskAssigned.event_type), assigned[1].id), (own_task_topic("water"), assigned[1].id)]
    assert {t["unit"]: t["status"] for t in _tasks(svc, "T-JOINT").values()} == {"city-management": "assigned", "water": "assigned"}
    assert svc.rows("act_tickets")[0]["status"] == "dispatched"
    # A unit's copy is keyed by the unit id (act's own topic stays keyed by the ticket)
    assert [r.key for r in out] == [b"T-JOINT", b"city-management", b"T-JOINT", b"water"]


def test_reports_move_the_task_and_completion_of_every_unit_hands_the_ticket_over(tmp_path, hub):
    svc = _act(tmp_path)
    records = inputs(svc, hub.log, "T-JOINT")
    first_round = records[:records.index(next(r for r in records if r.type == ev.TicketReopened.event_type))]
    lead_done = [r for r in first_round if not (r.type == ev.TaskCompleted.event_type and b"water" in r.value)]
    out = svc.feed(lead_done)
    assert not of_type(out, ev.TicketHandled), "handled before the co-unit completed"
    assert {t["unit"]: t["status"] for t in _tasks(svc, "T-JOINT").values()} == {"city-management": "completed", "water": "in-progress"}
    out = svc.feed([r for r in first_round if r not in lead_done])
    handled = one(out, ev.TicketHandled, "T-JOINT")
    assert handled.data.units == ("city-management", "water") and handled.data.round == 1
    assert handled.data.results == ("fixed by city-management", "fixed by water")
    assert handled.data.category == "city-management.manhole-cover"
    assert svc.rows("act_tickets")[0]["status"] == "handled"


def test_a_reopened_ticket_is_dispatched_again_in_the_next_round(tmp_path, hub):
    svc = _act(tmp_path)
    out = svc.feed(inputs(svc, hub.log, "T-JOINT"))
    second = [a for a in of_type(out, ev.TaskAssigned) if a.data.round == 2]
    assert [(a.data.unit, a.data.task_id) for a in second] == [("city-management", "T-JOINT:city-management:2"),
                                                                ("water", "T-JOINT:water:2")]
    assert [h.data.round for h in of_type(out, ev.TicketHandled)] == [1, 2]
    ticket = svc.rows("act_tickets")[0]
    assert (ticket["round"], ticket["dispatches"], ticket["status"]) == (2, 2, "handled")


def test_an_agreed_plan_is_dispatched_with_its_deadline(tmp_path, hub):
    svc = _act(tmp_path)
    records = inputs(svc, hub.log, "T-CONSULT")
    classified = [r for r in records if r.type == ev.TicketClassified.event_type]
    assert svc.feed(classified) == []  # needs consultation: act waits for the plan
    plan = one(records, ev.PlanAgreed, "T-CONSULT")
    out = svc.feed([r for r in records if r.type == ev.PlanAgreed.event_type])
    assigned = of_type(out, ev.TaskAssigned)
    assert {a.data.unit for a in assigned} == {plan.data.routing.lead, *plan.data.routing.co_units}
    assert all(a.data.resolution_due == plan.data.deadline and not a.data.final for a in assigned)


def test_a_final_assignment_cannot_be_returned(tmp_path, hub):
    svc = _act(tmp_path)
    out = svc.feed(inputs(svc, hub.log, "T-DISPUTE"))
    assert all(a.data.final for a in of_type(out, ev.TaskAssigned))
    rejected = one(out, ev.ReturnRejected, "T-DISPUTE")
    assert rejected.data.unit == "street-west-2"
    assert (AREA_TASKS.name, b"street-west-2") in {(r.topic, r.key) for r in out if r.id == rejected.id}
    assert not of_type(out, ev.RerouteRequested)
    assert {t["unit"]: t["status"] for t in _tasks(svc, "T-DISPUTE").values()} == {"street-west-2": "assigned", "housing": "assigned"}


def test_a_return_withdraws_the_dispatch_and_asks_triage_to_reroute_without_the_unit(tmp_path, hub):
    svc = _act(tmp_path)
    records = inputs(svc, hub.log, "T-RETURN")
    upto = records.index(next(r for r in records if r.type == ev.TaskReturned.event_type)) + 1
    out = svc.feed(records[:upto])
    reroute = one(out, ev.RerouteRequested, "T-RETURN")
    assert reroute.data.excluded_units == ("city-management",) and reroute.data.returns == 1
    assert reroute.data.suggested_unit == "environment" and reroute.data.category == "city-management.illegal-dumping"
    assert {t["unit"]: t["status"] for t in _tasks(svc, "T-RETURN").values()} == {"city-management": "returned",
                                                                                  "environment": "withdrawn"}
    row = svc.rows("act_tickets")[0]
    assert (row["returns"], row["excluded"], row["status"]) == (1, "city-management", "rerouting")


def test_a_co_unit_that_returns_its_task_leaves_the_lead_to_finish(tmp_path, hub):
    svc = _act(tmp_path)
    records = inputs(svc, hub.log, "T-JOINT")
    classified = records[0]
    svc.feed([classified])
    tasks = [e for e in of_type(hub.log.records, ev.TaskAssigned, "T-JOINT") if e.data.round == 1]
    lead = next(t for t in tasks if t.data.role == ev.Role.lead)
    water = next(t for t in tasks if t.data.role == ev.Role.co)
    out = svc.feed([record_of(sdk.return_task(water, "water", "not a water pipe"))])
    assert out == []  # no reroute: the lead carries on
    out = svc.feed([record_of(sdk.complete(lead, "city-management", "cover replaced"))])
    handled = one(out, ev.TicketHandled, "T-JOINT")
    assert handled.data.units == ("city-management",)


def test_extensions_are_granted_up_to_the_allowance(tmp_path, hub):
    svc = _act(tmp_path, max_extensions=1)
    svc.feed(inputs(svc, hub.log, "T-RETURN")[:1])
    task = of_type(hub.log.records, ev.TaskAssigned, "T-RETURN")[0]
    first = sdk.request_extension(task, task.data.unit, 2, "wd", "parts on order")
    second = sdk.report(task, ev.ExtensionRequested(task_id=task.data.task_id, unit=task.data.unit, reason="again",
                                                     extra=ev.TimeLimitSpec(amount=1, unit="wd")), task.data.unit).model_copy(
        update={"id": "second-extension"})
    out = svc.feed([record_of(first), record_of(second)])
    decided = of_type(out, ev.ExtensionDecided)
    assert [d.data.approved for d in decided] == [True, False]
    assert {r.topic for r in out} == {topic_for_event(ev.ExtensionDecided.event_type), load_catalogue().task_topic_of(task.data.unit)}
    assert _tasks(svc, "T-RETURN")[task.data.task_id]["extensions"] == 1


def test_a_supervisor_decision_replaces_the_open_dispatch(tmp_path, hub):
    svc = _act(tmp_path)
    svc.feed(inputs(svc, hub.log, "T-JOINT")[:1])
    decided = fact_of(supervisor_decision_submitted("T-JOINT", "water", level="city"), hub.services["consult"].source)
    out = svc.feed([record_of(decided)])
    assert [(a.data.unit, a.data.final) for a in of_type(out, ev.TaskAssigned)] == [("water", True)]
    statuses = {t["task_id"]: t["status"] for t in _tasks(svc, "T-JOINT").values()}
    assert statuses == {"T-JOINT:city-management:1": "withdrawn", "T-JOINT:water:1": "withdrawn", "T-JOINT:water:2": "assigned"}


# ---------------------------------------------------------------------------------------------- delivery


def test_a_batch_redelivered_after_an_unconfirmed_publish_resends_the_same_records_and_changes_nothing(tmp_path, hub):
    svc, store, _ = check_redelivery_after_an_unconfirmed_publish(lambda: _act(tmp_path), hub.log)
    assert store["outbox"], "the outputs wait in the outbox until confirmed"
    assert svc.stats["duplicates"] == svc.stats["applied"]


def test_a_batch_redelivered_after_it_was_confirmed_publishes_nothing_and_changes_nothing(tmp_path, hub):
    check_redelivery_after_a_confirmed_publish(lambda: _act(tmp_path), hub.log)


def test_a_report_that_arrives_before_its_dispatch_is_parked_then_applied(tmp_path, hub):
    """Kafka cannot deliver this order (a unit reports on what act sent it); it checks that whatever comes
    before what it needs waits for it rather than being lost. The order Kafka can deliver is the next test's."""
    records = inputs(_act(tmp_path), hub.log, "T-HAPPY")
    classified, reports = records[0], [r for r in records if r.topic == topic_for_event(ev.TaskSignedFor.event_type)]
    in_order = _act(tmp_path)
    expected = in_order.feed([classified, *reports])
    svc = _act(tmp_path)
    assert svc.feed(reports) == []
    assert len(svc.parked()) == len(reports)
    out = svc.feed([classified])
    assert svc.parked() == []
    assert by_key(out) == by_key(expected)
    assert svc.snapshot()["act_tasks"] == in_order.snapshot()["act_tasks"]
    assert svc.snapshot()["act_tickets"] == in_order.snapshot()["act_tickets"]


def test_an_agreed_plan_read_before_the_classification_is_parked_then_dispatched(tmp_path, hub):
    """The consult topic may be read ahead of the triage topic: the plan waits for the ticket's classification."""
    records = inputs(_act(tmp_path), hub.log, "T-CONSULT")
    classified = next(r for r in records if r.type == ev.TicketClassified.event_type)
    plan = next(r for r in records if r.type == ev.PlanAgreed.event_type)
    in_order = _act(tmp_path)
    expected = in_order.feed([classified, plan])
    svc = _act(tmp_path)
    assert svc.feed([plan]) == [] and svc.parked() == [plan.id]
    out = svc.feed([classified])
    assert svc.parked() == [] and of_type(out, ev.TaskAssigned)
    assert by_key(out) == by_key(expected)
    assert svc.snapshot()["act_tasks"] == in_order.snapshot()["act_tasks"]


# ---------------------------------------------------------------------------------------------- who may report


def _forged(task, unit: str, kind: str):
    """A report of `kind` on `task` that claims to come from `unit` (anyone who can write to the unit-reports topic)."""
    return {
        "sign-for": lambda: sdk.sign_for(task, unit),
        "progress": lambda: sdk.progress(task, unit, "on our way"),
        "extension": lambda: sdk.request_extension(task, unit, 2, "wd", "parts on order"),
        "return": lambda: sdk.return_task(task, unit, "not ours", suggested_unit=unit),
        "complete": lambda: sdk.complete(task, unit, "done"),
    }[kind]()


def _assert_dead_lettered(svc, out, forged, *words):
    record = record_of(forged)
    assert [(r.topic, r.value) for r in out] == [(record.topic + ".dlq", record.value)]
    reason = out[0].header("dlq_error")
    assert reason is not None and reason.startswith("rejected: ") and all(w in reason for w in words), reason
    assert svc.processed()[forged.id] == "dead-lettered"


@pytest.mark.parametrize("kind", ["sign-for", "progress", "extension", "return", "complete"])
def test_a_report_from_a_unit_that_is_not_the_task_s_changes_nothing_and_is_dead_lettered(tmp_path, hub, kind):
    svc = _act(tmp_path)
    svc.feed(inputs(svc, hub.log, "T-JOINT")[:1])
    lead = next(t for t in of_type(hub.log.records, ev.TaskAssigned, "T-JOINT") if t.data.role == ev.Role.lead)
    before = svc.snapshot()
    forged = _forged(lead, "water", kind)  # the co-unit of the same ticket, reporting on the lead's task
    out = svc.feed([record_of(forged)])
    _assert_dead_lettered(svc, out, forged, lead.data.task_id, "water", "city-management")
    after = svc.snapshot()
    assert {t: after[t] for t in ("act_tasks", "act_tickets")} == {t: before[t] for t in ("act_tasks", "act_tickets")}
    out = svc.feed([record_of(_forged(lead, "city-management", kind))])  # the task's own unit: accepted
    assert not [r for r in out if r.topic.endswith(".dlq")]
    assert svc.snapshot()["act_tasks"] != before["act_tasks"]


def test_after_a_return_the_unit_that_returned_may_not_report_on_the_next_unit_s_task(tmp_path, hub):
    svc = _act(tmp_path)
    records = inputs(svc, hub.log, "T-RETURN")
    rerouted = [i for i, r in enumerate(records) if r.type == ev.TicketClassified.event_type][1]
    svc.feed(records[:rerouted + 1])
    tasks = {t.data.task_id: t for t in of_type(hub.log.records, ev.TaskAssigned, "T-RETURN")}
    new, old = tasks["T-RETURN:environment:2"], tasks["T-RETURN:city-management:1"]
    for forged, words in [(_forged(new, "city-management", "complete"), (new.data.task_id, "city-management", "environment")),
                          (_forged(old, "environment", "complete"), (old.data.task_id, "environment", "city-management"))]:
        _assert_dead_lettered(svc, svc.feed([record_of(forged)]), forged, *words)
    assert _tasks(svc, "T-RETURN")["T-RETURN:environment:2"]["status"] == "assigned"
    out = svc.feed(records[rerouted + 1:])  # environment's own reports
    assert one(out, ev.TicketHandled, "T-RETURN").data.units == ("environment",)


def test_a_forged_report_that_arrives_before_its_task_is_parked_then_dead_lettered(tmp_path, hub):
    """A report on a task act does not know yet waits for it (it may be on its way); once the task is known,
    a report from another unit is refused like any other."""
    svc = _act(tmp_path)
    classified = inputs(svc, hub.log, "T-HAPPY")[0]
    task = one(hub.log.records, ev.TaskAssigned, "T-HAPPY")
    forged = _forged(task, "water", "complete")
    assert svc.feed([record_of(forged)]) == [] and svc.parked() == [forged.id]
    out = svc.feed([classified])
    assert svc.parked() == [] and of_type(out, ev.TaskAssigned)
    _assert_dead_lettered(svc, [r for r in out if r.topic.endswith(".dlq")], forged, task.data.task_id, "water")
    assert _tasks(svc, "T-HAPPY")[task.data.task_id]["status"] == "assigned"
