"""The simulated units through their real pipeline (tests/harness): what they answer at once, what the tick
sends later; and the whole workflow in one process, simulated units, callbacks and supervisor included."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import httpx
import pytest

from contracts import events as ev
from contracts.topics import topic_for_event
from services.units.hotline import post_due
from tests.harness.pipeline import start
from tests.harness.workflow import GRID, T0, WORKFLOW, Hub, inputs, of_type, one, story_hub, submitted

QUICK = {"sign_delay_s": 0.0, "work_delay_s": 0.0, "callbacks": True, "supervisor": True}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    return story_hub(tmp_path_factory.mktemp("units-stories"))


def _units(tmp_path, **settings):
    return start("units", tmp_path, **{"p_return": 0.0, "p_extension": 0.0, **settings})


def test_a_unit_signs_for_its_task_at_once_and_the_tick_sends_the_rest_when_due(tmp_path, hub):
    svc = _units(tmp_path, units=["city-management"], sign_delay_s=0.0, work_delay_s=60.0)
    task = next(r for r in inputs(svc, hub.log, "T-HAPPY") if r.type == ev.TaskAssigned.event_type)
    handled_at = svc.clock.now
    out = svc.feed([task])
    signed = one(out, ev.TaskSignedFor)
    assert signed.data.task_id == task.envelope().data.task_id and out[0].topic == topic_for_event(signed.type)
    assert len(svc.rows("unit_pending_actions")) == 2  # progress, completion
    svc.clock.now = handled_at + timedelta(seconds=10)  # progress is due after 20 s, completion after 60 s
    assert svc.tick() == []
    svc.clock.now = handled_at + timedelta(seconds=60)
    later = svc.tick()
    assert [r.type for r in later] == [ev.ProgressReported.event_type, ev.TaskCompleted.event_type]
    assert svc.rows("unit_pending_actions") == [] and svc.tick() == []


def test_tasks_of_units_it_does_not_answer_for_are_left_alone(tmp_path, hub):
    svc = _units(tmp_path, units=["water"])
    assert svc.topics and all("water" in t for t in svc.topics)
    task = next(r for r in hub.log.records if r.type == ev.TaskAssigned.event_type and b"city-management" in r.value)
    assert svc.feed([task.at(svc.topics[0], 0)]) == []


def test_parties_answer_a_consultation_and_a_refused_return_is_completed(tmp_path, hub):
    svc = _units(tmp_path, sign_delay_s=0.0, work_delay_s=0.0, p_disagree=0.0)
    out = svc.feed(inputs(svc, hub.log, "T-CONSULT", "T-DISPUTE"))
    opinions = {(e.ticket_id, e.data.unit): e.data.agrees for e in of_type(out, ev.OpinionGiven)}
    assert opinions == {("T-CONSULT", "street-east-1"): True, ("T-CONSULT", "housing"): True,
                        ("T-DISPUTE", "street-west-2"): True, ("T-DISPUTE", "housing"): True}
    completed = [e for e in of_type(out, ev.TaskCompleted, "T-DISPUTE") if "refused" in e.data.result]
    assert [e.data.unit for e in completed] == ["street-west-2"]


def test_the_simulated_hotline_calls_back_and_the_simulated_supervisor_decides(tmp_path, hub):
    """They answer through intake's HTTP API, as people at the hotline do (services/units/hotline.py; what intake
    makes of the posts is tested in test_units_sim.py): nothing of theirs goes on Kafka from the units."""
    svc = _units(tmp_path, units=["hotline"], sign_delay_s=0.0, callbacks=True, supervisor=True, p_satisfied=1.0)
    records = inputs(svc, hub.log, "T-HAPPY", "T-DISPUTE")
    assert svc.feed(records) == []
    assert sorted((r["kind"], json.loads(r["cause_json"])["ticket_id"]) for r in svc.rows("unit_pending_actions")) == [
        ("callback", "T-HAPPY"), ("decision", "T-DISPUTE")]
    posted: list[tuple[str, dict, str]] = []

    def intake(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path == "/callbacks/batch":  # each item carries its own key
            posted.extend((request.url.path, item, item["idempotency_key"]) for item in body["items"])
            return httpx.Response(200, json={"results": [{"ticket_id": i["ticket_id"], "status": "recorded"} for i in body["items"]]})
        posted.append((request.url.path, body, request.headers["Idempotency-Key"]))
        return httpx.Response(202, json={})

    async def hotline_round() -> int:
        async with httpx.AsyncClient(transport=httpx.MockTransport(intake), base_url="http://intake") as client:
            return await post_due(client, svc.engine, svc.clock())

    assert asyncio.run(hotline_round()) == 1  # the callback at once; decisions wait 0.2 s
    (path, body, key), = posted
    callback = one(records, ev.CallbackRequested, "T-HAPPY")
    assert (path, key) == ("/callbacks/batch", f"{callback.id}:hotline:0")
    assert (body["ticket_id"], body["round"], body["resolved"], body["satisfaction"]) == ("T-HAPPY", 1, True, "satisfied")
    svc.clock.advance(seconds=1)
    assert svc.tick() == []  # the tick sends units' reports only
    assert asyncio.run(hotline_round()) == 1
    path, body, key = posted[-1]
    review = one(records, ev.SupervisorReviewRequested, "T-DISPUTE")
    assert (path, key) == ("/supervisor/decisions", f"{review.id}:supervisor:0")
    assert (body["ticket_id"], body["consultation_id"]) == ("T-DISPUTE", review.data.consultation_id)
    assert body["lead"] == "housing"  # the unit the refusing party pointed to
    assert svc.rows("unit_pending_actions") == [] and asyncio.run(hotline_round()) == 0


def test_the_whole_workflow_runs_to_closed_in_one_process(tmp_path):
    hub = Hub(tmp_path, services=(*WORKFLOW, "units"), units=QUICK)
    texts = [("垃圾没人收 garbage piling up", None), ("manhole cover gone", None),
             ("邻里纠纷 dispute over a shared wall", "housing.property-dispute"),
             ("工地夜间施工噪音 construction noise", "city-management.construction-noise"), ("有个事情 something odd", None)]
    grids = [GRID, "grid-west-2-b-1", "grid-east-2-a-2"]
    for i in range(10):
        text, category = texts[i % len(texts)]
        hub.add(submitted(f"T-{i}", f"{text} #{i}", category=category, grid=grids[i % 3], at=T0 + timedelta(hours=i)))
    status = {r["ticket_id"]: r["status"] for r in hub.services["evaluate"].rows("evaluate_tickets")}
    waiting = {r["ticket_id"] for r in hub.services["triage"].rows("triage_tickets") if r["status"] == "manual-triage"}
    assert waiting == {"T-4", "T-9"}  # nobody resolves the manual-triage queue here
    assert {t for t, s in status.items() if s != "closed"} == waiting
    recorded = of_type(hub.log.records, ev.CallbackRecorded)  # evaluate's facts of the hotline staff's posts to intake
    assert recorded and [e.causation_id for e in recorded] == [e.id for e in of_type(hub.log.records, ev.CallbackSubmitted)]
    assert hub.services["units"].rows("unit_pending_actions") == []
    assert all(svc.parked() == [] for svc in hub.services.values())
    assert all(set(svc.processed().values()) == {"applied"} for svc in hub.services.values())
