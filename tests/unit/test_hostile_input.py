"""Hostile input at the hub's HTTP doors (issue 12, point 1): every bad request gets a 4xx naming the field,
never a 5xx, and publishes nothing (the audit trail, which records refused calls too, is kept apart).

Each case here was a 5xx or a 202 before: a malformed Open311 body (500), a 2 MB body (500), a NUL in a text
(202, then dead-lettered by PostgreSQL), the same Idempotency-Key with another text (202 and the first ticket).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from contracts.topics import AUDIT
from domain.catalogue import load_catalogue
from services.common.auth import Role
from services.common.inputs import ADDRESS_MAX, MAX_BODY_BYTES, NOTE_MAX, TEXT_MAX, BodySizeLimit, control_character
from services.common.store import create_tables, make_engine
from services.intake.api import build_api
from services.intake.app import store_tables
from tests.harness.auth import bearer, verifier
from tests.harness.bridge import BridgeHarness, assigned

NOW = datetime(2026, 5, 6, 9, 0, tzinfo=UTC)
LIGHT = "city-management.street-light"
OPEN311 = "/open311/v2/requests.json"
JSON = {"content-type": "application/json"}


@pytest.fixture
def intake(tmp_path):
    published: list = []
    audits: list = []

    async def publish(topic, envelope):
        (audits if topic == AUDIT.name else published).append((topic, envelope))

    engine = make_engine(f"sqlite:///{tmp_path / 'intake.db'}")
    create_tables(engine, store_tables())
    app = build_api(publish=publish, engine=engine, catalogue=load_catalogue(), now=lambda: NOW, verifier=verifier())
    client = TestClient(app, headers=bearer("operator", "op-7"), raise_server_exceptions=False)
    client.audits = audits  # type: ignore[attr-defined]
    return client, published


def post(client, path: str, body: object, **kw):
    """POST `body` as JSON escaped to ASCII, as Python's json does: a lone surrogate travels as \\ud800."""
    return client.post(path, content=json.dumps(body).encode(), headers={**JSON, **kw.pop("headers", {})}, **kw)


def refused(r, status: int = 422) -> list[str]:
    """The dotted fields a refusal names (and that it is one)."""
    assert r.status_code == status, r.text
    return [".".join(str(p) for p in d["loc"]) for d in r.json()["detail"]] if status == 422 else []


# ---------------------------------------------------------------------------------------------- the text rules

@pytest.mark.parametrize("value, multiline, at", [
    ("路灯坏了", False, None), ("two\nlines\tand a tab", True, None), ("two\nlines", False, 3),
    ("nul\u0000", True, 3), ("bell\u0007", True, 4), ("del\u007f", True, 3), ("c1\u0085", True, 2),
    ("lone \ud800 surrogate", True, 5), ("emoji 😀 is fine", False, None),
])
def test_control_characters_are_found_where_they_are(value, multiline, at):
    assert control_character(value, multiline=multiline) == at


# ---------------------------------------------------------------------------------------------- intake

@pytest.mark.parametrize("body, field", [
    ({"text": "路灯坏了\u0000"}, "body.text"),
    ({"text": "lamp \ud800 out"}, "body.text"),
    ({"text": "x" * (TEXT_MAX + 1)}, "body.text"),
    ({"text": "lamp out", "caller_name": "李\u0000四"}, "body.caller_name"),
    ({"text": "lamp out", "caller_name": "n" * 101}, "body.caller_name"),
    ({"text": "lamp out", "location": {"address": "桂花路\n88号"}}, "body.location.address"),
    ({"text": "lamp out", "location": {"address": "a" * (ADDRESS_MAX + 1)}}, "body.location.address"),
    ({"text": "lamp out", "location": {"grid": "g" * 200}}, "body.location.grid"),
    ({"text": "lamp out", "location": {"grid": "grid-nowhere"}}, "body.location.grid"),
    ({"text": "lamp out", "location": {"grid": "district-east"}}, "body.location.grid"),  # an area, of another level
    ({"text": "lamp out", "location": {"district": "district-east", "street": "no-such-street"}}, "body.location.street"),
    ({"text": "lamp out", "external_id": "e" * 129}, "body.external_id"),
    ({"text": "lamp out", "external_id": "id\u0000"}, "body.external_id"),
    ({"text": "lamp out", "category": "c" * 129}, "body.category"),
    ({"text": "lamp out", "submitted_at": "9999-12-31T23:59:59-23:59"}, "body.submitted_at"),
    ({"text": "lamp out", "submitted_at": "1900-01-01T00:00:00+08:00"}, "body.submitted_at"),
])
def test_a_bad_complaint_is_422_naming_the_field_and_publishes_nothing(intake, body, field):
    client, published = intake
    assert field in refused(post(client, "/tickets", body))
    assert published == []


