"""The supervisors' board pages, on a fake replay API and intake (services/console/pages/supervisor.py)."""

from __future__ import annotations

import json

import httpx
import pytest

from services.common.auth import Role
from tests.harness.console import body_of, console_app, principal, recorded, signed_in

STATES = {"states": {"dispatched": 7, "closed": 40, "supervisor-review": 1}, "total": 48, "open": 8, "overdue": 3}
ALERTS = {"items": [{"event_id": "e-9", "ticket_id": "T-9", "time": "2026-01-05T08:30:00+00:00", "kind": "SlaBreached",
                     "unit": "city-management", "round": 1, "summary": "resolution clock ran out", "grid": "grid-east-1-a-1",
                     "district": "district-east", "status": "in-progress"}],
          "next": "2026-01-05T08:30:00+00:00|e-9"}
OLDER = {"items": [{"event_id": "e-1", "ticket_id": "T-1", "time": "2026-01-04T08:30:00+00:00", "kind": "SlaReminderSent",
                    "unit": "water", "round": 1, "summary": "75% of sign-for", "grid": None, "district": None, "status": "dispatched"}],
         "next": None}
QUEUE = [{"ticket_id": "T-7", "category": "water.supply", "text": "停水一整天", "district": "district-west",
          "grid": "grid-west-1-b-2", "lead_unit": "water", "co_units": ["city-management"], "last_event_at": "2026-01-05T07:00:00Z",
          "consultation": {"consultation_id": "T-7:c1", "parties": ["water", "city-management"],
                           "proposed": {"lead": "water", "co_units": ["city-management"], "level": "district"},
                           "reason": "several units involved", "opinions_due": "2026-01-06T07:00:00Z", "at": "2026-01-05T06:00:00Z"},
          "opinions": [{"unit": "water", "agrees": False, "proposed_lead": "city-management", "comment": "不是我们的管线", "at": "x"},
                       {"unit": "city-management", "agrees": True, "proposed_lead": None, "comment": "", "at": "x"}],
          "review": {"reason": "lead disputed", "at": "2026-01-05T07:00:00Z", "consultation_id": "T-7:c1"}}]
RANKED = [{"scope": "unit", "key": "water", "n": 30, "rank": 1, "score": 0.91, "response_rate": 0.95, "resolution_rate": 0.9,
           "satisfaction_rate": 0.88, "on_time_rate": 0.93, "return_rate": 0.0, "rehandling_rate": 0.0, "counts": {}, "note": ""},
          {"scope": "unit", "key": "city-management", "n": 3, "rank": None, "score": 0.5, "response_rate": 0.5,
           "resolution_rate": None, "satisfaction_rate": None, "on_time_rate": None, "return_rate": 0.0, "rehandling_rate": 0.0,
           "counts": {}, "note": "not ranked: n=3 < 20"}]
TREND = [{"day": "2026-01-04", "tickets": 10, "response_rate": 0.8, "resolution_rate": 0.7, "satisfaction_rate": None,
          "on_time_rate": 0.9, "counts": {}},
         {"day": "2026-01-05", "tickets": 12, "response_rate": 0.85, "resolution_rate": 0.75, "satisfaction_rate": 0.9,
          "on_time_rate": 0.8, "counts": {}}]
PROACTIVE = [{"rule": "old-age-allowance-80", "qualified": 4, "reached": 3, "reached_rate": 0.75}]
LOWEST = [{"district": "district-east", "handled_closed": 8, "solved_lowest": 5, "on_the_spot": 3, "escalated": 1,
           "lowest_level_rate": 0.625},
          {"district": "all", "handled_closed": 8, "solved_lowest": 5, "on_the_spot": 3, "escalated": 1, "lowest_level_rate": 0.625}]
GRIDS = [{"grid": "grid-east-1-a-1", "tickets": 9, "open": 4, "overdue": 1, "completed": 5, "on_time": 4, "on_time_rate": 0.8}]


