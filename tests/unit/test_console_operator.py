"""The operator's desk pages against a fake intake: what they ask intake (with the operator's own token), what
they show, and how a refusal is shown (naming the field)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import httpx
from fastapi.testclient import TestClient

from services.common.auth import Role
from tests.harness.console import console_app, principal, signed_in

AREAS = [{"id": "district-east", "name": "东区", "name_en": "East", "level": "district", "parent": None},
         {"id": "street-east-1", "name": "东一街道", "name_en": "East 1", "level": "street", "parent": "district-east"},
         {"id": "community-east-1-a", "name": "东一甲社区", "name_en": "East 1 A", "level": "community", "parent": "street-east-1"},
         {"id": "grid-east-1-a-1", "name": "东一甲一网格", "name_en": "Grid E1A1", "level": "grid", "parent": "community-east-1-a"}]
CATEGORIES = [{"code": "city-management.street-light", "name": "路灯", "name_en": "Street light"},
              {"code": "housing.shared-facility", "name": "共用设施", "name_en": "Shared facility"}]
PHONE = "13912345678"


class FakeIntake:
    """Answers like intake and records what the console asked."""

    def __init__(self) -> None:
        self.calls: list[httpx.Request] = []
        self.refuse_submit: dict[str, Any] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        path, method = request.url.path, request.method
        query = parse_qs(request.url.query.decode())
        if path == "/catalogue/areas":
            return httpx.Response(200, json=AREAS)
        if path == "/catalogue/categories":
            return httpx.Response(200, json=CATEGORIES)
        if path == "/tickets" and method == "POST":
            if self.refuse_submit:
                return httpx.Response(422, json=self.refuse_submit)
            return httpx.Response(202, json={"ticket_id": "T-NEW-1", "status_url": "/tickets/T-NEW-1"})
        if path == "/tickets":
            return httpx.Response(200, json=self.tickets(query.get("status", [None])[0], "mine" in query))
        if path == "/triage/suggestions":
            return httpx.Response(200, json={"ready": True, "suggestions": [
                {"category": "city-management.street-light", "probability": 0.82, "name": "路灯", "name_en": "Street light"}]})
        if path == "/callbacks/queue":
            return httpx.Response(200, json=[self.row("T-CB-1", "handled") | {"caller_phone": PHONE, "caller_name": "王五"}])
        if method == "POST":
            return httpx.Response(202, json={"ok": True})
        return httpx.Response(404, json={"detail": "no such route"})

    @staticmethod
    def row(ticket_id: str, status: str, **extra: Any) -> dict[str, Any]:
        return {"ticket_id": ticket_id, "status": status, "text": "路灯坏了", "category": "city-management.street-light",
                "lead": "city-management", "round": 1, "district": "district-east", "grid": "grid-east-1-a-1",
                "master_ticket_id": None, "updated_at": "2026-05-06T09:00:00"} | extra

    def tickets(self, status: str | None, mine: bool) -> list[dict[str, Any]]:
        if status == "manual-triage":
            return [self.row("T-MT-1", "manual-triage", candidates=[{"category": "housing.shared-facility", "confidence": 0.41}],
                             triage_reason="low confidence")]
        if status == "merged":
            return [self.row("T-REP-1", "merged", master_ticket_id="T-MASTER-1")]
        return [self.row("T-MINE-1", "dispatched")] if mine else []

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        return [c for c in self.calls if c.method == method and c.url.path == path]


def desk() -> tuple[FakeIntake, TestClient]:
    intake = FakeIntake()
    app = console_app(intake)
    return intake, signed_in(app, principal(Role.operator, "op-7"))


def test_the_desk_has_the_form_with_cascading_areas_and_the_categories() -> None:
    intake, client = desk()
    page = client.get("/console/operator/")
    assert page.status_code == 200
    assert 'data-parent="community-east-1-a"' in page.text and 'value="grid-east-1-a-1"' in page.text
    assert 'value="city-management.street-light"' in page.text and 'name="key"' in page.text
    assert 'hx-get="/console/operator/suggestions"' in page.text and 'sse:ticket' in page.text
    token = client.cookies["cityops_session"]
    assert all(c.headers["authorization"] == f"Bearer {token}" for c in intake.calls)


def test_a_submission_goes_to_intake_with_its_location_and_a_stable_key() -> None:
    intake, client = desk()
    form = {"text": "路灯坏了", "key": "k-1", "category": "", "caller_name": "王五", "caller_phone": PHONE,
            "district": "district-east", "street": "street-east-1", "community": "", "grid": "grid-east-1-a-1", "lat": "", "lon": ""}
    answer = client.post("/console/operator/submit", data=form, headers={"HX-Request": "true"})
    assert answer.status_code == 200 and "T-NEW-1" in answer.text
    [sent] = intake.sent("POST", "/tickets")
    assert sent.headers["idempotency-key"] == "k-1"
    assert json.loads(sent.content) == {"text": "路灯坏了", "urgency": "normal", "caller_name": "王五", "caller_phone": PHONE,
                                        "location": {"district": "district-east", "street": "street-east-1", "grid": "grid-east-1-a-1"}}
    assert PHONE not in answer.text  # the fresh form does not echo the number back
    plain = client.post("/console/operator/submit", data=form)
    assert plain.status_code == 303 and plain.headers["location"] == "/console/operator/?submitted=T-NEW-1"


def test_a_refused_submission_names_the_field() -> None:
    intake, client = desk()
    intake.refuse_submit = {"detail": [{"loc": ["body", "location", "grid"], "msg": "unknown grid (not an area of the catalogue)"}]}
    answer = client.post("/console/operator/submit", data={"text": "路灯坏了", "key": "k-2", "grid": "grid-nowhere"},
                         headers={"HX-Request": "true"})
    assert answer.status_code == 422 and 'data-field="location.grid"' in answer.text and "unknown grid" in answer.text
    assert answer.headers["HX-Retarget"] == "#problems"


def test_a_form_without_its_text_is_422_naming_it_and_nothing_reaches_intake() -> None:
    intake, client = desk()
    answer = client.post("/console/operator/submit", data={"key": "k-3"})
    assert answer.status_code == 422 and "text" in answer.text and not intake.sent("POST", "/tickets")


def test_suggestions_show_names_and_probabilities_and_wait_for_two_characters() -> None:
    intake, client = desk()
    assert "路灯" not in client.get("/console/operator/suggestions", params={"text": "路"}).text
    assert not intake.sent("GET", "/triage/suggestions")
    shown = client.get("/console/operator/suggestions", params={"text": "路灯不亮"}).text
    assert 'data-category="city-management.street-light"' in shown and "82%" in shown


def test_my_tickets_are_asked_as_mine() -> None:
    intake, client = desk()
    shown = client.get("/console/operator/mine").text
    assert "T-MINE-1" in shown and "已派单" in shown
    [asked] = intake.sent("GET", "/tickets")
    assert parse_qs(asked.url.query.decode())["mine"] == ["true"]


def test_the_manual_triage_queue_resolves_in_one_click() -> None:
    intake, client = desk()
    page = client.get("/console/operator/triage").text
    assert "T-MT-1" in page and "41%" in page and "共用设施" in page and "low confidence" in page
    done = client.post("/console/operator/triage/T-MT-1/resolve", data={"category": "housing.shared-facility"},
                       headers={"HX-Request": "true"})
    assert done.status_code == 200 and "T-MT-1" in done.text
    [sent] = intake.sent("POST", "/triage/T-MT-1/resolve")
    assert json.loads(sent.content) == {"category": "housing.shared-facility"}


def test_the_callback_queue_shows_the_number_and_records_in_two_clicks() -> None:
    intake, client = desk()
    page = client.get("/console/operator/callbacks").text
    assert f'href="tel:{PHONE}"' in page and "王五" in page
    done = client.post("/console/operator/callbacks", data={"ticket_id": "T-CB-1", "round": "1", "resolved": "no",
                                                             "satisfaction": "unsatisfied"}, headers={"HX-Request": "true"})
    assert done.status_code == 200
    [sent] = intake.sent("POST", "/callbacks")
    assert json.loads(sent.content) == {"ticket_id": "T-CB-1", "round": 1, "resolved": False, "satisfaction": "unsatisfied", "comment": ""}
    bad = client.post("/console/operator/callbacks", data={"ticket_id": "T-CB-1", "round": "1", "resolved": "maybe",
                                                            "satisfaction": "unsatisfied"})
    assert bad.status_code == 422 and "resolved" in bad.text


def test_repeats_show_their_master_and_split_with_a_reason() -> None:
    intake, client = desk()
    page = client.get("/console/operator/repeats").text
    assert "T-REP-1" in page and "T-MASTER-1" in page
    assert client.post("/console/operator/tickets/T-REP-1/split", data={"reason": ""}).status_code == 422
    client.post("/console/operator/tickets/T-REP-1/split", data={"reason": "不同楼栋"})
    [sent] = intake.sent("POST", "/tickets/T-REP-1/split")
    assert json.loads(sent.content) == {"reason": "不同楼栋"}


def test_only_the_callback_page_asks_intake_for_callers() -> None:
    intake, client = desk()
    for page in ("/console/operator/", "/console/operator/mine", "/console/operator/triage", "/console/operator/repeats"):
        assert PHONE not in client.get(page).text
    assert not intake.sent("GET", "/callbacks/queue")


def test_an_intake_that_does_not_answer_shows_try_again() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = signed_in(console_app(down), principal(Role.operator))
    answer = client.get("/console/operator/triage")
    assert answer.status_code == 503 and "稍后重试" in answer.text
