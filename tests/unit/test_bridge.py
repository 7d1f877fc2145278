"""The unit HTTP bridge: its rules, its read model (fed through its real pipeline) and its routes (broker faked)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from contracts import events as ev
from contracts import unit_reports
from domain.statuses import TaskStatus
from services.bridge import domain
from services.bridge.domain import Action
from services.common.auth import Principal, Role
from tests.harness.bridge import GRID, OTHER_GRID, T0, BridgeHarness, assigned, consultation, notice

# ---------------------------------------------------------------------------- the rules


def test_a_unit_user_acts_for_its_unit_and_a_grid_worker_for_its_grid_units_only() -> None:
    grids = {GRID, OTHER_GRID}
    assert domain.acting_units(Principal("u", frozenset({Role.unit}), unit="water"), grids) == {"water"}
    worker = Principal("g", frozenset({Role.grid_worker}), grids=(GRID, "water", "street-east-1"))
    assert domain.acting_units(worker, grids) == {GRID}  # a grids claim naming a department gives nothing
    assert domain.acting_units(Principal("o", frozenset({Role.operator}), unit="water"), grids) == frozenset()


@pytest.mark.parametrize("report, status, final, after", [
    (ev.TaskSignedFor(task_id="t", unit="u"), "assigned", False, "signed-for"),
    (ev.TaskSignedFor(task_id="t", unit="u"), "in-progress", False, "in-progress"),  # a late copy undoes nothing
    (ev.ProgressReported(task_id="t", unit="u", note="n", waiting_on_resident=True), "signed-for", False, "waiting-on-resident"),
    (ev.TaskCompleted(task_id="t", unit="u", result="r"), "in-progress", False, "completed"),
    (ev.TaskCompleted(task_id="t", unit="u", result="r"), "withdrawn", False, "withdrawn"),
    (ev.TaskReturned(task_id="t", unit="u", reason="r"), "assigned", False, "returned"),
    (ev.TaskReturned(task_id="t", unit="u", reason="r"), "assigned", True, "assigned"),  # act refuses a final task's return
])
def test_a_report_moves_an_open_task_as_act_does(report: ev.Event, status: str, final: bool, after: str) -> None:
    assert domain.status_after_report(report, status, final) == after


@pytest.mark.parametrize("action, status, final, pending, refused", [
    (Action.sign_for, "assigned", False, False, False),
    (Action.sign_for, "signed-for", False, False, True),
    (Action.complete, "completed", False, False, True),
    (Action.progress, "withdrawn", False, False, True),
    (Action.extension, "in-progress", False, True, True),
    (Action.extension, "in-progress", False, False, False),
    (Action.return_, "signed-for", True, False, True),
    (Action.return_, "signed-for", False, False, False),
])
def test_what_a_task_allows(action: Action, status: str, final: bool, pending: bool, refused: bool) -> None:
    assert (domain.refusal(action, status, final=final, extension_pending=pending) is not None) == refused


# ---------------------------------------------------------------------------- the read model and the routes

@pytest.fixture
def bridge(tmp_path) -> BridgeHarness:
    return BridgeHarness(tmp_path)


def _open(bridge: BridgeHarness, unit: str = "water", **params: str) -> list[dict]:
    r = bridge.client.get("/tasks", params=params, headers=bridge.auth(Role.unit, unit=unit))
    assert r.status_code == 200, r.text
    return r.json()


async def test_an_assigned_task_is_listed_for_its_unit_with_its_deadlines(bridge) -> None:
    task = assigned("T-1", "water")
    await bridge.feed(task)
    [listed] = _open(bridge)
    assert listed["task_id"] == task.data.task_id and listed["status"] == "assigned" and listed["role"] == "lead"
    assert listed["ticket"]["text"] == task.data.ticket.text and listed["ticket"]["caller"] == task.data.ticket.caller.model_dump()
    assert listed["sign_for_due"] > listed["assigned_at"] and listed["resolution_due"] >= listed["response_due"]
    assert _open(bridge, "power") == []


async def test_complete_publishes_the_sdk_report_for_the_task_unit_and_the_read_back_closes_it(bridge) -> None:
    task = assigned("T-1", "water")
    await bridge.feed(task)
    r = bridge.client.post(f"/tasks/{task.data.task_id}/complete", json={"result": "valve replaced"},
                           headers=bridge.auth(Role.unit, unit="water"))
    assert r.status_code == 202, r.text
    [sent] = bridge.sent
    assert bridge.published[0][0] == "cityops.unit-reports.v1"
    assert sent.id == r.json()["event_id"] == unit_reports.complete(task, "water", "valve replaced").id  # as the SDK builds it
    assert isinstance(sent.data, ev.TaskCompleted) and sent.data.unit == "water" and sent.causation_id == task.id
    assert len(_open(bridge)) == 1  # until the report is read back from the topic
    await bridge.read_back()
    assert _open(bridge) == []
    assert bridge.client.get(f"/tasks/{task.data.task_id}", headers=bridge.auth(Role.unit, unit="water")).json()["result"] == "valve replaced"
    again = bridge.client.post(f"/tasks/{task.data.task_id}/progress", json={"note": "late"}, headers=bridge.auth(Role.unit, unit="water"))
    assert again.status_code == 409 and "completed" in again.json()["detail"]


async def test_sign_for_records_the_tokens_subject_and_a_retry_is_the_same_report(bridge) -> None:
    task = assigned("T-1", "water")
    await bridge.feed(task)
    url, headers = f"/tasks/{task.data.task_id}/sign-for", {**bridge.auth(Role.unit, unit="water", subject="zhang.san"),
                                                             "Idempotency-Key": "k-1"}
    first = bridge.client.post(url, headers=headers)
    await bridge.read_back()
    retry = bridge.client.post(url, headers=headers)  # the task is signed for by now: the same request is still a 202
    assert first.status_code == retry.status_code == 202 and first.json()["event_id"] == retry.json()["event_id"]
    assert bridge.sent[0].data.handler == "zhang.san"
    other = bridge.client.post(url, headers=bridge.auth(Role.unit, unit="water"))  # a new sign-for: there is nothing to sign
    assert other.status_code == 409
    assert bridge.client.get(f"/tasks/{task.data.task_id}", headers=headers).json()["handler"] == "zhang.san"


async def test_several_progress_notes_are_several_reports(bridge) -> None:
    task = assigned("T-1", "water")
    await bridge.feed(task)
    headers = bridge.auth(Role.unit, unit="water")
    ids = {bridge.client.post(f"/tasks/{task.data.task_id}/progress", json={"note": n}, headers=headers).json()["event_id"]
           for n in ("crew sent", "crew on site")}
    assert len(ids) == 2
    await bridge.read_back()
    [listed] = _open(bridge)
    assert listed["status"] == "in-progress" and listed["last_note"] == "crew on site"


async def test_an_extension_waits_for_its_decision_and_an_approval_moves_the_deadline(bridge) -> None:
    task = assigned("T-1", "water")
    await bridge.feed(task)
    headers, url = bridge.auth(Role.unit, unit="water"), f"/tasks/{task.data.task_id}/extension"
    body = {"amount": 2, "unit": "wd", "reason": "part ordered"}
    assert bridge.client.post(url, json=body, headers=headers).status_code == 202
    await bridge.read_back()
    before = _open(bridge)[0]
    assert before["extension_pending"] and bridge.client.post(url, json=body, headers=headers).status_code == 409
    request = bridge.sent[0]
    await bridge.feed(notice(request, ev.ExtensionDecided(task_id=task.data.task_id, unit="water", approved=True,
                                                          extra=request.data.extra, reason="granted")))
    after = _open(bridge)[0]
    assert not after["extension_pending"] and after["extensions_granted"] == 1 and after["resolution_due"] > before["resolution_due"]


async def test_a_final_task_cannot_be_returned_and_a_return_names_a_known_unit(bridge) -> None:
    final, plain = assigned("T-1", "water", final=True), assigned("T-2", "water")
    await bridge.feed(final, plain)
    headers = bridge.auth(Role.unit, unit="water")
    r = bridge.client.post(f"/tasks/{final.data.task_id}/return", json={"reason": "not ours"}, headers=headers)
    assert r.status_code == 409 and "final" in r.json()["detail"]
    bad = bridge.client.post(f"/tasks/{plain.data.task_id}/return", json={"reason": "not ours", "suggested_unit": "nobody"},
                             headers=headers)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "suggested_unit"]
    ok = bridge.client.post(f"/tasks/{plain.data.task_id}/return", json={"reason": "not ours", "suggested_unit": "housing"},
                            headers=headers)
    assert ok.status_code == 202 and bridge.sent[0].data.suggested_unit == "housing"


@pytest.mark.parametrize("path, body, field", [
    ("extension", {"amount": 2, "unit": "weeks", "reason": "r"}, "unit"),
    ("extension", {"amount": 0, "unit": "wd", "reason": "r"}, "amount"),
    ("complete", {"result": ""}, "result"),
    ("complete", {"result": "done", "unit": "power"}, "unit"),  # the unit acting is the token's, never the body's
    ("progress", {}, "note"),
])
async def test_bad_input_is_422_naming_the_field_and_publishes_nothing(bridge, path, body, field) -> None:
    task = assigned("T-1", "water")
    await bridge.feed(task)
    r = bridge.client.post(f"/tasks/{task.data.task_id}/{path}", json=body, headers=bridge.auth(Role.unit, unit="water"))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == field, r.text
    assert bridge.published == []


async def test_a_report_from_another_unit_changes_nothing(bridge) -> None:
    task = assigned("T-1", "water")
    await bridge.feed(task)
    await bridge.feed(unit_reports.complete(task, "power", "forged"))
    assert _open(bridge)[0]["status"] == "assigned"


async def test_a_report_read_before_its_task_is_applied_once_the_task_comes(bridge) -> None:
    task = assigned("T-1", "water")
    await bridge.feed(unit_reports.sign_for(task, "water", "early"))
    assert _open(bridge) == []
    await bridge.feed(task)
    assert _open(bridge)[0]["status"] == "signed-for"


async def test_a_new_dispatch_withdraws_what_was_open_whatever_order_the_topics_are_read_in(bridge) -> None:
    old_lead, old_co = assigned("T-1", "water"), assigned("T-1", "power", role=ev.Role.co)
    new_lead = assigned("T-1", "power", at=T0 + timedelta(hours=1), cause="dispatch-2")
    await bridge.feed(old_lead, new_lead)  # power's topic read ahead of water's: its old co task comes last
    await bridge.feed(old_co)
    assert _open(bridge, "water") == []
    assert [t["task_id"] for t in _open(bridge, "power")] == [new_lead.data.task_id]


async def test_a_leads_return_withdraws_the_co_units_tasks_and_a_co_units_return_only_its_own(bridge) -> None:
    lead, co = assigned("T-1", "water"), assigned("T-1", "power", role=ev.Role.co)
    other_lead, other_co = assigned("T-2", "water"), assigned("T-2", "power", role=ev.Role.co)
    await bridge.feed(lead, co, other_lead, other_co)
    await bridge.feed(unit_reports.return_task(other_co, "power", "not ours"), unit_reports.return_task(lead, "water", "not ours"))
    assert [t["task_id"] for t in _open(bridge, "water")] == [other_lead.data.task_id]
    assert _open(bridge, "power") == []


async def test_a_grid_worker_acts_on_its_grids_tasks_and_filters_by_grid(bridge) -> None:
    mine, other, department = assigned("T-1", GRID), assigned("T-2", OTHER_GRID), assigned("T-3", "water")
    await bridge.feed(mine, other, department)
    worker = bridge.auth(Role.grid_worker, grids=(GRID, OTHER_GRID, "water"))
    listed = bridge.client.get("/tasks", headers=worker).json()
    assert {t["task_id"] for t in listed} == {mine.data.task_id, other.data.task_id}
    assert [t["task_id"] for t in bridge.client.get("/tasks", params={"unit": GRID}, headers=worker).json()] == [mine.data.task_id]
    assert bridge.client.get("/tasks", params={"unit": "water"}, headers=worker).status_code == 403
    assert bridge.client.post(f"/tasks/{department.data.task_id}/sign-for", headers=worker).status_code == 403
    assert bridge.client.post(f"/tasks/{mine.data.task_id}/sign-for", headers=worker).status_code == 202
    assert bridge.sent[0].data.unit == GRID


async def test_unknown_ids_are_404_and_another_units_are_403(bridge) -> None:
    task = assigned("T-1", "water")
    await bridge.feed(task)
    power = bridge.auth(Role.unit, unit="power")
    assert bridge.client.get("/tasks/T-nope", headers=power).status_code == 404
    assert bridge.client.get(f"/tasks/{task.data.task_id}", headers=power).status_code == 403
    assert bridge.client.post(f"/tasks/{task.data.task_id}/complete", json={"result": "x"}, headers=power).status_code == 403
    assert bridge.published == []


# ---------------------------------------------------------------------------- consultations

async def test_a_party_sees_the_consultation_answers_once_and_it_closes_with_the_dispatch(bridge) -> None:
    asked = consultation("T-9", ("water", "power"))
    await bridge.feed(asked)
    water, housing = bridge.auth(Role.unit, unit="water"), bridge.auth(Role.unit, unit="housing")
    [listed] = bridge.client.get("/consultations", headers=water).json()
    assert listed["consultation_id"] == asked.data.consultation_id and {p["unit"] for p in listed["parties"]} == {"water", "power"}
    assert bridge.client.get(f"/consultations/{asked.data.consultation_id}", headers=housing).status_code == 403
    url = f"/consultations/{asked.data.consultation_id}/opinion"
    r = bridge.client.post(url, json={"agrees": False, "proposed_lead": "power", "comment": "their pipes"}, headers=water)
    assert r.status_code == 202 and bridge.sent[0].id == unit_reports.opinion(asked, "water", False, "power", "their pipes").id
    await bridge.read_back()
    assert bridge.client.get("/consultations", headers=water).json() == []
    assert bridge.client.post(url, json={"agrees": True}, headers=water).status_code == 409
    assert len(bridge.client.get("/consultations", headers=bridge.auth(Role.unit, unit="power")).json()) == 1
    await bridge.feed(assigned("T-9", "power", at=T0 + timedelta(hours=1)))
    assert bridge.client.get("/consultations", headers=bridge.auth(Role.unit, unit="power")).json() == []


async def test_an_opinion_from_a_non_party_changes_nothing_and_one_for_several_grids_names_its_unit(bridge) -> None:
    asked = consultation("T-9", (GRID, OTHER_GRID))
    await bridge.feed(asked)
    await bridge.feed(unit_reports.opinion(asked, "water", True))
    worker = bridge.auth(Role.grid_worker, grids=(GRID, OTHER_GRID))
    url = f"/consultations/{asked.data.consultation_id}/opinion"
    r = bridge.client.post(url, json={"agrees": True}, headers=worker)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "unit"]
    assert bridge.client.post(url, json={"agrees": True, "unit": OTHER_GRID}, headers=worker).status_code == 202
    assert bridge.sent[0].data.unit == OTHER_GRID


async def test_an_overdue_consultation_takes_no_more_opinions(bridge) -> None:
    asked = consultation("T-9", ("water",), due=timedelta(minutes=10))  # the clock is at T0 + 30 min
    await bridge.feed(asked)
    water = bridge.auth(Role.unit, unit="water")
    assert bridge.client.get("/consultations", headers=water).json() == []
    r = bridge.client.post(f"/consultations/{asked.data.consultation_id}/opinion", json={"agrees": True}, headers=water)
    assert r.status_code == 409 and "due" in r.json()["detail"]


def test_the_task_states_the_bridge_lists_are_the_open_ones() -> None:
    assert domain.OPEN_STATES == {TaskStatus.assigned, TaskStatus.signed_for, TaskStatus.in_progress, TaskStatus.waiting_on_resident}


# ---------------------------------------------------------------------------- countdowns, joint actions, my opinion

def _clocks(task: dict) -> dict[str, dict]:
    return {c["clock"]: c for c in task["clocks"]}


async def test_each_task_carries_its_working_time_left_which_stands_still_at_night(bridge) -> None:
    task = assigned("T-1", "water")  # limits in working days, assigned Wednesday 09:00 Shanghai
    await bridge.feed(task)
    morning = _clocks(_open(bridge)[0])
    assert set(morning) == {"sign_for", "response", "resolution"}
    assert all(c["running"] and not c["stopped"] and c["left_s"] > 0 and c["unit"] == "wd" for c in morning.values())
    bridge.clock.advance(hours=1)
    later = _clocks(_open(bridge)[0])
    assert morning["resolution"]["left_s"] - later["resolution"]["left_s"] == 3600  # an hour of working time went by
    bridge.clock.now = T0 + timedelta(hours=14)  # 23:00 in Shanghai
    night = _open(bridge)[0]
    bridge.clock.now = T0 + timedelta(hours=17)  # 02:00 the next day
    small_hours = _open(bridge)[0]
    assert _clocks(night)["resolution"]["left_s"] == _clocks(small_hours)["resolution"]["left_s"] > 0
    assert not _clocks(night)["resolution"]["running"] and night["as_of"] != small_hours["as_of"]
    bridge.clock.now = T0 + timedelta(days=30)
    overdue = _clocks(_open(bridge)[0])
    assert overdue["resolution"]["left_s"] < 0 and overdue["resolution"]["due"] == _open(bridge)[0]["resolution_due"]


async def test_a_signed_for_task_stops_its_sign_for_clock_and_waiting_on_the_resident_stops_the_countdown(bridge) -> None:
    task = assigned("T-1", "water")
    await bridge.feed(task, unit_reports.sign_for(task, "water", "li.wei"))
    clocks = _clocks(_open(bridge)[0])
    assert clocks["sign_for"]["stopped"] and clocks["sign_for"]["left_s"] is None and not clocks["sign_for"]["running"]
    assert clocks["response"]["running"]
    await bridge.feed(unit_reports.progress(task, "water", "asked the resident for a time", True, key="w"))
    clocks = _clocks(_open(bridge)[0])
    assert clocks["response"]["stopped"] and not clocks["resolution"]["stopped"]
    assert clocks["resolution"]["left_s"] > 0 and not clocks["resolution"]["running"]


def test_a_natural_time_clock_runs_at_night_and_a_working_time_one_does_not() -> None:
    from services.bridge.settings import BridgeSettings

    calendar = BridgeSettings(kafka_bootstrap="127.0.0.1:1").work_calendar()
    night = T0 + timedelta(hours=14)
    assert domain.ticking_now(calendar, "h", night) and not domain.ticking_now(calendar, "wh", night)
    assert domain.ticking_now(calendar, "wh", T0 + timedelta(minutes=30))
    due = night + timedelta(hours=2)
    assert domain.time_left(calendar, due, "h", night) == timedelta(hours=2)
    assert domain.time_left(calendar, due, "wh", night) == timedelta(0)
    assert domain.time_left(calendar, night, "h", due) == -timedelta(hours=2)
    assert domain.time_left(calendar, None, "h", night) is None


async def test_a_joint_action_shows_its_lead_its_co_units_and_who_has_reported_done(bridge) -> None:
    lead, co = assigned("T-1", "water"), assigned("T-1", "power", role=ev.Role.co)
    alone = assigned("T-2", "water")
    await bridge.feed(lead, co, alone)
    joint = {t["task_id"]: t["joint"] for t in _open(bridge, "water")}
    assert joint[alone.data.task_id] is None
    assert joint[lead.data.task_id] == {"lead": "water", "co_units": ["power"], "done": []}
    await bridge.feed(unit_reports.complete(co, "power", "cable fixed"))
    seen_by_lead = bridge.client.get(f"/tasks/{lead.data.task_id}", headers=bridge.auth(Role.unit, unit="water")).json()
    seen_by_co = bridge.client.get(f"/tasks/{co.data.task_id}", headers=bridge.auth(Role.unit, unit="power")).json()
    assert seen_by_lead["joint"] == seen_by_co["joint"] == {"lead": "water", "co_units": ["power"], "done": ["power"]}


async def test_a_party_sees_its_own_opinion_with_answered_true_and_not_the_other_partys(bridge) -> None:
    asked = consultation("T-9", ("water", "power"))
    await bridge.feed(asked, unit_reports.opinion(asked, "power", True, None, "fine by us"))
    water = bridge.auth(Role.unit, unit="water")
    url = f"/consultations/{asked.data.consultation_id}/opinion"
    assert bridge.client.post(url, json={"agrees": False, "proposed_lead": "power", "comment": "their cable"}, headers=water).status_code == 202
    await bridge.read_back()
    assert bridge.client.get("/consultations", headers=water).json() == []
    [mine] = bridge.client.get("/consultations", params={"answered": "true"}, headers=water).json()
    assert mine["mine"] == [{"unit": "water", "answered": True, "agrees": False, "proposed_lead": "power", "comment": "their cable"}]
    assert {p["unit"]: p["answered"] for p in mine["parties"]} == {"water": True, "power": True}
    one = bridge.client.get(f"/consultations/{asked.data.consultation_id}", headers=bridge.auth(Role.unit, unit="power")).json()
    assert [m["comment"] for m in one["mine"]] == ["fine by us"]
    await bridge.feed(assigned("T-9", "power", at=T0 + timedelta(hours=1)))  # settled: it leaves the list
    assert bridge.client.get("/consultations", params={"answered": "true"}, headers=water).json() == []
