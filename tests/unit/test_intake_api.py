"""The hotline API's validation and idempotency, with the broker replaced by a recording fake (the audit
records it also publishes are kept apart: tests/unit/test_audit.py looks at them)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from contracts.topics import AUDIT
from domain.catalogue import load_catalogue
from services.common.store import create_tables, make_engine
from services.intake.api import build_api
from services.intake.app import store_tables
from services.intake.keystore import caller_of
from services.intake.models import TicketStatus
from tests.harness.auth import bearer, verifier

NOW = datetime(2026, 5, 6, 9, 0, tzinfo=UTC)


@pytest.fixture
def api(tmp_path):
    published: list = []
    audits: list = []

    async def publish(topic, envelope):
        (audits if topic == AUDIT.name else published).append((topic, envelope))

    engine = make_engine(f"sqlite:///{tmp_path / 'intake.db'}")
    create_tables(engine, store_tables())
    client = TestClient(build_api(publish=publish, engine=engine, catalogue=load_catalogue(), now=lambda: NOW,
                                  verifier=verifier()), headers=bearer("operator", "op-7"))
    client.audits = audits  # type: ignore[attr-defined]
    return client, published, engine


def test_submit_answers_202_and_publishes_the_intake_record(api):
    client, published, _ = api
    r = client.post("/tickets", json={"text": "路灯坏了", "caller_phone": "13812345678", "category": "city-management.street-light"})
    assert r.status_code == 202
    topic, envelope = published[0]
    assert topic == "cityops.intake.v1" and envelope.ticket_id == r.json()["ticket_id"]
    assert envelope.data.submitted_at == NOW


def test_the_published_record_holds_the_caller_sealed_and_only_intake_can_open_it(api):
    client, published, engine = api
    body = {"text": "我是李四，电话13812345678，路灯坏了", "caller_name": "李四", "caller_phone": "138 1234 5678",
            "location": {"address": "桂花路88号，有事打0571-88886666"}}
    ticket_id = client.post("/tickets", json=body).json()["ticket_id"]
    data = published[0][1].data
    wire = published[0][1].model_dump_json()
    assert "1234" not in wire.replace(data.sealed_caller.ciphertext, "") and "李四" not in wire and "88886666" not in wire
    assert data.caller.phone is None and data.caller.name is None
    assert data.caller_ref.masked_phone == "138****5678" and len(data.caller_ref.pseudonym) == 16
    assert data.text == "我是**，电话138****5678，路灯坏了" and data.location.address == "桂花路88号，有事打057*****6666"
    opened = caller_of(engine, data.sealed_caller, ticket_id)
    assert opened is not None and (opened.name, opened.phone) == ("李四", "138 1234 5678")
    assert caller_of(engine, data.sealed_caller, "T-ANOTHER") is None  # bound to its ticket


def test_one_caller_has_one_key_and_pseudonym_across_tickets(api):
    client, published, _ = api
    for phone in ("13812345678", "138-1234-5678", "13987654321"):
        client.post("/tickets", json={"text": "噪音扰民", "caller_phone": phone})
    a, b, c = (e.data for _, e in published)
    assert a.sealed_caller.key_id == b.sealed_caller.key_id != c.sealed_caller.key_id
    assert a.caller_ref.pseudonym == b.caller_ref.pseudonym != c.caller_ref.pseudonym


def test_erasure_destroys_the_key_says_what_it_erased_and_never_the_number(api):
    client, published, engine = api
    for _ in range(2):
        client.post("/tickets", json={"text": "噪音扰民", "caller_name": "王五", "caller_phone": "13812345678"})
    client.post("/tickets", json={"text": "噪音扰民", "caller_phone": "13987654321"})
    r = client.post("/privacy/erasures", json={"phone": "138 1234 5678"}, headers=bearer("supervisor", "sup-1"))
    assert r.status_code == 200 and r.json()["keys_destroyed"] == 1 and r.json()["tickets"] == 2
    assert "5678" not in r.text
    first, other = published[0][1], published[2][1]
    assert caller_of(engine, first.data.sealed_caller, first.ticket_id) is None
    assert caller_of(engine, other.data.sealed_caller, other.ticket_id) is not None  # another caller keeps theirs
    again = client.post("/privacy/erasures", json={"phone": "13812345678"}, headers=bearer("supervisor", "sup-1")).json()
    assert again["keys_destroyed"] == 0 and again["tickets"] == 0


def test_erasure_masks_the_number_left_in_clear_in_the_status_view(api):
    client, _, engine = api
    with Session(engine) as s, s.begin():  # a row registered before intake masked free text
        s.add(TicketStatus(ticket_id="T-OLD", status="closed", text="回电138 1234 5678", address="桂花路1号 13812345678"))
    r = client.post("/privacy/erasures", json={"phone": "13812345678"}, headers=bearer("supervisor", "sup-1")).json()
    assert r["status_rows_cleaned"] == 1
    with Session(engine) as s:
        row = s.get(TicketStatus, "T-OLD")
    assert row.text == "回电138****5678" and row.address == "桂花路1号 138****5678"


def test_numbers_in_operators_free_text_are_masked_before_they_leave_intake(api):
    client, published, engine = api
    with Session(engine) as s, s.begin():
        s.add(TicketStatus(ticket_id="T-1", status="handled"))
    client.post("/callbacks", json={"ticket_id": "T-1", "round": 1, "resolved": True, "satisfaction": "satisfied",
                                    "comment": "居民说以后打13812345678找他"})
    assert published[-1][1].data.comment == "居民说以后打138****5678找他"


def test_same_idempotency_key_gives_the_same_ticket_and_event(api):
    client, published, _ = api
    body = {"text": "noise at night from the bar"}
    a = client.post("/tickets", json=body, headers={"Idempotency-Key": "abc"}).json()["ticket_id"]
    b = client.post("/tickets", json=body, headers={"Idempotency-Key": "abc"}).json()["ticket_id"]
    c = client.post("/tickets", json=body, headers={"Idempotency-Key": "other"}).json()["ticket_id"]
    assert a == b != c
    assert published[0][1].id == published[1][1].id != published[2][1].id


@pytest.mark.parametrize("body, field", [
    ({"text": ""}, "text"),
    ({"text": "ok text", "caller_phone": "call me maybe"}, "caller_phone"),
    ({"text": "ok text", "category": "no.such-category"}, "category"),
    ({"text": "ok text", "urgency": "whenever"}, "urgency"),
    ({"text": "ok text", "location": {"lat": 123}}, "lat"),
    ({"text": "ok text", "submitted_at": "2026-05-01T10:00:00"}, "submitted_at"),
    ({"text": "ok text", "surprise": 1}, "surprise"),
])
def test_bad_input_is_422_naming_the_field_and_publishes_nothing(api, body, field):
    client, published, _ = api
    r = client.post("/tickets", json=body)
    assert r.status_code == 422
    assert field in [str(part) for e in r.json()["detail"] for part in e["loc"]]
    assert published == []


def test_open311_post_form_and_service_list(api):
    client, published, _ = api
    services = client.get("/open311/v2/services.json").json()
    assert len(services) >= 40 and {"service_code", "service_name"} <= set(services[0])
    r = client.post("/open311/v2/requests.json", data={"service_code": services[0]["service_code"],
                                                       "description": "broken lamp", "lat": "31.2", "long": "121.4"})
    assert r.status_code == 201 and r.json()[0]["service_request_id"] == published[0][1].ticket_id
    assert published[0][1].data.channel == "open311"
    bad = client.post("/open311/v2/requests.json", data={"description": "no code"})
    assert bad.status_code == 422 and "service_code" in str(bad.json())


def test_status_reads_the_intake_view_and_404s_unknown(api, tmp_path):
    client, _, engine = api
    with Session(engine) as s:
        s.add(TicketStatus(ticket_id="T-1", status="closed", outcome="resolved", category="city-management.street-light",
                           lead="city-management", requested_at=NOW, updated_at=NOW))
        s.commit()
    assert client.get("/tickets/T-1").json()["status"] == "closed"
    assert client.get("/open311/v2/requests/T-1.json").json()[0]["status"] == "closed"
    assert client.get("/tickets/T-404").status_code == 404
    assert client.post("/tickets/T-1/split", json={"reason": "r"}).status_code == 409


def test_status_view_is_not_moved_back_by_an_older_event_read_late(tmp_path):
    from datetime import timedelta

    from contracts import events as ev
    from contracts.envelope import Envelope
    from contracts.examples import build_example
    from services.common.pipeline import HandlerContext, NoDeps
    from services.intake.handlers import update_status
    from services.intake.settings import IntakeSettings

    engine = make_engine(f"sqlite:///{tmp_path / 'status.db'}")
    create_tables(engine, [TicketStatus.__table__])
    classified = Envelope.origin(build_example(ev.TicketClassified).model_copy(update={"needs_consultation": False}),
                                 source="/t", ticket_id="T-1", time=NOW)
    handled = Envelope.origin(build_example(ev.TicketHandled), source="/t", ticket_id="T-1", time=NOW + timedelta(seconds=5))
    with Session(engine) as s, s.begin():
        ctx = HandlerContext(session=s, now=lambda: NOW, source="/t", settings=IntakeSettings(), deps=NoDeps())
        update_status(ctx, handled)  # read first: the act topic was ahead after a restart
        update_status(ctx, classified)
    with Session(engine) as s:
        row = s.get(TicketStatus, "T-1")
    assert row.status == "handled" and row.category == classified.data.category


def _status_view(tmp_path, *envelopes):
    from services.common.pipeline import HandlerContext, NoDeps
    from services.intake.handlers import update_status
    from services.intake.settings import IntakeSettings

    engine = make_engine(f"sqlite:///{tmp_path / 'status.db'}")
    create_tables(engine, [TicketStatus.__table__])
    with Session(engine) as s, s.begin():
        ctx = HandlerContext(session=s, now=lambda: NOW, source="/t", settings=IntakeSettings(), deps=NoDeps())
        for envelope in envelopes:
            update_status(ctx, envelope)
    with Session(engine) as s:
        return s.get(TicketStatus, "T-1")


def _street_light_story():
    """A street-light ticket led by city-management and closed, as its events were stamped."""
    from datetime import timedelta

    from contracts import events as ev
    from contracts.envelope import Envelope
    from contracts.examples import build_example

    def at(seconds, data):
        return Envelope.origin(data, source="/t", ticket_id="T-1", time=NOW + timedelta(seconds=seconds))

    routing = ev.Routing(lead="city-management", co_units=("power",), level=ev.Level.city)
    classified = build_example(ev.TicketClassified).model_copy(
        update={"category": "city-management.street-light", "routing": routing, "needs_consultation": False})
    assigned = build_example(ev.TaskAssigned).model_copy(update={"unit": "city-management", "role": ev.Role.lead})
    closed = ev.TicketClosed(outcome="resolved", satisfaction=ev.Satisfaction.satisfied, rounds=1)
    return at(1, classified), at(2, assigned), at(9, closed)


def test_the_lead_shows_when_the_close_was_read_before_the_classification(tmp_path):
    # The evaluate topic was ahead of the triage topic (a restart, a slow consumer): the close came first.
    classified, assigned, closed = _street_light_story()
    row = _status_view(tmp_path, closed, classified, assigned)
    assert (row.status, row.lead, row.co_units) == ("closed", "city-management", "power")
    assert row.category == "city-management.street-light"


def test_the_lead_shows_when_only_the_lead_task_tells_it(tmp_path):
    classified, assigned, closed = _street_light_story()
    row = _status_view(tmp_path, closed, assigned)
    assert (row.status, row.lead) == ("closed", "city-management")
    row = _status_view(tmp_path / "in-order", assigned)
    assert row.lead == "city-management"


def test_status_words_are_the_shared_vocabulary_and_old_words_still_select(api):
    from domain.statuses import TicketStatus as Status

    client, _, engine = api
    with Session(engine) as s:
        s.add(TicketStatus(ticket_id="T-new", status=Status.consulting, updated_at=NOW))
        s.add(TicketStatus(ticket_id="T-old", status="re-handling", updated_at=NOW))  # written before the rename
        s.commit()
    assert client.get("/tickets/T-old").json()["status"] == "reopened"
    assert [r["ticket_id"] for r in client.get("/tickets", params={"status": "consultation"}).json()] == ["T-new"]
    assert [r["ticket_id"] for r in client.get("/tickets", params={"status": "reopened"}).json()] == ["T-old"]
    assert client.get("/stats").json() == {"consulting": 1, "reopened": 1}
def test_operator_and_supervisor_decisions_go_on_intakes_command_topic_and_a_retry_is_the_same_command(api):
    from contracts import events as ev
    from contracts.topics import COMMANDS

    client, published, engine = api
    with Session(engine) as s:
        for tid, status in (("T-1", "manual-triage"), ("T-2", "merged"), ("T-3", "supervisor-review"), ("T-4", "awaiting-callback")):
            s.add(TicketStatus(ticket_id=tid, status=status, requested_at=NOW, updated_at=NOW))
        s.commit()
    # Who decided comes from the token: an operator or supervisor id in the body is ignored.
    calls = [("/triage/T-1/resolve", {"category": "city-management.street-light", "operator": "forged"}),
             ("/tickets/T-2/split", {"operator": "forged", "reason": "different lamp"}),
             ("/supervisor/decisions", {"ticket_id": "T-3", "lead": "street-east-1", "supervisor": "forged"}),
             ("/callbacks", {"ticket_id": "T-4", "round": 1, "resolved": True, "satisfaction": "satisfied", "operator": "forged"})]
    for path, body in calls:
        headers = bearer("supervisor", "sup-1") if path.startswith("/supervisor") else None
        assert client.post(path, json=body, headers=headers).status_code == 202, path
    assert [topic for topic, _ in published] == [COMMANDS.name] * 4
    assert [type(e.data) for _, e in published] == [ev.ManualTriageSubmitted, ev.SplitSubmitted,
                                                    ev.SupervisorDecisionSubmitted, ev.CallbackSubmitted]
    assert [e.ticket_id for _, e in published] == ["T-1", "T-2", "T-3", "T-4"]
    data = [e.data for _, e in published]
    assert [data[0].operator, data[1].requested_by, data[2].supervisor, data[3].operator] == ["op-7", "op-7", "sup-1", "op-7"]
    published.clear()
    for _ in range(2):
        client.post("/callbacks", json=calls[3][1], headers={"Idempotency-Key": "cb-T-4-1"})
    client.post("/callbacks", json=calls[3][1])
    first, again, unkeyed = (e.id for _, e in published)
    assert first == again != unkeyed


def test_callbacks_in_one_batch_are_published_as_commands_and_unknown_tickets_are_named(api):
    from contracts import events as ev
    from contracts.topics import COMMANDS

    client, published, engine = api
    with Session(engine) as s:
        s.add(TicketStatus(ticket_id="T-1", status="awaiting-callback", requested_at=NOW, updated_at=NOW))
        s.commit()
    item = {"round": 1, "resolved": True, "satisfaction": "satisfied"}
    body = {"items": [{"ticket_id": "T-1", "idempotency_key": "cb-1", **item}, {"ticket_id": "T-404", **item}]}
    answer = client.post("/callbacks/batch", json=body)
    assert answer.status_code == 200
    assert answer.json()["results"] == [{"ticket_id": "T-1", "status": "recorded"}, {"ticket_id": "T-404", "status": "unknown-ticket"}]
    assert [(topic, type(e.data), e.ticket_id) for topic, e in published] == [(COMMANDS.name, ev.CallbackSubmitted, "T-1")]
    client.post("/callbacks/batch", json=body)
    assert published[0][1].id == published[1][1].id  # the same key: the same command
    assert client.post("/callbacks/batch", json={"items": []}).status_code == 422


# --- who is calling -----------------------------------------------------------------------------

def test_two_apps_using_the_same_idempotency_key_never_collide(api):
    client, published, _ = api
    body, key = {"text": "noise at night from the bar"}, {"Idempotency-Key": "order-1"}
    a = client.post("/tickets", json=body, headers={**key, **bearer("app", "a", client_id="app-a")}).json()["ticket_id"]
    a_again = client.post("/tickets", json=body, headers={**key, **bearer("app", "a2", client_id="app-a")}).json()["ticket_id"]
    b = client.post("/tickets", json=body, headers={**key, **bearer("app", "b", client_id="app-b")}).json()["ticket_id"]
    operator = client.post("/tickets", json=body, headers=key).json()["ticket_id"]
    assert a == a_again  # the key is the client's, whichever of its tokens retries
    assert len({a, b, operator}) == 3
    assert published[0][1].id == published[1][1].id and len({e.id for _, e in published}) == 3
    # the same for Open311 submissions (with a key of their own: a key names one body, see test_hostile_input.py)
    form, key = {"service_code": "city-management.street-light", "description": "lamp out"}, {"Idempotency-Key": "order-2"}
    ids = [client.post("/open311/v2/requests.json", data=form, headers={**key, **bearer("app", client_id=c)}).json()[0]
           ["service_request_id"] for c in ("app-a", "app-b")]
    assert ids[0] != ids[1]


def test_an_app_reads_back_only_the_open311_requests_its_client_submitted(api):
    client, published, engine = api
    form = {"service_code": "city-management.street-light", "description": "lamp out"}
    mine = client.post("/open311/v2/requests.json", data=form, headers=bearer("app", client_id="app-a")).json()[0]["service_request_id"]
    theirs = client.post("/open311/v2/requests.json", data=form, headers=bearer("app", client_id="app-b")).json()[0]["service_request_id"]
    by_operator = client.post("/tickets", json={"text": "lamp out on my street"}).json()["ticket_id"]
    with Session(engine) as s:
        for tid in (mine, theirs, by_operator):
            s.add(TicketStatus(ticket_id=tid, status="dispatched", requested_at=NOW, updated_at=NOW))
        s.commit()
    app_a = bearer("app", client_id="app-a")
    assert [r["service_request_id"] for r in client.get("/open311/v2/requests.json", headers=app_a).json()] == [mine]
    assert client.get(f"/open311/v2/requests/{mine}.json", headers=app_a).status_code == 200
    assert client.get(f"/open311/v2/requests/{theirs}.json", headers=app_a).status_code == 404
    assert client.get(f"/open311/v2/requests/{by_operator}.json", headers=app_a).status_code == 404
    everyone = {r["service_request_id"] for r in client.get("/open311/v2/requests.json", headers=bearer("auditor")).json()}
    assert everyone == {mine, theirs, by_operator}
    assert client.get("/open311/v2/requests.json", headers=bearer("app", client_id="app-c")).json() == []


def test_a_grid_worker_reports_from_its_own_grids_only(api):
    client, published, _ = api
    worker = bearer("grid-worker", "gw-1", grids=("grid-east-1-a-1",))
    inside = client.post("/tickets", json={"text": "manhole cover missing", "location": {"grid": "grid-east-1-a-1"}}, headers=worker)
    outside = client.post("/tickets", json={"text": "manhole cover missing", "location": {"grid": "grid-west-1-a-1"}}, headers=worker)
    assert (inside.status_code, outside.status_code) == (202, 403)
    assert len(published) == 1


def test_a_patrol_report_carries_its_reporter_from_the_roster(api):
    client, published, _ = api
    worker = bearer("grid-worker", "gw-east-1-a-1-1", grids=("grid-east-1-a-1",))
    body = {"text": "楼道堆放杂物", "channel": "grid-patrol", "location": {"grid": "grid-east-1-a-1"},
            "reported_by": "gw-east-1-a-1-1"}
    assert client.post("/tickets", json=body, headers=worker).status_code == 202
    assert published[0][1].data.reported_by == "gw-east-1-a-1-1"


def test_a_grid_worker_names_only_themselves_as_the_reporter(api):
    client, published, _ = api
    colleague = bearer("grid-worker", "gw-east-1-a-1-2", grids=("grid-east-1-a-1",))  # same grid, another worker
    body = {"text": "楼道堆放杂物", "channel": "grid-patrol", "location": {"grid": "grid-east-1-a-1"},
            "reported_by": "gw-east-1-a-1-1"}
    r = client.post("/tickets", json=body, headers=colleague)
    assert r.status_code == 403 and "reported_by" in r.json()["detail"] and published == []
    assert client.post("/tickets", json=body).status_code == 202  # an operator relays a worker's report


@pytest.mark.parametrize(("change", "words"), [
    ({"reported_by": "gw-nobody"}, "is not a grid worker of roster"),
    ({"reported_by": "gw-west-1-a-1-1"}, "not posted to grid grid-east-1-a-1"),
    ({"channel": "phone"}, "only a grid-patrol report names its reporter"),
])
def test_a_patrol_report_with_an_unknown_or_misplaced_reporter_is_422_naming_reported_by(api, change, words):
    client, published, _ = api
    body = {"text": "楼道堆放杂物", "channel": "grid-patrol", "location": {"grid": "grid-east-1-a-1"},
            "reported_by": "gw-east-1-a-1-1", **change}
    r = client.post("/tickets", json=body)
    assert r.status_code == 422 and published == []
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body", "reported_by"] and words in detail["msg"]


def test_the_demo_feeds_patrol_reports_are_accepted_with_their_reporter(api):
    import random

    from tools.hub import city_workers, patrol_report

    client, published, _ = api
    rng = random.Random(7)
    workers = city_workers("demo")
    bodies = [patrol_report(rng, workers) for _ in range(20)]
    assert all(client.post("/tickets", json=b, headers=bearer("app", client_id="demo-feed")).status_code == 202 for b in bodies)
    assert {e.data.reported_by for _, e in published} == {b["reported_by"] for b in bodies}
    assert {e.data.channel for _, e in published} == {"grid-patrol"}