@pytest.mark.parametrize("raw, field", [
    (b'{"text": "lamp out", "location": {"lat": NaN}}', "body.location.lat"),
    (b'{"text": "lamp out", "location": {"lon": Infinity}}', "body.location.lon"),
    (b'{"text": "lamp out", "location": {"lat": -Infinity}}', "body.location.lat"),
])
def test_nan_and_infinity_on_tickets_are_422(intake, raw, field):
    client, published = intake
    assert field in refused(client.post("/tickets", content=raw, headers=JSON))
    assert published == []


@pytest.mark.parametrize("raw", [b'{"text": "lamp out"', b"[" * 100_000, b"\xff\xfe{}"])
def test_a_malformed_json_body_on_tickets_is_400_or_422(intake, raw):
    client, published = intake
    r = client.post("/tickets", content=raw, headers=JSON)
    assert r.status_code in (400, 422), r.text
    assert published == []


@pytest.mark.parametrize("raw, content_type, field", [
    (b'{"service_code": "' + LIGHT.encode() + b'", "description": "lamp out"', "application/json", "body"),
    (b"[" * 100_000, "application/json", "body"),
    (b'{"service_code": "' + LIGHT.encode() + b'", "description": "lamp out", "lat": NaN}', "application/json", "body.lat"),
    (b'{"service_code": "' + LIGHT.encode() + b'", "description": "lamp out", "long": Infinity}', "application/json", "body.long"),
    (b"[1, 2]", "application/json", "body"),
    (b"service_code=" + LIGHT.encode() + b"&description=\xff\xfe", "application/x-www-form-urlencoded", "body"),
    (b"service_code=" + LIGHT.encode() + b"&description=lamp%00out", "application/x-www-form-urlencoded", "body.description"),
    (b"service_code=" + LIGHT.encode() + b"&description=lamp+out&phone=((()))", "application/x-www-form-urlencoded", "body.phone"),
    (b"service_code=" + LIGHT.encode() + b"&description=lamp+out&device_id=" + b"d" * 200, "application/x-www-form-urlencoded",
     "body.device_id"),
    (b"service_code=" + LIGHT.encode() + b"&description=lamp+out&first_name=" + b"f" * 60, "application/x-www-form-urlencoded",
     "body.first_name"),
])
def test_a_bad_open311_request_is_422_naming_the_field(intake, raw, content_type, field):
    client, published = intake
    assert field in refused(client.post(OPEN311, content=raw, headers={"content-type": content_type}))
    assert published == []


def test_a_body_over_the_budget_is_413_whether_its_length_is_declared_or_not(intake):
    client, published = intake
    huge = b'{"text": "lamp out", "location": {"address": "' + b"x" * (2 * 1024 * 1024) + b'"}}'
    refused(client.post("/tickets", content=huge, headers=JSON), 413)
    refused(client.post(OPEN311, content=huge, headers=JSON), 413)

    def chunks():  # no Content-Length: a chunked upload is read no further than the budget
        for _ in range(40):
            yield b"x" * 65536
    refused(client.post("/tickets", content=chunks(), headers=JSON), 413)
    assert published == []