def replay_and_intake(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if request.url.host == "intake":
        return httpx.Response(202, json={"ticket_id": body_of(request)["ticket_id"], "lead": body_of(request)["lead"]})
    answers = {"/replay/board/states": STATES, "/replay/board/arbitration": QUEUE, "/replay/rankings": RANKED,
               "/replay/board/trend": TREND, "/replay/board/grids": GRIDS, "/replay/board/proactive": PROACTIVE,
               "/replay/board/lowest-level": LOWEST, "/replay/board/alerts": OLDER if request.url.params.get("before") else ALERTS}
    return httpx.Response(200, json=answers[path]) if path in answers else httpx.Response(404, json={"detail": "no"})


@pytest.fixture
def calls():
    return []


@pytest.fixture
def app(calls):
    return console_app(recorded(calls, replay_and_intake))


def _json_script(html: str, script_id: str) -> dict:
    marker = f'<script type="application/json" id="{script_id}">'
    start = html.index(marker) + len(marker)
    return json.loads(html[start:html.index("</script>", start)])


def test_the_board_shows_counts_alerts_disputes_rankings_trend_and_map(app, calls):
    page = signed_in(app, principal(Role.supervisor)).get("/console/board/")
    assert page.status_code == 200, page.text
    html = page.text
    assert 'data-testid="total">48<' in html and 'data-testid="overdue">3<' in html
    assert "T-9" in html and "超时" in html  # the breach, in Chinese by default
    assert "停水一整天" in html and "不是我们的管线" in html and 'action="/console/board/decisions"' in html
    ranking = _json_script(html, "ranking-chart")
    assert ranking["xAxis"]["data"] == ["water"]  # the unranked one is in the table only
    assert ranking["series"][0]["data"] == [95.0]
    trend = _json_script(html, "trend-chart")
    assert trend["xAxis"]["data"] == ["2026-01-04", "2026-01-05"] and trend["series"][2]["data"] == [None, 90.0]
    grids = {g["id"]: g for g in _json_script(html, "board-map-data")["grids"]}
    assert len(grids) == 16 and grids["grid-east-1-a-1"]["open"] == 4 and grids["grid-east-1-a-1"]["on_time"] == 80.0
    assert grids["grid-west-2-b-2"]["open"] == 0 and grids["grid-west-2-b-2"]["on_time"] is None
    assert {c.url.path for c in calls} == {"/replay/board/states", "/replay/board/alerts", "/replay/board/arbitration",
                                           "/replay/rankings", "/replay/board/trend", "/replay/board/grids",
                                           "/replay/board/proactive", "/replay/board/lowest-level"}
    assert "高龄津贴（80周岁）" in html and "75.0%" in html and "政策找人覆盖" in html
    assert "基层解决率" in html and "62.5%" in html and "河东区" in html
    assert all(c.headers["authorization"].startswith("Bearer ") for c in calls)


def test_with_nothing_ranked_the_chart_draws_the_largest_samples_faded():
    from services.console.i18n import translator
    from services.console.pages.supervisor import ranking_chart

    unranked = [dict(r, rank=None) for r in RANKED]
    chart = ranking_chart(unranked, translator("en"))
    assert chart["xAxis"]["data"] == ["water", "city-management"] and chart["title"]["text"].startswith("Not ranked")
    assert chart["series"][0]["itemStyle"] == {"opacity": 0.4}
    ranked = ranking_chart(RANKED, translator("en"))
    assert ranked["title"]["text"] == "" and "itemStyle" not in ranked["series"][0]


def test_english_and_the_ranking_scope(app, calls):
    page = signed_in(app, principal(Role.supervisor)).get("/console/board/", params={"lang": "en", "scope": "grid"})
    assert "Supervisor board" in page.text and "Breach" in page.text
    assert "Old-age allowance at 80" in page.text and "Policy finds the person: coverage" in page.text
    assert [c.url.params.get("scope") for c in calls if c.url.path == "/replay/rankings"] == ["grid"]
    assert signed_in(app, principal(Role.supervisor)).get("/console/board/", params={"scope": "planet"}).status_code == 422


def test_an_auditor_reads_the_board_without_decide_forms(app):
    page = signed_in(app, principal(Role.auditor)).get("/console/board/")
    assert page.status_code == 200 and "不是我们的管线" in page.text and "/console/board/decisions" not in page.text


@pytest.mark.parametrize("role", [Role.operator, Role.unit, Role.grid_worker])
def test_other_roles_get_403(app, role):
    who = principal(role, unit="water" if role == Role.unit else None, grids=("grid-east-1-a-1",) if role == Role.grid_worker else ())
    assert signed_in(app, who).get("/console/board/").status_code == 403


def test_fragments_for_the_live_refresh_and_older_alerts(app):
    client = signed_in(app, principal(Role.supervisor))
    states = client.get("/console/board/states", headers={"HX-Request": "true"})
    assert states.status_code == 200 and 'data-testid="total">48<' in states.text and "<html" not in states.text
    alerts = client.get("/console/board/alerts")
    assert "T-9" in alerts.text and "before=2026-01-05T08%3A30%3A00%2B00%3A00%7Ce-9" in alerts.text
    older = client.get("/console/board/alerts", params={"before": ALERTS["next"]})
    assert "T-1" in older.text and "T-9" not in older.text and "<ul" not in older.text


def test_a_decision_posts_to_intake_with_the_supervisor_s_token(app, calls):
    client = signed_in(app, principal(Role.supervisor, "sup-7"))
    answer = client.post("/console/board/decisions", data={"ticket_id": "T-7", "consultation_id": "T-7:c1",
                                                           "lead": "city-management", "co_units": ["water", "city-management"],
                                                           "note": "管线属市政"})
    assert answer.status_code == 202 and 'data-testid="decided"' in answer.text
    posted = [c for c in calls if c.url.host == "intake"]
    assert [c.url.path for c in posted] == ["/supervisor/decisions"]
    assert body_of(posted[0]) == {"ticket_id": "T-7", "lead": "city-management", "co_units": ["water"],
                                  "consultation_id": "T-7:c1", "note": "管线属市政"}


def test_a_decision_needs_a_supervisor_and_the_form_s_token(app, calls):
    auditor = signed_in(app, principal(Role.auditor))
    assert auditor.post("/console/board/decisions", data={"ticket_id": "T-7", "lead": "water"}).status_code == 403
    supervisor = signed_in(app, principal(Role.supervisor))
    del supervisor.headers["X-CSRF-Token"]
    assert supervisor.post("/console/board/decisions", data={"ticket_id": "T-7", "lead": "water"}).status_code == 403
    assert [c for c in calls if c.url.host == "intake"] == []


def test_intake_refusing_a_decision_names_the_field():
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json={"detail": [{"loc": ["body", "lead"], "msg": "unknown unit (not in the catalogue)",
                                                     "type": "value_error"}]})
    client = signed_in(console_app(refuse), principal(Role.supervisor))
    answer = client.post("/console/board/decisions", data={"ticket_id": "T-7", "lead": "nobody"})
    assert answer.status_code == 422 and "lead" in answer.text


def test_the_city_map_is_served_to_any_signed_in_user(app):
    client = signed_in(app, principal(Role.operator))
    answer = client.get("/console/map/areas.geojson")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/geo+json")
    assert len([f for f in answer.json()["features"] if f["properties"]["level"] == "grid"]) == 16


def test_without_a_session_the_board_sends_to_the_login_page(app):
    from fastapi.testclient import TestClient

    answer = TestClient(app, follow_redirects=False).get("/console/board/")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login")
