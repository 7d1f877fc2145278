"""What intake serves the operators' desk (the console): areas, the classifier's suggestions, my tickets, the
manual-triage candidates, and the callback queue with the caller's number (operators only, gone once erased)."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.examples import build_example
from contracts.topics import AUDIT
from domain.catalogue import load_catalogue
from domain.classifier import Prediction
from services.common.handler import HandlerContext, NoDeps
from services.common.store import create_tables, make_engine
from services.intake.api import build_api
from services.intake.app import store_tables
from services.intake.handlers import update_status
from services.intake.keystore import SealedCallerCopy, erase
from services.intake.models import TicketStatus
from services.intake.settings import IntakeSettings
from services.intake.suggest import Suggester
from tests.harness.auth import bearer, verifier

NOW = datetime(2026, 5, 6, 9, 0, tzinfo=UTC)
SECRET = "desk-test-pseudonym-key-" + "s" * 20


class FixedModel:
    """A classifier stand-in: the same ranked answer for every text."""

    def predict(self, text: str) -> Prediction:
        return Prediction(category="city-management.street-light", confidence=0.7,
                          alternatives=(("housing.shared-facility", 0.2), ("not-in-the-catalogue", 0.05), ("x", 0.01)))


def build(tmp_path: Any, suggester: Suggester | None = None, published: list[tuple[str, Any]] | None = None) -> tuple[Any, Any]:
    async def publish(topic: str, envelope: Any) -> None:
        if published is not None:
            published.append((topic, envelope))

    engine = make_engine(f"sqlite:///{tmp_path / 'intake.db'}")
    create_tables(engine, store_tables())
    app = build_api(publish=publish, engine=engine, catalogue=load_catalogue(), now=lambda: NOW, verifier=verifier(),
                    pseudonym_key=SECRET, suggester=suggester)
    return app, engine


def registered(engine: Any, ticket_id: str, status: str = "registered") -> None:
    """The status view's row, as the status consumer would have written it."""
    with Session(engine) as s, s.begin():
        s.merge(TicketStatus(ticket_id=ticket_id, status=status, text="路灯坏了", requested_at=NOW, updated_at=NOW))


def test_the_areas_cascade_from_district_to_grid(tmp_path: Any) -> None:
    app, _ = build(tmp_path)
    areas = TestClient(app).get("/catalogue/areas", headers=bearer("grid-worker")).json()
    by_id = {a["id"]: a for a in areas}
    grid = by_id["grid-east-1-a-1"]
    assert grid["level"] == "grid" and by_id[grid["parent"]]["level"] == "community"
    street = by_id[by_id[grid["parent"]]["parent"]]
    assert street["level"] == "street" and by_id[street["parent"]] == by_id["district-east"] | {"parent": None}
    assert {a["level"] for a in areas} == {"district", "street", "community", "grid"}


def test_suggestions_are_the_top_three_with_probabilities_and_names(tmp_path: Any) -> None:
    app, _ = build(tmp_path, Suggester(load=FixedModel))  # type: ignore[arg-type]
    answer = TestClient(app).get("/triage/suggestions", params={"text": "路灯不亮"}, headers=bearer("operator")).json()
    assert answer["ready"] is True
    assert [(s["category"], s["probability"]) for s in answer["suggestions"]] == [
        ("city-management.street-light", 0.7), ("housing.shared-facility", 0.2), ("not-in-the-catalogue", 0.05)]
    assert answer["suggestions"][0]["name"] and answer["suggestions"][2]["name"] is None


@pytest.mark.parametrize("params", [{}, {"text": ""}, {"text": "x" * 4001}])
def test_a_suggestion_without_a_text_is_422_naming_it(tmp_path: Any, params: dict[str, str]) -> None:
    app, _ = build(tmp_path, Suggester(load=FixedModel))  # type: ignore[arg-type]
    answer = TestClient(app).get("/triage/suggestions", params=params, headers=bearer("operator"))
    assert answer.status_code == 422 and "text" in answer.text


def test_suggestions_say_not_ready_while_the_model_loads_and_load_it_once(tmp_path: Any) -> None:
    release, loads = threading.Event(), []

    def slow() -> Any:
        loads.append(1)
        release.wait(10)
        return FixedModel()

    suggester = Suggester(load=slow, wait_s=0.05)

    async def run() -> tuple[Any, Any, Any]:
        first = await suggester.top("路灯")
        second = await suggester.top("路灯")
        release.set()
        await asyncio.sleep(0.2)
        return first, second, await suggester.top("路灯")

    first, second, third = asyncio.run(run())
    assert first is None and second is None and third is not None and third[0][0] == "city-management.street-light"
    assert loads == [1]
    app, _ = build(tmp_path)  # no model configured at all
    assert TestClient(app).get("/triage/suggestions", params={"text": "a"}, headers=bearer("app")).json() == {
        "ready": False, "suggestions": []}


