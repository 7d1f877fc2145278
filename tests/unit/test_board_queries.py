"""The supervisors' board queries of the replay API, checked against the events that made the store."""

from __future__ import annotations

from collections import Counter

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from contracts import events as ev
from services.common.store import make_engine
from services.projections import board, queries
from services.projections.api import replay_app
from services.projections.logsource import MemoryLog
from services.projections.migrate import upgrade
from services.projections.settings import ProjectionsSettings
from services.projections.store import apply
from tests.harness.auth import bearer, verifier
from tools.importers.synthetic import SyntheticHistory


def _some_left_in_review(history):
    """The synthetic city decides every dispute at once: cut half the disputed stories at the review request,
    so they wait for a supervisor as a live one would."""
    reviewed = sorted({e.ticket_id for e in history if isinstance(e.data, ev.SupervisorReviewRequested)})[::2]
    cut = {e.ticket_id: e.time for e in history if e.ticket_id in reviewed and isinstance(e.data, ev.SupervisorReviewRequested)}
    return [e for e in history if e.ticket_id not in cut or e.time <= cut[e.ticket_id]]


HISTORY = _some_left_in_review(SyntheticHistory(400, seed=13).envelopes())
ALERT_TYPES = (ev.SlaReminderSent, ev.SlaBreached, ev.TicketEscalated)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('board') / 'proj.db'}")
    upgrade(engine)
    with Session(engine) as session, session.begin():
        for envelope in HISTORY:
            apply(session, envelope)
    settings = ProjectionsSettings(timezone="Asia/Shanghai", min_rank_sample=5)
    api = replay_app(settings, engine=engine, log_factory=lambda archive: MemoryLog(HISTORY), verifier=verifier())
    with TestClient(api, headers=bearer("supervisor")) as test_client:
        yield test_client, engine


def _tickets(engine):
    from sqlalchemy import select
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(queries.TICKETS)).mappings()]


def test_states_count_every_ticket_once(client):
    http, engine = client
    body = http.get("/replay/board/states").json()
    rows = _tickets(engine)
    assert body["states"] == dict(Counter(r["status"] for r in rows))
    assert body["total"] == len(rows) == len({e.ticket_id for e in HISTORY})
    open_rows = [r for r in rows if r["status"] not in ("closed", "merged")]
    assert body["open"] == len(open_rows) and body["open"] < body["total"]
    assert body["overdue"] == sum(r["overdue"] for r in open_rows)


