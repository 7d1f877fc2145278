"""The replay HTTP API on a SQLite projection store and an in-memory log."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from contracts import events as ev
from services.common.store import make_engine
from services.projections import queries
from services.projections.api import replay_app
from services.projections.logsource import MemoryLog
from services.projections.migrate import upgrade
from services.projections.settings import ProjectionsSettings
from services.projections.store import apply
from tests.harness.auth import bearer, verifier
from tools.importers.synthetic import DEFAULT_START, SyntheticHistory

HISTORY = SyntheticHistory(300, seed=9).envelopes()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('api') / 'proj.db'}")
    upgrade(engine)
    with Session(engine) as session, session.begin():
        for envelope in HISTORY:
            apply(session, envelope)
    settings = ProjectionsSettings(timezone="UTC", min_rank_sample=5)
    api = replay_app(settings, engine=engine, log_factory=lambda archive: MemoryLog(HISTORY), verifier=verifier())
    with TestClient(api, headers=bearer("auditor")) as test_client:
        yield test_client, engine


def _a_closed_ticket() -> str:
    closed = [e.ticket_id for e in HISTORY if isinstance(e.data, ev.TicketClosed) and e.data.outcome == "resolved"]
    return closed[len(closed) // 2]


def test_a_ticket_with_its_tasks(client):
    http, _ = client
    ticket_id = _a_closed_ticket()
    body = http.get(f"/replay/tickets/{ticket_id}").json()
    assert body["ticket"]["status"] == "closed" and body["tasks"]
    assert http.get("/replay/tickets/nope").status_code == 404


@pytest.mark.parametrize("source", ["store", "kafka"])
def test_a_story_from_the_store_or_the_log_tells_the_same_events(client, source):
    http, engine = client
    ticket_id = _a_closed_ticket()
    story = http.get(f"/replay/tickets/{ticket_id}/story", params={"source": source}).json()
    assert [e["event_id"] for e in story["events"]] == [e["event_id"] for e in queries.timeline(engine, ticket_id)]
    assert story["state"]["status"] == "closed"
    assert story["holders"][0]["holder"] == "hotline" and all(h["seconds"] >= 0 for h in story["holders"])


def test_events_filter_by_time_type_and_unit(client):
    http, _ = client
    since = DEFAULT_START + timedelta(days=3)
    until = since + timedelta(days=2)
    rows = http.get("/replay/events", params={"since": since.isoformat(), "until": until.isoformat(),
                                              "type": "TaskAssigned", "unit": "city-management"}).json()
    expected = [e for e in HISTORY if isinstance(e.data, ev.TaskAssigned) and e.data.unit == "city-management"
                and since <= e.time <= until]
    assert sorted(r["event_id"] for r in rows) == sorted(e.id for e in expected) and expected
    from_log = http.get("/replay/events", params={"since": since.isoformat(), "until": until.isoformat(),
                                                  "type": "TaskAssigned", "unit": "city-management",
                                                  "source": "kafka"}).json()
    assert sorted(r["event_id"] for r in from_log) == sorted(r["event_id"] for r in rows)


def test_events_filter_by_district_with_the_ticket_s_location(client):
    http, _ = client
    rows = http.get("/replay/events", params={"district": "district-west", "limit": 100000}).json()
    west = {e.ticket_id for e in HISTORY if isinstance(e.data, ev.TicketSubmitted) and e.data.location.district == "district-west"}
    assert rows and {r["ticket_id"] for r in rows} == west
    from_log = http.get("/replay/events", params={"district": "district-west", "limit": 100000, "source": "kafka"}).json()
    assert Counter(r["event_id"] for r in from_log) == Counter(r["event_id"] for r in rows)


def test_as_of_and_rankings_and_queues(client):
    http, engine = client
    now_rankings = http.get("/replay/rankings", params={"scope": "unit"}).json()
    assert now_rankings and any(r["rank"] == 1 for r in now_rankings)
    late = (DEFAULT_START + timedelta(days=60)).isoformat()
    as_of = http.get("/replay/as-of", params={"time": late, "rankings": True, "scope": "unit"}).json()
    assert as_of["rankings"] == now_rankings  # after the last event, as-of is now
    busiest = max(now_rankings, key=lambda r: r["n"])["key"]
    queue = http.get(f"/replay/units/{busiest}/queue").json()
    as_of_queue = http.get("/replay/as-of", params={"time": late, "unit": busiest}).json()["queue"]
    assert [t["task_id"] for t in as_of_queue] == [t["task_id"] for t in queue]
    before_anything = http.get("/replay/as-of", params={"time": DEFAULT_START.isoformat(), "ticket": _a_closed_ticket()}).json()
    assert before_anything["ticket"] is None
    assert http.get("/replay/as-of", params={"time": "not a time", "rankings": True}).status_code == 422
    assert http.get("/replay/as-of", params={"time": late}).status_code == 422