async def test_the_limit_hands_a_chunked_body_within_budget_on_whole():
    seen = []

    async def app(scope, receive, send):
        seen.append(await receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    messages = iter([{"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.request", "body": b"c", "more_body": False}])

    async def receive():
        return next(messages)

    async def send(message):
        pass
    await BodySizeLimit(app, max_bytes=3)(({"type": "http", "headers": []}), receive, send)
    assert seen == [{"type": "http.request", "body": b"abc", "more_body": False}]


def test_the_body_budget_holds_the_largest_valid_complaint_json_escaped():
    """A JSON encoder that escapes every character (\\ud83d\\ude00: 12 bytes for one emoji) still fits."""
    body = json.dumps({"text": "😀" * TEXT_MAX, "caller_name": "😀" * 100, "location": {"address": "😀" * ADDRESS_MAX},
                       "external_id": "😀" * 128}, ensure_ascii=True)
    assert len(body) < MAX_BODY_BYTES


def test_the_same_idempotency_key_with_another_body_is_409_on_tickets_and_open311(intake):
    client, published = intake
    key = {"Idempotency-Key": "k-1"}
    first = client.post("/tickets", json={"text": "lamp out on Guihua Road"}, headers=key)
    again = client.post("/tickets", json={"text": "lamp out on Guihua Road"}, headers=key)
    other = client.post("/tickets", json={"text": "noise at night from the bar"}, headers=key)
    assert first.status_code == again.status_code == 202 and first.json() == again.json()
    assert other.status_code == 409 and first.json()["ticket_id"] in other.json()["detail"]
    assert [e.data.text for _, e in published] == ["lamp out on Guihua Road"] * 2
    form = {"service_code": LIGHT, "description": "lamp out"}
    key = {"Idempotency-Key": "k-2"}
    a = client.post(OPEN311, data=form, headers=key)
    b = client.post(OPEN311, data=form, headers=key)
    c = client.post(OPEN311, data={**form, "description": "lamp flickers"}, headers=key)
    assert a.status_code == b.status_code == 201 and a.json() == b.json() and c.status_code == 409
    assert len(published) == 4
    # another caller's key of the same name is another key
    mine = client.post("/tickets", json={"text": "noise at night"}, headers={**key, **bearer("operator", "op-8")})
    assert mine.status_code == 202


@pytest.mark.parametrize("method, path, body, field", [
    ("post", "/residents/events", {"resident_ref": "r\u0000", "kind": "birthday", "occurred_on": "2026-05-01T00:00:00+08:00"}, "body.resident_ref"),
    ("post", "/residents/events", {"resident_ref": "r" * 200, "kind": "birthday", "occurred_on": "2026-05-01T00:00:00+08:00"}, "body.resident_ref"),
    ("post", "/residents/events", {"resident_ref": "r-1", "kind": "birthday", "occurred_on": "0001-01-01T00:00:00+08:00"}, "body.occurred_on"),
    ("post", "/residents/events", {"resident_ref": "r-1", "kind": "birthday", "occurred_on": "2026-05-01T00:00:00+08:00",
                                   "location": {"grid": "grid-nowhere"}}, "body.location.grid"),
    ("post", "/callbacks", {"ticket_id": "T-1", "round": 1, "resolved": True, "satisfaction": "satisfied", "comment": "ok\u0000"}, "body.comment"),
    ("post", "/callbacks", {"ticket_id": "T-1", "round": 10**30, "resolved": True, "satisfaction": "satisfied"}, "body.round"),
    ("post", "/callbacks", {"ticket_id": "T-1", "round": 1, "resolved": True, "satisfaction": "satisfied", "comment": "c" * (NOTE_MAX + 1)}, "body.comment"),
    ("post", "/callbacks", {"ticket_id": "T\u0000", "round": 1, "resolved": True, "satisfaction": "satisfied"}, "body.ticket_id"),
    ("post", "/supervisor/decisions", {"ticket_id": "T-1", "lead": "water", "co_units": ["power"] * 6}, "body.co_units"),
    ("post", "/supervisor/decisions", {"ticket_id": "T-1", "lead": "water", "note": "n\u0000"}, "body.note"),
    ("post", "/triage/T-1/resolve", {"category": "c\u0000"}, "body.category"),
    ("post", "/tickets/T-1/split", {"reason": "r" * (NOTE_MAX + 1)}, "body.reason"),
    ("get", "/tickets/T%00", None, "path.ticket_id"),
    ("get", "/tickets/" + "T" * 200, None, "path.ticket_id"),
    ("get", "/tickets?status=closed%00", None, "query.status"),
    ("get", OPEN311 + "?service_request_id=T-1%00", None, "query.service_request_id"),
    ("get", OPEN311 + "?start_date=9999-12-31T23:59:59-23:59", None, "query.start_date"),
])
def test_every_other_route_caps_and_cleans_its_fields(intake, method, path, body, field):
    client, published = intake
    headers = {**bearer("supervisor", "sup-1")} if "decisions" in path else {}
    if "residents" in path:
        headers = bearer("app", "register-1")
    r = client.request(method.upper(), path, json=body, headers=headers)
    assert field in refused(r)
    assert published == []


# ---------------------------------------------------------------------------------------------- the unit bridge

@pytest.fixture
def bridge(tmp_path) -> BridgeHarness:
    return BridgeHarness(tmp_path)


@pytest.mark.parametrize("path, body, field", [
    ("progress", {"note": "on site\u0000"}, "body.note"),
    ("progress", {"note": "n" * (NOTE_MAX + 1)}, "body.note"),
    ("return", {"reason": "not ours", "suggested_unit": "u" * 200}, "body.suggested_unit"),
    ("complete", {"result": "fixed \ud800"}, "body.result"),
    ("complete", {"result": "r" * (TEXT_MAX + 1)}, "body.result"),
])
async def test_the_bridge_refuses_control_characters_and_long_strings(bridge, path, body, field):
    task = assigned("T-1", "water")
    await bridge.feed(task)
    r = post(bridge.client, f"/tasks/{task.data.task_id}/{path}", body, headers=bridge.auth(Role.unit, unit="water"))
    assert field in refused(r)
    assert bridge.published == []


async def test_the_bridge_refuses_a_body_over_the_budget_and_a_hostile_path(bridge):
    task = assigned("T-1", "water")
    await bridge.feed(task)
    auth = bridge.auth(Role.unit, unit="water")
    huge = b'{"note": "' + b"x" * (MAX_BODY_BYTES + 1) + b'"}'
    refused(bridge.client.post(f"/tasks/{task.data.task_id}/progress", content=huge, headers={**auth, **JSON}), 413)
    assert "path.task_id" in refused(bridge.client.get("/tasks/T%00", headers=auth))
    assert "path.task_id" in refused(bridge.client.post("/tasks/" + "t" * 300 + "/sign-for", headers=auth))
    assert "query.unit" in refused(bridge.client.get("/tasks?unit=water%00", headers=auth))
    assert bridge.published == []


def test_the_audit_trail_of_a_refused_call_keeps_no_hostile_id_or_path(intake):
    client, _ = intake
    assert client.post("/tickets/T%00" + "x" * 300 + "/split", json={"reason": "r"}).status_code == 422
    assert client.post("/no-such-route/%00", json={}).status_code == 404
    (_, refused_call), (_, unmatched) = client.audits
    assert refused_call.data.target_ids == ("<not an id>",) and refused_call.data.route == "/tickets/{ticket_id}/split"
    assert unmatched.data.route == "<unrecognised path>"


# ---------------------------------------------------------------------------------------------- the machine channel

@pytest.mark.parametrize("body, field", [
    ({"text": "路灯坏了\u0000"}, "text"),
    ({"text": "路灯坏了", "location": {"grid": "grid-nowhere"}}, "location.grid"),
    ({"text": "路灯坏了", "location": {"address": "a" * (ADDRESS_MAX + 1)}}, "location.address"),
])
def test_the_machine_channel_dead_letters_what_the_http_api_refuses(tmp_path, body, field):
    from contracts.topics import CHANNEL_INTAKE
    from tests.harness.pipeline import Record, start

    svc = start("intake-channel", tmp_path)
    out = svc.feed([Record(CHANNEL_INTAKE.name, 0, 3, b"msg-1", json.dumps(body).encode(), [])])
    assert [r.topic for r in out] == [CHANNEL_INTAKE.name + ".dlq"]
    assert field in (out[0].header("dlq_error") or "")
