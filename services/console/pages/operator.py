"""The hotline operator's desk (/console/operator/): take a call, follow my tickets live, decide the manual-triage
queue, call residents back, undo wrong merges.

Everything goes through intake's API with the operator's own token. The caller's phone number is shown on one
page only, the callback queue (回访), which is also the only page that asks intake for it.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from services.common.auth import Role

from ..deps import ConsoleDeps, NavItem
from ..session import page_user
from ..upstream import User

OPERATOR = page_user(Role.operator)
NAV = [NavItem("nav.operator", "/console/operator/", frozenset({Role.operator}))]
BASE = "/console/operator"
RECENT = 20
QUEUE = 100
AREA_LEVELS = ("district", "street", "community", "grid")
SATISFACTION = ("satisfied", "basically-satisfied", "unsatisfied")
TicketId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]
Text = Annotated[str, Form(max_length=4000)]
Short = Annotated[str, Form(max_length=200)]


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def back(request: Request, deps: ConsoleDeps, fragment: str, context: dict[str, Any], page: str) -> Response:
    """htmx gets the fragment that replaces what was acted on; a plain form post goes back to its page."""
    if is_htmx(request):
        return deps.render(request, fragment, context)
    return RedirectResponse(page, status_code=303)


class Areas:
    """The catalogue's areas from intake (GET /catalogue/areas), kept after the first answer: they change only with
    a new catalogue, which restarts the hub."""

    def __init__(self) -> None:
        self.by_level: dict[str, list[dict[str, Any]]] | None = None

    async def get(self, deps: ConsoleDeps, user: User) -> dict[str, list[dict[str, Any]]]:
        if self.by_level is None:
            areas = await deps.upstream.get("intake", "/catalogue/areas", user)
            self.by_level = {level: [a for a in areas if a["level"] == level] for level in AREA_LEVELS}
        return self.by_level


def location_of(form: dict[str, str]) -> dict[str, Any]:
    location: dict[str, Any] = {level: form[level] for level in AREA_LEVELS if form.get(level)}
    if form.get("address"):
        location["address"] = form["address"]
    for axis in ("lat", "lon"):
        if form.get(axis):
            location[axis] = form[axis]  # intake validates the number and names the field
    return location


def router(deps: ConsoleDeps) -> APIRouter:
    api = APIRouter(prefix=BASE)
    areas = Areas()
    categories: list[dict[str, Any]] = []

    async def category_list(user: User) -> list[dict[str, Any]]:
        if not categories:
            categories.extend(await deps.upstream.get("intake", "/catalogue/categories", user))
        return categories

    @api.get("/", include_in_schema=False)
    async def desk(request: Request, user: Annotated[User, Depends(OPERATOR)],
                   submitted: Annotated[str | None, Query(max_length=64)] = None) -> Response:
        return deps.render(request, "operator/desk.html", {
            "areas": await areas.get(deps, user), "categories": await category_list(user), "tab": "desk",
            "submission_key": uuid.uuid4().hex, "submitted": submitted})

    @api.post("/submit", include_in_schema=False)
    async def submit(request: Request, user: Annotated[User, Depends(OPERATOR)], text: Text, key: Short,
                     category: Short = "", caller_name: Short = "", caller_phone: Short = "", urgency: Short = "normal",
                     district: Short = "", street: Short = "", community: Short = "", grid: Short = "",
                     address: Short = "", lat: Short = "", lon: Short = "") -> Response:
        form = {"district": district, "street": street, "community": community, "grid": grid, "address": address,
                "lat": lat, "lon": lon}
        body: dict[str, Any] = {"text": text, "location": location_of(form), "urgency": urgency or "normal"}
        for name, value in (("category", category), ("caller_name", caller_name), ("caller_phone", caller_phone)):
            if value.strip():
                body[name] = value.strip()
        # The form's own key: a double click or a retry after a timeout is the same ticket, not two.
        accepted = await deps.upstream.post("intake", "/tickets", user, json=body, headers={"Idempotency-Key": key})
        ticket_id = accepted["ticket_id"]
        if is_htmx(request):
            return deps.render(request, "operator/_submitted.html", {
                "ticket_id": ticket_id, "areas": await areas.get(deps, user), "categories": await category_list(user),
                "submission_key": uuid.uuid4().hex})
        return RedirectResponse(f"{BASE}/?submitted={ticket_id}", status_code=303)

    @api.get("/suggestions", include_in_schema=False)
    async def suggestions(request: Request, user: Annotated[User, Depends(OPERATOR)],
                          text: Annotated[str, Query(max_length=4000)] = "") -> Response:
        answer = {"ready": True, "suggestions": []}
        if len(text.strip()) >= 2:
            answer = await deps.upstream.get("intake", "/triage/suggestions", user, params={"text": text})
        return deps.render(request, "operator/_suggestions.html", answer)

    @api.get("/mine", include_in_schema=False)
    async def mine(request: Request, user: Annotated[User, Depends(OPERATOR)]) -> Response:
        tickets = await deps.upstream.get("intake", "/tickets", user, params={"mine": "true", "limit": RECENT})
        return deps.render(request, "operator/_mine.html", {"tickets": tickets})

    @api.get("/triage", include_in_schema=False)
    async def triage(request: Request, user: Annotated[User, Depends(OPERATOR)]) -> Response:
        tickets = await deps.upstream.get("intake", "/tickets", user, params={"status": "manual-triage", "limit": QUEUE})
        return deps.render(request, "operator/triage.html", {"tickets": tickets, "categories": await category_list(user),
                                                             "tab": "triage", "names": names(await category_list(user))})

    @api.post("/triage/{ticket_id}/resolve", include_in_schema=False)
    async def resolve(request: Request, user: Annotated[User, Depends(OPERATOR)], ticket_id: TicketId, category: Short) -> Response:
        await deps.upstream.post("intake", f"/triage/{ticket_id}/resolve", user, json={"category": category},
                                 headers={"Idempotency-Key": f"console-triage-{ticket_id}-{category}"})
        return back(request, deps, "operator/_done.html", {"ticket_id": ticket_id, "message": "operator.triage_done",
                                                            "detail": category},
                    f"{BASE}/triage")

    @api.get("/callbacks", include_in_schema=False)
    async def callbacks(request: Request, user: Annotated[User, Depends(OPERATOR)]) -> Response:
        queue = await deps.upstream.get("intake", "/callbacks/queue", user, params={"limit": QUEUE})
        return deps.render(request, "operator/callbacks.html", {"tickets": queue, "tab": "callbacks",
                                                                "satisfaction": SATISFACTION,
                                                                "names": names(await category_list(user))})

    @api.post("/callbacks", include_in_schema=False)
    async def record_callback(request: Request, user: Annotated[User, Depends(OPERATOR)], ticket_id: Annotated[str, Form(max_length=64)],
                              round: Annotated[int, Form(ge=1, le=100)], resolved: Annotated[str, Form(pattern="^(yes|no)$")],
                              satisfaction: Annotated[str, Form(pattern="^(satisfied|basically-satisfied|unsatisfied)$")],
                              comment: Annotated[str, Form(max_length=1000)] = "") -> Response:
        body = {"ticket_id": ticket_id, "round": round, "resolved": resolved == "yes", "satisfaction": satisfaction,
                "comment": comment}
        await deps.upstream.post("intake", "/callbacks", user, json=body,
                                 headers={"Idempotency-Key": f"console-callback-{ticket_id}-{round}"})
        return back(request, deps, "operator/_done.html", {"ticket_id": ticket_id, "message": "operator.callback_done",
                                                            "detail": ""}, f"{BASE}/callbacks")

    @api.get("/repeats", include_in_schema=False)
    async def repeats(request: Request, user: Annotated[User, Depends(OPERATOR)]) -> Response:
        merged = await deps.upstream.get("intake", "/tickets", user, params={"status": "merged", "limit": QUEUE})
        return deps.render(request, "operator/repeats.html", {"tickets": merged, "tab": "repeats"})

    @api.post("/tickets/{ticket_id}/split", include_in_schema=False)
    async def split(request: Request, user: Annotated[User, Depends(OPERATOR)], ticket_id: TicketId,
                    reason: Annotated[str, Form(min_length=1, max_length=1000)]) -> Response:
        await deps.upstream.post("intake", f"/tickets/{ticket_id}/split", user, json={"reason": reason},
                                 headers={"Idempotency-Key": f"console-split-{ticket_id}-{uuid.uuid4().hex[:8]}"})
        return back(request, deps, "operator/_done.html", {"ticket_id": ticket_id, "message": "operator.split_done",
                                                            "detail": ""}, f"{BASE}/repeats")

    return api


def names(categories: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Category code -> its name in each language (templates pick by `lang`)."""
    return {c["code"]: {"zh": c["name"], "en": c["name_en"]} for c in categories}
