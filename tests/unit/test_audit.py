"""The audit trail of intake's HTTP door: one AuditRecorded per state-changing call, refused ones included, naming
who, what, when and from where, and never a body or a caller's personal data."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from contracts import events as ev
from contracts.topics import AUDIT, COMMANDS
from domain.catalogue import load_catalogue
from services.common.audit import outcome_of
from services.common.store import create_tables, make_engine
from services.intake.api import build_api
from services.intake.app import store_tables
from services.intake.models import TicketStatus
from tests.harness.auth import bearer, verifier

NOW = datetime(2026, 5, 6, 9, 0, tzinfo=UTC)
CALLER = {"caller_name": "王小明", "caller_phone": "13812345678"}


@pytest.fixture
def door(tmp_path):
    published: list = []

    async def publish(topic, envelope):
        published.append((topic, envelope))

    engine = make_engine(f"sqlite:///{tmp_path / 'intake.db'}")
    create_tables(engine, store_tables())
    with Session(engine) as s:
        s.add(TicketStatus(ticket_id="T-1", status="merged", requested_at=NOW, updated_at=NOW))
        s.commit()
    client = TestClient(build_api(publish=publish, engine=engine, catalogue=load_catalogue(), now=lambda: NOW, verifier=verifier()))
    return client, published


def trail(published) -> list[ev.AuditRecorded]:
    return [e.data for topic, e in published if topic == AUDIT.name]


def test_an_accepted_submit_is_recorded_with_who_what_when_and_where(door):
    client, published = door
    r = client.post("/tickets", json={"text": "路灯坏了", **CALLER}, headers={**bearer("app", "partner-1", client_id="wechat"),
                                                                             "X-Request-ID": "req-42"})
    assert r.status_code == 202 and r.headers["x-request-id"] == "req-42"
    (record,) = trail(published)
    assert (record.subject, record.roles, record.issuer, record.client_id) == ("partner-1", ("app",), "cityops", "wechat")
    assert (record.method, record.route, record.status_code, record.outcome) == ("POST", "/tickets", 202, "accepted")
    assert record.target_ids == (r.json()["ticket_id"],) and record.command_types == (ev.TicketSubmitted.event_type,)
    assert record.occurred_at == NOW and record.client_ip == "testclient" and record.request_id == "req-42"
    audit_envelope = next(e for topic, e in published if topic == AUDIT.name)
    assert audit_envelope.ticket_id == "partner-1"  # keyed by the caller: one caller's trail stays in order
    assert published[0][0] != AUDIT.name  # the audit record follows what it records


def test_a_decision_names_the_route_template_the_ticket_and_the_command(door):
    client, published = door
    r = client.post("/tickets/T-1/split", json={"reason": "different lamp"}, headers=bearer("supervisor", "sup-1"))
    assert r.status_code == 202
    (record,) = trail(published)
    assert (record.route, record.target_ids, record.command_types) == ("/tickets/{ticket_id}/split", ("T-1",),
                                                                       (ev.SplitSubmitted.event_type,))
    assert [topic for topic, _ in published] == [COMMANDS.name, AUDIT.name]


@pytest.mark.parametrize("headers, status, outcome, subject", [
    ({}, 401, "unauthenticated", None),
    ({"Authorization": "Bearer forged"}, 401, "unauthenticated", None),
    (bearer("auditor", "aud-1"), 403, "forbidden", "aud-1"),
    (bearer("operator", "op-7"), 422, "rejected", "op-7"),
])
def test_refused_calls_are_recorded_too(door, headers, status, outcome, subject):
    client, published = door
    body = {"text": "x", **CALLER, "caller_phone": "13812345678 call me"}  # 422 for an operator: text too short, phone bad
    assert client.post("/tickets", json=body, headers=headers).status_code == status
    (record,) = trail(published)
    assert (record.status_code, record.outcome, record.subject) == (status, outcome, subject)
    assert record.command_types == () and record.target_ids == ()
    assert [topic for topic, _ in published] == [AUDIT.name]  # nothing else was published


def test_no_body_and_no_personal_data_reach_the_trail(door):
    client, published = door
    client.post("/tickets", json={"text": "楼上装修噪音太大，晚上十点还在施工", **CALLER}, headers=bearer("operator"))
    client.post("/tickets", json={"text": "x", **CALLER}, headers=bearer("operator"))  # rejected: 422 echoes the input
    on_the_wire = json.dumps([r.model_dump(mode="json") for r in trail(published)], ensure_ascii=False)
    for secret in ("王小明", "13812345678", "装修噪音"):
        assert secret not in on_the_wire


def test_reads_are_not_recorded(door):
    client, published = door
    assert client.get("/tickets", headers=bearer("auditor")).status_code == 200
    assert client.get("/health").status_code == 200
    assert trail(published) == []


def test_a_trail_that_cannot_be_written_does_not_undo_the_call(tmp_path):
    published: list = []

    async def publish(topic, envelope):
        if topic == AUDIT.name:
            raise ConnectionError("broker gone")
        published.append((topic, envelope))

    engine = make_engine(f"sqlite:///{tmp_path / 'intake.db'}")
    create_tables(engine, store_tables())
    client = TestClient(build_api(publish=publish, engine=engine, catalogue=load_catalogue(), now=lambda: NOW, verifier=verifier()))
    assert client.post("/tickets", json={"text": "lamp out"}, headers=bearer("operator")).status_code == 202
    assert len(published) == 1


@pytest.mark.parametrize("status, outcome", [(202, "accepted"), (401, "unauthenticated"), (403, "forbidden"),
                                             (404, "rejected"), (409, "rejected"), (503, "failed")])
def test_outcomes(status, outcome):
    assert outcome_of(status) == outcome