def test_mine_lists_only_the_tickets_this_operator_submitted(tmp_path: Any) -> None:
    app, engine = build(tmp_path)
    client = TestClient(app)
    own = client.post("/tickets", json={"text": "路灯坏了"}, headers=bearer("operator", "op-1")).json()["ticket_id"]
    other = client.post("/tickets", json={"text": "噪音扰民"}, headers=bearer("operator", "op-2")).json()["ticket_id"]
    for ticket in (own, other):
        registered(engine, ticket)
    mine = client.get("/tickets", params={"mine": "true"}, headers=bearer("operator", "op-1")).json()
    assert [t["ticket_id"] for t in mine] == [own]
    everyone = client.get("/tickets", headers=bearer("operator", "op-1")).json()
    assert {t["ticket_id"] for t in everyone} == {own, other}


def test_the_manual_triage_queue_carries_the_classifiers_candidates(tmp_path: Any) -> None:
    app, engine = build(tmp_path)
    asked = build_example(ev.ManualTriageRequested).model_copy(update={
        "candidates": (("city-management.street-light", 0.41), ("housing.shared-facility", 0.38)), "reason": "low confidence"})
    with Session(engine) as s, s.begin():
        ctx = HandlerContext(session=s, now=lambda: NOW, source="/test", settings=IntakeSettings(), deps=NoDeps())
        list(update_status(ctx, Envelope.origin(asked, source="/test", ticket_id="T-MT", time=NOW)))
    client = TestClient(app, headers=bearer("operator"))
    [queued] = client.get("/tickets", params={"status": "manual-triage"}).json()
    assert queued["candidates"] == [{"category": "city-management.street-light", "confidence": 0.41},
                                    {"category": "housing.shared-facility", "confidence": 0.38}]
    assert queued["triage_reason"] == "low confidence"
    assert client.get("/tickets/T-MT").json()["candidates"] == queued["candidates"]
    registered(engine, "T-OTHER")
    assert "candidates" not in client.get("/tickets/T-OTHER").json()


def test_the_callback_queue_opens_the_callers_number_for_operators_only_until_erased(tmp_path: Any) -> None:
    app, engine = build(tmp_path)
    client = TestClient(app)
    body = {"text": "路灯坏了", "caller_name": "王五", "caller_phone": "13912345678"}
    handled = client.post("/tickets", json=body, headers=bearer("operator")).json()["ticket_id"]
    open_one = client.post("/tickets", json=body | {"text": "又坏了"}, headers=bearer("operator")).json()["ticket_id"]
    registered(engine, handled, "handled")
    registered(engine, open_one, "dispatched")
    [row] = client.get("/callbacks/queue", headers=bearer("operator")).json()
    assert row["ticket_id"] == handled and row["caller_phone"] == "13912345678" and row["caller_name"] == "王五"
    assert row["round"] == 1
    for role in ("supervisor", "auditor", "app", "unit", "grid-worker"):
        assert client.get("/callbacks/queue", headers=bearer(role, unit="water")).status_code == 403
    assert "13912345678" not in client.get("/tickets", headers=bearer("operator")).text
    erased = erase(engine, SECRET, "139 1234 5678")
    assert erased.keys == 1 and erased.tickets == 2
    [after] = client.get("/callbacks/queue", headers=bearer("operator")).json()
    assert after["caller_phone"] is None and after["caller_name"] is None
    with Session(engine) as s:
        assert s.exec(select(SealedCallerCopy)).all() == []


def test_opening_the_callback_queue_is_on_the_audit_trail_with_the_tickets_shown(tmp_path: Any) -> None:
    """Reads are not audited, except the one that shows callers' numbers: who opened it, when, and which
    tickets' callers it showed (never the numbers), refused attempts included."""
    published: list[tuple[str, Any]] = []
    app, engine = build(tmp_path, published=published)
    client = TestClient(app)
    shown = client.post("/tickets", json={"text": "路灯坏了", "caller_phone": "13912345678"}, headers=bearer("operator")).json()["ticket_id"]
    registered(engine, shown, "handled")

    def audit_of(route: str) -> list[ev.AuditRecorded]:
        return [e.data for topic, e in published if topic == AUDIT.name and e.data.route == route]

    client.get("/tickets", headers=bearer("operator"))
    assert [r.method for r in audit_of("/tickets")] == ["POST"]  # the submission, not the read
    client.get("/callbacks/queue", headers=bearer("operator", "desk-7"))
    client.get("/callbacks/queue", headers=bearer("supervisor", "nosy"))
    opened, refused = audit_of("/callbacks/queue")
    assert (opened.method, opened.subject, opened.outcome, opened.target_ids) == ("GET", "desk-7", "accepted", (shown,))
    assert (refused.subject, refused.outcome, refused.target_ids) == ("nosy", "forbidden", ())
    assert all("13912345678" not in e.model_dump_json() for topic, e in published if topic == AUDIT.name)
