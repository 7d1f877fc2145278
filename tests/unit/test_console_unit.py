"""The unit and grid-worker inbox (/console/unit/) in front of the real unit bridge (its app, read model and
rules; the broker faked as in test_bridge.py): the console calls it over HTTP (an ASGI transport) with the
session's own token, so every rule tested here is the bridge's as the page shows it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from contracts import events as ev
from contracts import unit_reports
from domain.catalogue import load_catalogue
from services.common.auth import AuthSettings, Principal, Role, TokenVerifier
from services.console.app import create_app
from services.console.pages import unit as unit_pages
from services.console.session import SESSION_COOKIE
from services.console.settings import ConsoleSettings
from services.console.upstream import Upstream
from tests.harness.bridge import GRID, KEY, OTHER_GRID, BridgeHarness, assigned, consultation


@pytest.fixture
def bridge(tmp_path, monkeypatch) -> Iterator[BridgeHarness]:
    monkeypatch.setattr(unit_pages, "READ_BACK_WAIT_S", 0.3)  # the fake broker reads nothing back by itself
    monkeypatch.setenv("CITYOPS_AUTH_KEY", KEY.decode())
    yield BridgeHarness(tmp_path)


def console_for(bridge: BridgeHarness, who: Principal) -> TestClient:
    upstream = Upstream({"intake": "http://intake", "bridge": "http://bridge", "replay": "http://replay"}, 5.0,
                        transport=httpx.ASGITransport(app=bridge.app))
    # The hub key is the bridge's: the session's token is what the console calls the bridge with.
    app = create_app(ConsoleSettings(mode="demo"), upstream=upstream, verifier=TokenVerifier(AuthSettings(key=KEY.decode())))
    token = app.state.sessions.mint(who)
    client = TestClient(app, follow_redirects=False, base_url="http://testserver")
    client.cookies.set(SESSION_COOKIE, token, path="/console")
    client.headers["X-CSRF-Token"] = app.state.sessions.csrf(token)
    return client


def unit_user(unit: str, subject: str = "li.wei") -> Principal:
    return Principal(subject, frozenset({Role.unit}), unit=unit)


def grid_worker(*grids: str) -> Principal:
    return Principal("wang.grid", frozenset({Role.grid_worker}), grids=grids)


def post(client: TestClient, path: str, form: dict[str, Any] | None = None) -> httpx.Response:
    return client.post(path, data=form or {})


async def test_a_unit_signs_for_and_completes_its_task_from_the_pages(bridge) -> None:
    task = assigned("T-1", "water")
    await bridge.feed(task)
    page = console_for(bridge, unit_user("water", "zhang.san"))
    inbox = page.get("/console/unit/")
    assert inbox.status_code == 200 and task.data.task_id in inbox.text and task.data.ticket.text in inbox.text
    url = f"/console/unit/tasks/{task.data.task_id}"
    assert 'id="sign-for"' in page.get(url).text
    r = post(page, f"{url}/sign-for")
    assert r.status_code == 303 and r.headers["location"] == f"{url}?sent=sign-for"
    [signed] = bridge.sent
    assert isinstance(signed.data, ev.TaskSignedFor) and signed.data.handler == "zhang.san" and signed.data.unit == "water"
    await bridge.read_back()
    shown = page.get(r.headers["location"]).text
    assert 'data-status="signed-for"' in shown and 'id="sign-for"' not in shown and 'id="sent"' in shown
    r = post(page, f"{url}/complete", {"result": "valve replaced"})
    assert r.status_code == 303
    assert isinstance(bridge.sent[-1].data, ev.TaskCompleted) and bridge.sent[-1].data.result == "valve replaced"
    await bridge.read_back()
    assert 'data-status="completed"' in page.get(url).text and task.data.task_id not in page.get("/console/unit/").text


async def test_a_refused_report_shows_the_bridges_message_next_to_its_field_and_publishes_nothing(bridge) -> None:
    task = assigned("T-1", "water")
    await bridge.feed(task)
    page = console_for(bridge, unit_user("water"))
    url = f"/console/unit/tasks/{task.data.task_id}"
    empty = post(page, f"{url}/complete", {"result": "  "})
    assert empty.status_code == 422 and 'data-field="result"' in empty.text and 'class="field-error"' in empty.text
    ext = post(page, f"{url}/extension", {"amount": "many", "unit": "wd", "reason": "part ordered"})
    assert ext.status_code == 422 and 'data-field="amount"' in ext.text
    assert 'value="many"' in ext.text  # what was typed stays in the form
    final = assigned("T-2", "water", final=True)
    await bridge.feed(final)
    refused = post(page, f"/console/unit/tasks/{final.data.task_id}/return", {"reason": "not ours"})
    assert refused.status_code == 409 and "final" in refused.text
    assert bridge.published == []


async def test_another_units_task_page_and_its_actions_are_403_and_send_nothing(bridge) -> None:
    task = assigned("T-1", "water")
    await bridge.feed(task)
    power = console_for(bridge, unit_user("power"))
    url = f"/console/unit/tasks/{task.data.task_id}"
    assert power.get(url).status_code == 403
    assert post(power, f"{url}/complete", {"result": "forged"}).status_code == 403
    assert post(power, f"{url}/sign-for").status_code == 403
    assert task.data.task_id not in power.get("/console/unit/").text
    assert console_for(bridge, unit_user("water")).get(url).status_code == 200
    assert bridge.published == []


async def test_a_page_needs_a_unit_or_grid_worker_session_and_a_post_its_csrf_token(bridge) -> None:
    task = assigned("T-1", "water")
    await bridge.feed(task)
    operator = console_for(bridge, Principal("op", frozenset({Role.operator})))
    assert operator.get("/console/unit/").status_code == 403
    water = console_for(bridge, unit_user("water"))
    del water.headers["X-CSRF-Token"]
    assert post(water, f"/console/unit/tasks/{task.data.task_id}/sign-for").status_code == 403
    assert bridge.published == []


async def test_a_grid_worker_sees_and_acts_on_its_grids_tasks_only(bridge) -> None:
    mine, other = assigned("T-1", GRID), assigned("T-2", OTHER_GRID)
    await bridge.feed(mine, other)
    worker = console_for(bridge, grid_worker(GRID))
    inbox = worker.get("/console/unit/").text
    assert mine.data.task_id in inbox and other.data.task_id not in inbox
    assert worker.get(f"/console/unit/tasks/{other.data.task_id}").status_code == 403
    assert post(worker, f"/console/unit/tasks/{mine.data.task_id}/sign-for").status_code == 303
    assert bridge.sent[0].data.unit == GRID and bridge.sent[0].data.handler == "wang.grid"
    both = console_for(bridge, grid_worker(GRID, OTHER_GRID))
    assert 'id="unit-filter"' in both.get("/console/unit/").text
    only = both.get("/console/unit/", params={"unit": OTHER_GRID}).text
    assert other.data.task_id in only and mine.data.task_id not in only


async def test_the_clocks_show_the_bridges_working_time_left_and_the_joint_action(bridge) -> None:
    lead, co = assigned("T-1", "water"), assigned("T-1", "power", role=ev.Role.co)
    await bridge.feed(lead, co, unit_reports.complete(co, "power", "cable fixed"))
    page = console_for(bridge, unit_user("water"))
    api = bridge.client.get(f"/tasks/{lead.data.task_id}", headers=bridge.auth(Role.unit, unit="water")).json()
    html = page.get(f"/console/unit/tasks/{lead.data.task_id}").text
    lefts = re.findall(r'class="countdown" data-left="(-?\d+)" data-running="(\d)"', html)
    assert [int(s) for s, _ in lefts] == [c["left_s"] for c in api["clocks"]]
    assert all(run == "1" for _, run in lefts)  # Wednesday morning: the working-day clocks run
    joint = html[html.index('id="joint"'):]
    names = {u.id: u.name for u in load_catalogue().units}
    assert names["water"] in joint and names["power"] in joint and joint.count("✓") == 1  # power has completed, water not yet
    bridge.clock.advance(hours=14)  # 23:00 in Shanghai: the clocks stand still, and the page says so
    night = page.get(f"/console/unit/tasks/{lead.data.task_id}").text
    assert re.findall(r'data-running="(\d)"', night) and set(re.findall(r'data-running="(\d)"', night)) == {"0"}


async def test_a_party_gives_its_opinion_from_the_consultation_page_and_then_sees_it(bridge) -> None:
    asked = consultation("T-9", ("water", "power"))
    await bridge.feed(asked)
    page = console_for(bridge, unit_user("water"))
    assert asked.data.consultation_id in page.get("/console/unit/").text
    url = f"/console/unit/consultations/{asked.data.consultation_id}"
    assert 'id="opinion-form"' in page.get(url).text
    missing = post(page, f"{url}/opinion", {"comment": "no answer given"})
    assert missing.status_code == 422 and 'data-field="agrees"' in missing.text and bridge.published == []
    r = post(page, f"{url}/opinion", {"agrees": "no", "proposed_lead": "power", "comment": "their cable"})
    assert r.status_code == 303
    assert bridge.sent[0].data.agrees is False and bridge.sent[0].data.proposed_lead == "power"
    await bridge.read_back()
    shown = page.get(url).text
    assert 'id="my-opinion"' in shown and "their cable" in shown and 'id="opinion-form"' not in shown
    assert console_for(bridge, unit_user("housing")).get(url).status_code == 403


async def test_the_callers_number_is_on_no_unit_page(bridge) -> None:
    task, asked = assigned("T-1", "water"), consultation("T-9", ("water",))
    await bridge.feed(task, asked)
    masked = task.data.ticket.caller.masked_phone
    assert masked and masked in bridge.client.get(f"/tasks/{task.data.task_id}", headers=bridge.auth(Role.unit, unit="water")).text
    page = console_for(bridge, unit_user("water"))
    for path in ("/console/unit/", f"/console/unit/tasks/{task.data.task_id}", f"/console/unit/consultations/{asked.data.consultation_id}"):
        r = page.get(path)
        assert r.status_code == 200 and masked not in r.text, path
        assert not task.data.ticket.caller.pseudonym or task.data.ticket.caller.pseudonym not in r.text, path


@pytest.mark.parametrize("action, form, expected", [
    ("progress", {"note": "crew on site", "waiting_on_resident": "on"},
     lambda d: isinstance(d, ev.ProgressReported) and d.note == "crew on site" and d.waiting_on_resident),
    ("progress", {"note": "valve ordered"}, lambda d: isinstance(d, ev.ProgressReported) and not d.waiting_on_resident),
    ("extension", {"amount": "2", "unit": "wd", "reason": "part ordered"},
     lambda d: isinstance(d, ev.ExtensionRequested) and (d.extra.amount, d.extra.unit) == (2, "wd") and d.reason == "part ordered"),
    ("return", {"reason": "private estate", "suggested_unit": "housing"},
     lambda d: isinstance(d, ev.TaskReturned) and d.suggested_unit == "housing"),
    ("return", {"reason": "private estate", "suggested_unit": ""}, lambda d: isinstance(d, ev.TaskReturned) and d.suggested_unit is None),
])
async def test_each_form_sends_the_report_the_bridge_builds_from_its_fields(bridge, action, form, expected) -> None:
    task = assigned("T-1", "water")
    await bridge.feed(task)
    page = console_for(bridge, unit_user("water"))
    r = post(page, f"/console/unit/tasks/{task.data.task_id}/{action}", form)
    assert r.status_code == 303, r.text
    [sent] = bridge.sent
    assert expected(sent.data) and sent.data.unit == "water"


async def test_the_same_form_sent_twice_is_one_report_and_an_unknown_action_is_404(bridge) -> None:
    task = assigned("T-1", "water")
    await bridge.feed(task)
    page = console_for(bridge, unit_user("water"))
    form = {"note": "crew on site", "key": "a1b2c3"}  # the key the form was rendered with
    for _ in range(2):
        assert post(page, f"/console/unit/tasks/{task.data.task_id}/progress", form).status_code == 303
    assert len({e.id for e in bridge.sent}) == 1
    assert post(page, f"/console/unit/tasks/{task.data.task_id}/delete").status_code == 404


async def test_the_pages_speak_english_when_asked_and_a_bridge_that_does_not_answer_is_a_try_again_banner(bridge) -> None:
    task = assigned("T-1", "water")
    await bridge.feed(task)
    page = console_for(bridge, unit_user("water"))
    english = page.get(f"/console/unit/tasks/{task.data.task_id}", params={"lang": "en"}).text
    assert "Sign for" in english and "签收" not in english.split("<main", 1)[1]
    upstream = Upstream({"intake": "http://intake", "bridge": "http://bridge", "replay": "http://replay"}, 1.0,
                        transport=httpx.MockTransport(lambda request: httpx.Response(502)))
    app = create_app(ConsoleSettings(mode="demo"), upstream=upstream, verifier=TokenVerifier(AuthSettings(key=KEY.decode())))
    down = TestClient(app, follow_redirects=False)
    down.cookies.set(SESSION_COOKIE, app.state.sessions.mint(unit_user("water")), path="/console")
    assert down.get("/console/unit/").status_code == 503


async def test_a_grid_worker_resolves_on_the_spot_or_escalates_from_the_task_page_and_a_department_sees_neither(bridge) -> None:
    spot, up = assigned("T-SPOT", GRID), assigned("T-UP", GRID)
    await bridge.feed(spot, up)
    worker = console_for(bridge, grid_worker(GRID))
    page = worker.get(f"/console/unit/tasks/{spot.data.task_id}").text
    assert 'id="resolve-on-the-spot"' in page and 'id="escalate"' in page
    assert re.findall(r'<option value="(\w+)"[^>]*>[^<]*</option>', page.split('id="escalate-level"')[1].split("</select>")[0]) == [
        "community", "street", "district"]
    assert "求助" in page  # the help-requested reason, in Chinese by default
    r = post(worker, f"/console/unit/tasks/{spot.data.task_id}/resolve-on-the-spot", {"result": "moved the bikes"})
    assert r.status_code == 303 and r.headers["location"].endswith("?sent=resolve-on-the-spot")
    sent = bridge.sent[-1].data
    assert isinstance(sent, ev.TaskCompleted) and sent.resolved_on_the_spot and sent.unit == GRID
    r = post(worker, f"/console/unit/tasks/{up.data.task_id}/escalate",
             {"to_level": "community", "reason": "help-requested", "note": "residents refuse"})
    assert r.status_code == 303
    sent = bridge.sent[-1].data
    assert isinstance(sent, ev.TaskReturned) and (sent.escalate_to, sent.escalation_reason) == ("community", "help-requested")
    other = console_for(bridge, grid_worker(OTHER_GRID))
    assert post(other, f"/console/unit/tasks/{up.data.task_id}/escalate",
                {"to_level": "street", "reason": "help-requested", "note": "x"}).status_code == 403
    assert len(bridge.sent) == 2

    water = assigned("T-W", "water")
    await bridge.feed(water)
    department = console_for(bridge, unit_user("water"))
    page = department.get(f"/console/unit/tasks/{water.data.task_id}").text
    assert 'id="resolve-on-the-spot"' not in page and 'id="escalate"' not in page
    refused = post(department, f"/console/unit/tasks/{water.data.task_id}/resolve-on-the-spot", {"result": "x"})
    assert refused.status_code == 409 and "not led by a grid" in refused.text
    assert len(bridge.sent) == 2