def test_alerts_page_through_every_reminder_breach_and_escalation_newest_first(client):
    http, _ = client
    expected = {e.id for e in HISTORY if isinstance(e.data, ALERT_TYPES)}
    assert len(expected) > 30
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 25, **({"before": cursor} if cursor else {})}
        page = http.get("/replay/board/alerts", params=params).json()
        seen += page["items"]
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert [a["event_id"] for a in seen if a["event_id"] not in expected] == []
    assert len(seen) == len(expected) == len({a["event_id"] for a in seen})
    assert pages == -(-len(expected) // 25)
    times = [(a["time"], a["event_id"]) for a in seen]
    assert times == sorted(times, reverse=True)
    assert {a["kind"] for a in seen} == {"SlaReminderSent", "SlaBreached", "TicketEscalated"}


def test_alerts_since_a_time_are_only_the_newer_ones(client):
    http, _ = client
    everything = http.get("/replay/board/alerts", params={"limit": 500}).json()["items"]
    middle = everything[len(everything) // 2]["time"]
    newer = http.get("/replay/board/alerts", params={"limit": 500, "since": middle}).json()["items"]
    assert newer and all(a["time"] > middle for a in newer)
    assert len(newer) == sum(a["time"] > middle for a in everything)
    assert http.get("/replay/board/alerts", params={"before": "garbage"}).status_code == 422
    assert http.get("/replay/board/alerts", params={"limit": 0}).status_code == 422


def test_the_arbitration_queue_shows_the_failed_consultation_and_the_positions(client):
    http, engine = client
    queue = http.get("/replay/board/arbitration").json()
    waiting = {r["ticket_id"] for r in _tickets(engine) if r["status"] == "supervisor-review"}
    assert waiting and {q["ticket_id"] for q in queue} == waiting
    for item in queue:
        requested = [e.data for e in HISTORY if e.ticket_id == item["ticket_id"] and isinstance(e.data, ev.ConsultationRequested)]
        assert item["consultation"]["consultation_id"] == requested[-1].consultation_id
        assert item["consultation"]["proposed"]["lead"] == requested[-1].proposed.lead
        opinions = [e.data for e in HISTORY if isinstance(e.data, ev.OpinionGiven)
                    and e.data.consultation_id == requested[-1].consultation_id]
        assert sorted((o["unit"], o["agrees"]) for o in item["opinions"]) == sorted((o.unit, o.agrees) for o in opinions)
        assert item["review"]["reason"]


def test_the_daily_trend_adds_up_to_the_rankings(client):
    http, _ = client
    trend = http.get("/replay/board/trend", params={"scope": "unit"}).json()
    assert len(trend) >= 10 and [d["day"] for d in trend] == sorted(d["day"] for d in trend)
    ranked = http.get("/replay/rankings", params={"scope": "unit"}).json()
    for counter in ("tasks", "responded", "callbacks", "satisfied"):
        assert sum(d["counts"][counter] for d in trend) == sum(r["counts"][counter] for r in ranked)
    one = trend[len(trend) // 2]
    assert one["response_rate"] == round(one["counts"]["responded"] / one["counts"]["response_n"], 4)
    unit = max(ranked, key=lambda r: r["n"])["key"]
    of_unit = http.get("/replay/board/trend", params={"scope": "unit", "key": unit}).json()
    assert sum(d["counts"]["tasks"] for d in of_unit) == next(r["n"] for r in ranked if r["key"] == unit)
    assert http.get("/replay/board/trend", params={"scope": "planet"}).status_code == 422


def test_the_trend_covers_the_last_days_up_to_the_newest_ticket(client):
    http, _ = client
    everything = http.get("/replay/board/trend", params={"days": 365}).json()
    recent = http.get("/replay/board/trend", params={"days": 3}).json()
    assert 3 <= len(recent) <= 4 < len(everything)
    assert [d["day"] for d in recent] == [d["day"] for d in everything][-len(recent):]
    assert http.get("/replay/board/trend", params={"days": 0}).status_code == 422


def test_the_day_is_the_city_s_day_not_utc(client):
    http, engine = client
    days = {d["day"] for d in http.get("/replay/board/trend").json()}
    from zoneinfo import ZoneInfo
    local = {r["submitted_at"].replace(tzinfo=r["submitted_at"].tzinfo or ZoneInfo("UTC"))
             .astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
             for r in _tickets(engine) if r["submitted_at"] and r["district"]}
    assert days == local


def test_grids_count_open_tickets_and_on_time_rates(client):
    http, engine = client
    grids = {g["grid"]: g for g in http.get("/replay/board/grids").json()}
    rows = _tickets(engine)
    assert len(grids) == 16
    for grid, stats in grids.items():
        mine = [r for r in rows if r["grid"] == grid]
        assert stats["tickets"] == len(mine)
        assert stats["open"] == sum(r["status"] not in ("closed", "merged") for r in mine)
    ranked = {r["key"]: r for r in http.get("/replay/rankings", params={"scope": "grid", "min_n": 1}).json()}
    for grid, stats in grids.items():
        assert stats["on_time_rate"] == ranked[grid]["on_time_rate"]


def test_only_supervisors_and_auditors_read_the_board(client):
    http, _ = client
    assert http.get("/replay/board/states", headers=bearer("auditor")).status_code == 200
    assert http.get("/replay/board/states", headers=bearer("operator")).status_code == 403
    assert http.get("/replay/board/grids", headers=bearer("unit", unit="city-management")).status_code == 403


def test_a_cursor_round_trips():
    cursor = board.Cursor.parse("2026-01-05T08:00:00+00:00|evt-1")
    assert board.Cursor.parse(cursor.text()) == cursor
    with pytest.raises(ValueError):
        board.Cursor.parse("2026-01-05T08:00:00")
