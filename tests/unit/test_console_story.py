"""The story and replay pages of the console, on a fake replay API: who may open which page, which API each
role's page calls, what the pages show, and how an upload reaches the what-if."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.common.auth import Role
from services.console.pages.story import ledger_chart
from tests.harness.console import body_of, console_app, principal, recorded, signed_in

START = datetime(2026, 5, 6, 1, 0, tzinfo=UTC)
LEDGER = [
    {"holder": "hotline", "kind": "hotline", "clock": "hotline", "role": "intake+triage", "round": 0,
     "start": START.isoformat(), "end": (START + timedelta(minutes=30)).isoformat(),
     "to": (START + timedelta(minutes=30)).isoformat(), "open": False, "seconds": 1800, "ended_by": "dispatched"},
    {"holder": "water", "kind": "unit", "clock": "unit", "role": "lead", "round": 1,
     "start": (START + timedelta(minutes=30)).isoformat(), "end": None,
     "to": (START + timedelta(hours=5)).isoformat(), "open": True, "seconds": 16200, "ended_by": "open"},
]
EVENTS = [{"event_id": "e1", "time": START.isoformat(), "kind": "TicketRegistered", "unit": None, "round": None,
           "summary": "registered via phone: 路灯坏了"},
          {"event_id": "e2", "time": (START + timedelta(minutes=30)).isoformat(), "kind": "TaskAssigned", "unit": "water",
           "round": 1, "summary": "task to water as lead, round 1"}]
STORY = {"ticket_id": "T-9", "source": "store", "state": {"status": "dispatched", "category": "water.supply", "lead_unit": "water",
                                                           "co_units": "", "round": 1, "text": "路灯坏了"},
         "tasks": [], "events": EVENTS, "holders": LEDGER}
REPORT = {"run_id": "r", "catalogue_version": "2026.9-trial", "model": None, "tickets_considered": 40, "not_triaged": 0,
          "tickets_changed": 3, "changed": [{"ticket_id": "T-7", "category_before": "a", "category_after": "a",
                                             "lead_before": "city-management", "lead_after": "environment",
                                             "co_before": [], "co_after": [], "why": "catalogue"}],
          "units": [{"unit": "environment", "tickets_before": 5, "tickets_after": 8, "rank_before": 2, "rank_after": 3,
                     "score_before": 80.0, "score_after": 78.0}], "since": None, "until": None, "limit": 200}


def fake_replay(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path.endswith("/story"):
        return httpx.Response(200, json=STORY)
    if path.endswith("/timeline"):
        return httpx.Response(200, json={"ticket_id": "T-9", "events": EVENTS})
    if path == "/replay/what-if/models":
        return httpx.Response(200, json=["triage-default.model"])
    if path == "/replay/what-if":
        body = body_of(request)
        if body.get("catalogue") == "bad":
            return httpx.Response(422, json={"detail": "catalogue: the file must hold a mapping"})
        return httpx.Response(200, json=REPORT)
    if path == "/replay/as-of":
        return httpx.Response(200, json={"at": START.isoformat(), "source": "store", "ticket": None, "tasks": [], "queue": [],
                                         "rankings": [{"scope": "unit", "key": "water", "n": 30, "rank": 1, "score": 0.915}],
                                         "states": {"closed": 12, "dispatched": 3}})
    return httpx.Response(404, json={"detail": "no such route"})


@pytest.fixture
def calls():
    return []


@pytest.fixture
def app(calls):
    return console_app(recorded(calls, fake_replay))


def test_a_supervisor_sees_the_timeline_and_the_ledger_as_bars(app, calls):
    page = signed_in(app, principal(Role.supervisor)).get("/console/tickets/T-9")
    assert page.status_code == 200
    assert [c.url.path for c in calls] == ["/replay/tickets/T-9/story"]
    assert calls[0].headers["authorization"].startswith("Bearer ")
    html = page.text
    assert 'id="ledger-option"' in html and "echarts.min.js" in html and "路灯坏了" in html
    option = json.loads(html.split('id="ledger-option">')[1].split("</script>")[0])
    assert option["yAxis"]["data"][1].endswith("water") and option["series"][1]["data"][1]["value"] == 4.5  # hours


def test_an_operator_sees_the_timeline_only_through_the_route_operators_may_read(app, calls):
    page = signed_in(app, principal(Role.operator)).get("/console/tickets/T-9")
    assert page.status_code == 200
    assert [c.url.path for c in calls] == ["/replay/tickets/T-9/timeline"]
    assert 'id="ledger"' not in page.text and "registered via phone" in page.text


@pytest.mark.parametrize("who", [principal(Role.unit, unit="water"), principal(Role.grid_worker, grids=("grid-east-1-a-1",))])
def test_units_and_grid_workers_have_no_story_or_replay_page(app, calls, who):
    client = signed_in(app, who)
    for path in ("/console/tickets/T-9", "/console/replay/as-of", "/console/replay/what-if"):
        assert client.get(path).status_code == 403, path
    assert calls == []


def test_an_auditor_reads_the_as_of_view_but_runs_no_what_if(app, calls):
    client = signed_in(app, principal(Role.auditor))
    page = client.get("/console/replay/as-of", params={"time": "2026-05-06T09:00", "scope": "unit"})
    assert page.status_code == 200 and 'id="states-option"' in page.text and "91.5%" in page.text
    (call,) = calls
    assert call.url.params["time"] == "2026-05-06T09:00:00+08:00" and call.url.params["rankings"] == "true"
    assert client.get("/console/replay/what-if").status_code == 403


def test_as_of_a_ticket_asks_for_that_ticket(app, calls):
    client = signed_in(app, principal(Role.supervisor))
    assert client.get("/console/replay/as-of", params={"time": "2026-05-06T09:00", "ticket": "T-9"}).status_code == 200
    assert calls[0].url.params["ticket"] == "T-9" and "rankings" not in calls[0].url.params


def test_a_bad_time_is_a_422_naming_the_field(app, calls):
    page = signed_in(app, principal(Role.supervisor)).get("/console/replay/as-of", params={"time": "noon"})
    assert page.status_code == 422 and 'data-field="time"' in page.text and calls == []


def test_an_uploaded_catalogue_goes_to_the_what_if_and_the_table_links_each_ticket(app, calls):
    client = signed_in(app, principal(Role.supervisor))
    form = client.get("/console/replay/what-if")
    assert form.status_code == 200 and "triage-default.model" in form.text
    answer = client.post("/console/replay/what-if", files={"catalogue": ("trial.yaml", b"version: x\n", "text/yaml")},
                         data={"since": "2026-05-06T00:00", "limit": "50"}, headers={"HX-Request": "true"})
    assert answer.status_code == 200, answer.text
    sent = body_of(calls[-1])
    assert sent == {"catalogue": "version: x\n", "model": None, "since": "2026-05-06T00:00:00+08:00", "until": None, "limit": 50}
    assert '/console/tickets/T-7' in answer.text and "environment" in answer.text and "+3" in answer.text


def test_the_replay_api_s_422_reaches_the_page_naming_the_catalogue(app):
    client = signed_in(app, principal(Role.supervisor))
    answer = client.post("/console/replay/what-if", files={"catalogue": ("bad.yaml", b"bad", "text/yaml")})
    assert answer.status_code == 422 and "catalogue: the file must hold a mapping" in answer.text


def test_a_what_if_post_without_the_csrf_token_is_refused(app, calls):
    client = signed_in(app, principal(Role.supervisor))
    del client.headers["X-CSRF-Token"]
    assert client.post("/console/replay/what-if", data={"model": "x"}).status_code == 403 and calls == []


def test_the_chart_places_each_bar_where_the_one_before_ended():
    option = ledger_chart(LEDGER, lambda key: key)
    offsets, bars = option["series"][0]["data"], option["series"][1]["data"]
    assert offsets == [0, 0.5] and [b["value"] for b in bars] == [0.5, 4.5]
    assert [o + b["value"] for o, b in zip(offsets, bars)][:-1] == offsets[1:]  # each bar ends where the next starts
    assert option["xAxis"]["name"] == "story.hours"
    long = [dict(h, to=(START + timedelta(days=6)).isoformat()) if h["open"] else h for h in LEDGER]
    assert ledger_chart(long, lambda key: key)["xAxis"]["name"] == "story.days"
