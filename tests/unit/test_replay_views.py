"""The replay API for the console's story and what-if pages: the ledger as bars over time, an operator's
timeline, and a what-if over HTTP with an uploaded catalogue (validated) or a saved model."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlmodel import Session

from contracts import events as ev
from domain.catalogue import read_catalogue_data
from services.common.store import make_engine
from services.projections.api import replay_app
from services.projections.logsource import MemoryLog
from services.projections.migrate import upgrade
from services.projections.settings import ProjectionsSettings
from services.projections.store import apply
from tests.harness.auth import bearer, verifier
from tools.importers.synthetic import DEFAULT_START, SyntheticHistory

HISTORY = SyntheticHistory(400, seed=11).envelopes()
MOVED = "city-management.street-cleaning"  # city-management -> environment in the trial catalogue


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    state = tmp_path_factory.mktemp("views")
    engine = make_engine(f"sqlite:///{state / 'proj.db'}")
    upgrade(engine)
    with Session(engine) as session, session.begin():
        for envelope in HISTORY:
            apply(session, envelope)
    settings = ProjectionsSettings(timezone="UTC", min_rank_sample=5, state_dir=state)
    api = replay_app(settings, engine=engine, log_factory=lambda archive: MemoryLog(HISTORY), verifier=verifier())
    with TestClient(api, headers=bearer("supervisor")) as client:
        client.state_dir = state  # type: ignore[attr-defined]
        yield client


def _closed(outcome: str = "resolved") -> str:
    closed = [e.ticket_id for e in HISTORY if isinstance(e.data, ev.TicketClosed) and e.data.outcome == outcome]
    return closed[len(closed) // 3]


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_the_ledger_gives_a_bar_per_holder_that_tiles_the_ticket_s_life(http):
    ticket_id = _closed()
    story = http.get(f"/replay/tickets/{ticket_id}/story", params={"source": "store"}).json()
    bars = story["holders"]
    assert len(bars) >= 2
    for bar, following in zip(bars, bars[1:]):
        assert bar["to"] == following["start"]  # no gap, no overlap: a gantt row without holes
    assert _at(bars[0]["start"]) == _at(story["events"][0]["time"])
    assert _at(bars[-1]["to"]) == _at(story["state"]["closed_at"]) and not bars[-1]["open"]
    for bar in bars:
        assert bar["kind"] in {"hotline", "unit", "consultation", "resident", "suspension"}
        assert bar["clock"] == {"hotline": "hotline", "unit": "unit"}.get(bar["kind"], "paused")
        assert round((_at(bar["to"]) - _at(bar["start"])).total_seconds()) == bar["seconds"]
    assert any(b["kind"] == "unit" and b["holder"] == story["tasks"][0]["unit"] for b in bars)


def test_an_open_ticket_s_last_bar_runs_to_now(http):
    closed = {e.ticket_id for e in HISTORY if isinstance(e.data, ev.TicketClosed)}
    open_ticket = next(e.ticket_id for e in reversed(HISTORY) if isinstance(e.data, ev.TaskAssigned) and e.ticket_id not in closed)
    bars = http.get(f"/replay/tickets/{open_ticket}/story", params={"source": "store"}).json()["holders"]
    assert bars[-1]["open"] and bars[-1]["end"] is None
    assert _at(bars[-1]["to"]) > datetime.now(_at(bars[-1]["start"]).tzinfo) - timedelta(minutes=1)


def test_an_operator_reads_a_timeline_but_not_the_story_or_a_what_if(http):
    ticket_id = _closed()
    operator = bearer("operator")
    timeline = http.get(f"/replay/tickets/{ticket_id}/timeline", headers=operator)
    assert timeline.status_code == 200
    events = timeline.json()["events"]
    story = http.get(f"/replay/tickets/{ticket_id}/story", params={"source": "store"}).json()
    assert [e["event_id"] for e in events] == [e["event_id"] for e in story["events"]]
    assert set(events[0]) == {"event_id", "time", "kind", "unit", "round", "summary"}
    assert http.get(f"/replay/tickets/{ticket_id}/story", headers=operator).status_code == 403
    assert http.post("/replay/what-if", json={"catalogue": "x: 1"}, headers=operator).status_code == 403
    assert http.post("/replay/what-if", json={"catalogue": "x: 1"}, headers=bearer("auditor")).status_code == 403
    assert http.get("/replay/tickets/nope/timeline", headers=operator).status_code == 404


def _trial_yaml() -> str:
    data = copy.deepcopy(read_catalogue_data())
    for category in data["categories"]:
        if category["code"] == MOVED:
            category["lead"] = "environment"
    data["version"] = "2026.9-trial"
    return yaml.safe_dump(data, allow_unicode=True)


def _first_classifications(since: datetime | None = None) -> dict[str, ev.TicketClassified]:
    first: dict[str, tuple[datetime, ev.TicketClassified]] = {}
    for env in sorted(HISTORY, key=lambda e: e.time):
        if isinstance(env.data, ev.TicketClassified) and env.data.method != "reroute":
            first.setdefault(env.ticket_id, (env.time, env.data))
    return {t: c for t, (at, c) in first.items() if since is None or at >= since}


def test_a_what_if_with_an_uploaded_catalogue_answers_the_difference_table(http):
    since = DEFAULT_START + timedelta(days=4)
    answer = http.post("/replay/what-if", json={"catalogue": _trial_yaml(), "since": since.isoformat()})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    first = _first_classifications(since)
    expected = {t for t, c in first.items() if c.category == MOVED}
    assert expected and body["catalogue_version"] == "2026.9-trial"
    assert body["tickets_considered"] == len(first) and body["tickets_changed"] == len(expected)
    assert {d["ticket_id"] for d in body["changed"]} == expected
    assert all(d["lead_before"] == "city-management" and d["lead_after"] == "environment" for d in body["changed"])
    units = {u["unit"]: u for u in body["units"]}
    assert units["environment"]["tickets_after"] - units["environment"]["tickets_before"] == len(expected)

    limited = http.post("/replay/what-if", json={"catalogue": _trial_yaml(), "since": since.isoformat(), "limit": 2}).json()
    assert limited["tickets_changed"] == len(expected) and len(limited["changed"]) == 2


@pytest.mark.parametrize(("body", "names"), [
    ({}, "catalogue or model"),
    ({"catalogue": "version: [unclosed"}, "catalogue: not YAML"),
    ({"catalogue": "- a list"}, "catalogue: the file must hold a mapping"),
    ({"catalogue": "version: x\n"}, "catalogue: "),
    ({"model": "../../etc/passwd"}, "model: no saved model"),
    ({"catalogue": "version: x", "since": "yesterday"}, "since: not an ISO 8601 time"),
    ({"catalogue": "version: x", "since": "2026-05-09", "until": "2026-05-08"}, "until: before since"),
])
def test_a_bad_what_if_is_a_422_naming_the_problem(http, body, names):
    answer = http.post("/replay/what-if", json=body)
    assert answer.status_code == 422 and names in answer.json()["detail"], answer.text


def test_an_invalid_catalogue_names_the_field(http):
    data = copy.deepcopy(read_catalogue_data())
    del data["categories"][0]["lead"]
    data["categories"][0].pop("lead_by_area", None)
    answer = http.post("/replay/what-if", json={"catalogue": yaml.safe_dump(data, allow_unicode=True)})
    assert answer.status_code == 422 and answer.json()["detail"].startswith("catalogue: "), answer.text
    assert answer.json()["detail"] != "catalogue: "


def test_a_saved_model_is_chosen_by_name_and_moves_only_model_decisions(http):
    from domain import classifier as classifier_module

    texts = ["street light broken", "路灯坏了", "lamp post dark", "noise at night", "楼上噪音", "loud music neighbours"] * 3
    labels = ["city-management.street-light"] * 3 + ["public-security.social-noise"] * 3
    model = classifier_module.ComplaintClassifier().fit(texts, labels * 3)
    model.save(http.state_dir / "models" / "tiny.model")
    assert "tiny.model" in http.get("/replay/what-if/models").json()
    answer = http.post("/replay/what-if", json={"model": "tiny.model"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == "tiny.model" and body["tickets_changed"] > 0
    person_decided = {t for t, c in _first_classifications().items() if c.method in ("operator", "manual")}
    assert person_decided and not person_decided & {d["ticket_id"] for d in body["changed"]}
    assert {d["why"] for d in body["changed"]} <= {"classifier", "manual-triage", "unroutable"}


def test_as_of_with_the_rankings_counts_the_tickets_in_each_state_then(http):
    late = (DEFAULT_START + timedelta(days=90)).isoformat()
    now_states = http.get("/replay/as-of", params={"time": late, "rankings": True}).json()["states"]
    tickets = {e.ticket_id for e in HISTORY}
    closed = sum(1 for e in HISTORY if isinstance(e.data, ev.TicketClosed))
    assert sum(now_states.values()) == len(tickets) and now_states["closed"] == closed
    early = (DEFAULT_START + timedelta(days=2)).isoformat()
    then = http.get("/replay/as-of", params={"time": early, "rankings": True}).json()["states"]
    registered_by_then = {e.ticket_id for e in HISTORY if e.time <= datetime.fromisoformat(early)}
    assert sum(then.values()) == len(registered_by_then) and then.get("closed", 0) < closed


def test_the_rules_of_the_new_routes_are_the_documented_ones(http):
    from services.common.auth import Role, api_routes, route_access

    rules = {(method, path): {rule.roles for rule in route_access(route)} for method, path, route in api_routes(http.app)}
    o, s, a = Role.operator, Role.supervisor, Role.auditor
    assert rules[("GET", "/replay/tickets/{ticket_id}/timeline")] == {frozenset({o, s, a})}
    assert rules[("GET", "/replay/what-if/models")] == rules[("POST", "/replay/what-if")] == {frozenset({s})}
    assert rules[("GET", "/replay/tickets/{ticket_id}/story")] == {frozenset({s, a})}


def test_an_as_of_queue_folds_only_the_unit_s_tickets_still_open_and_answers_as_a_fold_of_everything(http):
    from services.projections import queries
    from services.projections.replay import AsOfQuestion, _stream_groups, answer_from_groups, as_of_store

    engine = make_engine(f"sqlite:///{http.state_dir / 'proj.db'}")
    everything = list(_stream_groups(queries.stored_rows(engine, None, None)))
    checked = 0
    for days in (1, 3, 6, 9, 13):
        at = DEFAULT_START + timedelta(days=days, hours=5)
        for unit in ("city-management", "housing", "environment", "water"):
            question = AsOfQuestion(at, unit=unit)
            pruned = as_of_store(engine, question)
            full = answer_from_groups(question, "all", everything)
            assert pruned.queue == full.queue, (unit, at)  # the settled tickets' tasks read as stored, the same rows
            every = queries.ticket_ids_with_unit(engine, unit, at)
            still_open = queries.ticket_ids_with_unit(engine, unit, at, open_only=True)
            assert set(still_open) <= set(every)
            checked += len(full.queue)
    assert checked > 20 and len(still_open) < len(every)


def test_the_city_as_of_a_time_folds_only_tickets_active_after_it_and_answers_as_a_fold_of_everything(http):
    from services.projections import queries
    from services.projections.replay import AsOfQuestion, _stream_groups, answer_from_groups, as_of_store

    engine = make_engine(f"sqlite:///{http.state_dir / 'proj.db'}")
    everything = list(_stream_groups(queries.stored_rows(engine, None, None)))
    partly_settled = 0
    for days in (0, 2, 5, 9, 13, 90):
        at = DEFAULT_START + timedelta(days=days, hours=5)
        for scope, unit in ((None, None), ("unit", "housing"), ("grid", None)):
            question = AsOfQuestion(at, unit=unit, rankings=True, scope=scope)
            fast = as_of_store(engine, question)
            full = answer_from_groups(question, "all", everything)
            assert fast.states == full.states, (at, scope)
            assert [r.as_dict() for r in fast.rankings] == [r.as_dict() for r in full.rankings], (at, scope)
            assert fast.queue == full.queue, (at, unit)
        later = queries.ticket_ids_active_after(engine, at)
        partly_settled += 0 < len(later) < len(everything)
    assert partly_settled >= 3  # the times above mix tickets read as stored with tickets refolded
