"""A refused value is never echoed: the reason a record is dead-lettered (its headers, the log line) and what
intake logs about a refused HTTP request name the field and why, never what was in it (issue 11, point 5).

Each case puts a caller's phone number where it does not belong; the number must then appear nowhere but in
the dead-lettered record's own bytes (kept so an operator can repair and replay it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import structlog
from fastapi.testclient import TestClient

from contracts import codec
from contracts import events as ev
from contracts.envelope import Envelope
from contracts.topics import CHANNEL_INTAKE, INTAKE
from domain.catalogue import load_catalogue
from services.common.store import create_tables, make_engine
from services.intake.api import build_api
from services.intake.models import TicketStatus
from tests.harness.auth import bearer, verifier
from tests.harness.pipeline import Record, record_of, start

PHONE = "13912345678"


def _submitted_with(**data_changes: object) -> Record:
    """A TicketSubmitted record whose JSON body is then changed (what a foreign or buggy producer could write)."""
    envelope = Envelope.origin(ev.TicketSubmitted(channel=ev.Channel.phone, text="路灯坏了",
                                                  submitted_at=datetime(2026, 5, 6, 9, tzinfo=UTC)),
                               source="/test", ticket_id="T-PHONE")
    good = record_of(envelope, topic=INTAKE.name)
    body = json.loads(good.value or b"{}") | data_changes
    return Record(good.topic, 0, 7, good.key, json.dumps(body).encode(), good.headers)


def _no_phone_in(*texts: object) -> None:
    for text in texts:
        assert PHONE not in str(text), f"the rejected value is echoed in {text!r}"


def test_a_decode_failure_names_the_field_and_why_not_the_value():
    record = _submitted_with(urgency=PHONE)
    with pytest.raises(codec.DecodeError) as refused:
        codec.decode(record.key, record.value, record.headers)
    reason = str(refused.value)
    assert "urgency" in reason and "[enum]" in reason
    _no_phone_in(reason)


def test_a_message_that_quotes_its_input_is_blanked_and_input_and_context_are_dropped():
    errors = [{"type": "value_error", "loc": ("body", "caller_phone"), "msg": f"Value error, {PHONE} is not a number",
               "input": PHONE, "ctx": {"error": ValueError(PHONE)}}]
    assert codec.refusals(errors) == [{"loc": ["body", "caller_phone"], "msg": "Value error, <rejected value> is not a number",
                                       "type": "value_error"}]


def test_the_pipeline_dead_letters_an_invalid_record_with_a_reason_that_holds_no_value(tmp_path):
    svc = start("discover", tmp_path)
    record = _submitted_with(urgency=PHONE, caller={"name": "张三", "phone": f"call {PHONE} now"})
    with structlog.testing.capture_logs() as logs:
        out = svc.feed([record])
    assert [r.topic for r in out] == [INTAKE.name + ".dlq"] and out[0].value == record.value
    reason = out[0].header("dlq_error")
    assert reason is not None and "urgency" in reason and "caller.phone" in reason
    _no_phone_in(reason, logs)
    assert any(e["event"] == "record_dead_lettered" for e in logs)


def test_intake_s_machine_channel_dead_letters_an_invalid_submission_without_its_value(tmp_path):
    svc = start("intake-channel", tmp_path)
    body = {"text": "路灯坏了", "caller_phone": f"{PHONE} (evenings)", "urgency": PHONE}
    record = Record(CHANNEL_INTAKE.name, 0, 3, b"msg-1", json.dumps(body).encode(), [])
    with structlog.testing.capture_logs() as logs:
        out = svc.feed([record])
    assert [r.topic for r in out] == [CHANNEL_INTAKE.name + ".dlq"]
    reason = out[0].header("dlq_error")
    assert reason is not None and "caller_phone" in reason and "urgency" in reason
    _no_phone_in(reason, logs)


def test_a_refused_http_request_names_the_field_and_neither_answers_nor_logs_the_value(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'intake.db'}")
    create_tables(engine, [TicketStatus.__table__])
    published: list = []

    async def publish(topic, envelope):
        published.append((topic, envelope))

    client = TestClient(build_api(publish=publish, engine=engine, catalogue=load_catalogue(),
                                  now=lambda: datetime(2026, 5, 6, 9, tzinfo=UTC), verifier=verifier()),
                        headers=bearer("operator", "op-1"))
    with structlog.testing.capture_logs() as logs:
        r = client.post("/tickets", json={"text": "路灯坏了", "caller_phone": f"call {PHONE} now", "urgency": PHONE})
    assert r.status_code == 422 and [topic for topic, _ in published] == ["cityops.audit.v1"]  # the refusal, audited
    _no_phone_in(published[0][1].model_dump_json(), [])
    assert {e["loc"][-1] for e in r.json()["detail"]} == {"caller_phone", "urgency"}
    assert all(set(e) == {"loc", "msg", "type"} for e in r.json()["detail"])
    _no_phone_in(r.text, logs)
    assert [e["event"] for e in logs] == ["request_invalid"]
