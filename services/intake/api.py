"""The hotline's HTTP API: submit, status, operator actions, and the Open311 GeoReport v2 edge."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from contracts import events as ev
from contracts.codec import refusals
from contracts.envelope import Envelope, derive_event_id
from contracts.topics import COMMANDS, INTAKE, RESIDENTS
from domain.catalogue import Catalogue, Category
from domain.privacy import mask_free_text
from domain.statuses import LEGACY_STATUS_NAMES, parse_status
from services.common.logs import get_logger
from services.common.settings import DEFAULT_PSEUDONYM_KEY

from .domain import SOURCE, ComplaintIn, Open311Request, submission_event
from .keystore import seal_in_store
from .models import TicketStatus
from .privacy_api import privacy_router

Publish = Callable[[str, Envelope[Any]], Awaitable[None]]

log = get_logger(__name__)


class Accepted(BaseModel):
    ticket_id: str = Field(description="The ticket's id.")
    status_url: str = Field(description="Where to follow it.")


class ManualTriageIn(BaseModel):
    category: str = Field(description="Category code the operator chose.")
    operator: str = Field(min_length=1, description="Operator id.")


class SplitIn(BaseModel):
    operator: str = Field(min_length=1, description="Operator id.")
    reason: str = Field(min_length=1, description="Why the tickets are different problems.")


class DecisionIn(BaseModel):
    ticket_id: str = Field(description="Ticket decided.")
    lead: str = Field(description="Unit that leads; it may not return the ticket.")
    co_units: list[str] = Field(default_factory=list, description="Co-handling units.")
    level: ev.Level = Field(default=ev.Level.district, description="Level it is handled at.")
    supervisor: str = Field(min_length=1, description="Supervisor id.")
    consultation_id: str | None = Field(default=None, description="The consultation decided.")
    note: str = Field(default="", description="Reasoning.")


class CallbackIn(BaseModel):
    ticket_id: str = Field(description="Ticket called back.")
    round: int = Field(ge=1, description="Handling round evaluated.")
    resolved: bool = Field(description="Resident says it is solved.")
    satisfaction: ev.Satisfaction = Field(description="satisfied, basically-satisfied or unsatisfied.")
    operator: str = Field(default="hotline", description="Who called.")
    comment: str = Field(default="", description="Resident's words.")
    reasonable_demand: bool = Field(default=True, description="False for a demand judged unreasonable.")


class CallbackBatchItem(CallbackIn):
    idempotency_key: str | None = Field(default=None, max_length=200,
                                        description="A retry with the same key is applied once (as the header on POST /callbacks).")


class CallbackBatchIn(BaseModel):
    items: list[CallbackBatchItem] = Field(min_length=1, max_length=500, description="Callbacks to record, at most 500.")


def build_api(*, publish: Publish, engine: Engine, catalogue: Catalogue, now: Callable[[], datetime],
              lifespan: Any = None, pseudonym_key: str = DEFAULT_PSEUDONYM_KEY) -> FastAPI:
    """The API. A submission's caller is sealed in intake's key store (its tables must exist in `engine`)
    with `pseudonym_key` before it is published; the app factory checks that key in production."""
    async def publish_submission(envelope: Envelope[Any]) -> None:
        sealed = await asyncio.to_thread(seal_in_store, engine, pseudonym_key, envelope)
        await publish(INTAKE.name, sealed)

    api = FastAPI(lifespan=lifespan, title="cityops hotline intake", version="1",
                  description="Submit complaints, follow tickets, resolve manual triage, decide disputes, record callbacks; Open311 GeoReport v2 at /open311/v2.")
    api.add_exception_handler(RequestValidationError, _invalid_request)
    api.include_router(_hotline_router(publish, publish_submission, engine, catalogue, now))
    api.include_router(_open311_router(publish_submission, engine, catalogue, now), prefix="/open311/v2")
    api.include_router(privacy_router(engine, pseudonym_key))
    return api


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each refused field and why, never the value (FastAPI's default answer, and anything that
    logs it, would carry each error's `input`: a caller's phone number, a name)."""
    assert isinstance(exc, RequestValidationError)
    detail = refusals(exc.errors())
    log.info("request_invalid", method=request.method, path=request.url.path,
             refused=[{"loc": ".".join(str(p) for p in e["loc"]), "type": e["type"]} for e in detail])
    return JSONResponse(status_code=422, content={"detail": detail})


def _known_category(catalogue: Catalogue, code: str | None, field: tuple[str, ...]) -> None:
    if code is not None and not catalogue.has_category(code):
        raise RequestValidationError([{"type": "value_error", "loc": field, "msg": "unknown category (GET /catalogue/categories lists them)", "input": code}])


def _has_unit(catalogue: Catalogue, unit_id: str) -> bool:
    try:
        catalogue.unit(unit_id)
    except KeyError:
        return False
    return True


def _canonical(word: str) -> str:
    """The status word of today's vocabulary (a row written before the rename may hold an older one)."""
    try:
        return str(parse_status(word))
    except ValueError:
        return word


def _status_words(word: str) -> list[str]:
    """Every stored word that means this status: its name and its legacy synonyms."""
    canonical = _canonical(word)
    return [canonical, *(old for old, new in LEGACY_STATUS_NAMES.items() if new == canonical)]


def _public(row: TicketStatus) -> dict[str, Any]:
    out = row.model_dump()
    out["status"] = _canonical(row.status)
    return out
def _command(data: ev.Event, ticket_id: str, now: datetime, idempotency_key: str | None) -> Envelope[Any]:
    """An operator's or supervisor's decision for the command topic. With an Idempotency-Key its id is
    derived from the key, so a retried request is the same command and its step applies it once."""
    event_id = derive_event_id("intake-command", data.event_type, 0, idempotency_key) if idempotency_key else None
    return Envelope.origin(data, source=SOURCE, ticket_id=ticket_id, time=now, event_id=event_id)


IdempotencyKey = Annotated[str | None, Header(max_length=200, description="A retry with the same key is applied once.")]


def _status_or_404(engine: Engine, ticket_id: str) -> TicketStatus:
    with Session(engine) as s:
        row = s.get(TicketStatus, ticket_id)
    if row is None:
        raise HTTPException(404, f"no ticket {ticket_id} (it may still be on its way: try again in a moment)")
    return row


def _known_tickets(engine: Engine, ticket_ids: set[str]) -> set[str]:
    with Session(engine) as s:
        return set(s.exec(select(TicketStatus.ticket_id).where(col(TicketStatus.ticket_id).in_(ticket_ids))).all())


PublishSubmission = Callable[[Envelope[Any]], Awaitable[None]]


def _hotline_router(publish: Publish, publish_submission: PublishSubmission, engine: Engine, catalogue: Catalogue,
                    now: Callable[[], datetime]) -> APIRouter:
    r = APIRouter()

    @r.post("/tickets", status_code=202, response_model=Accepted, tags=["hotline"])
    async def submit(complaint: ComplaintIn,
                     idempotency_key: Annotated[str | None, Header(max_length=200)] = None) -> Accepted:
        """Submit a complaint. A retry with the same Idempotency-Key returns the same ticket and creates nothing new."""
        _known_category(catalogue, complaint.category, ("body", "category"))
        envelope = submission_event(complaint, now=now(), idempotency_key=idempotency_key)
        await publish_submission(envelope)
        return Accepted(ticket_id=envelope.ticket_id, status_url=f"/tickets/{envelope.ticket_id}")

    @r.get("/tickets/{ticket_id}", tags=["hotline"])
    async def status(ticket_id: str) -> dict[str, Any]:
        """Where a ticket is now."""
        return _public(_status_or_404(engine, ticket_id))

    @r.get("/tickets", tags=["hotline"])
    async def list_tickets(status: str | None = None, limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
        """Tickets, newest first, optionally by status (e.g. manual-triage, supervisor-review; the older
        words consultation and re-handling still select consulting and reopened)."""
        with Session(engine) as s:
            q = select(TicketStatus)
            if status:
                q = q.where(col(TicketStatus.status).in_(_status_words(status)))
            rows = s.exec(q.order_by(col(TicketStatus.updated_at).desc()).limit(limit)).all()
        return [_public(row) for row in rows]

    @r.post("/triage/{ticket_id}/resolve", status_code=202, tags=["operators"])
    async def resolve_manual_triage(ticket_id: str, body: ManualTriageIn, idempotency_key: IdempotencyKey = None) -> dict[str, str]:
        """Choose the category of a ticket waiting in the manual-triage queue."""
        _known_category(catalogue, body.category, ("body", "category"))
        _status_or_404(engine, ticket_id)
        data = ev.ManualTriageSubmitted(category=body.category, operator=body.operator)
        await publish(COMMANDS.name, _command(data, ticket_id, now(), idempotency_key))
        return {"ticket_id": ticket_id, "category": body.category}

    @r.post("/tickets/{ticket_id}/split", status_code=202, tags=["operators"])
    async def split(ticket_id: str, body: SplitIn, idempotency_key: IdempotencyKey = None) -> dict[str, str]:
        """Undo a merge: the ticket is handled on its own."""
        row = _status_or_404(engine, ticket_id)
        if row.status != "merged":
            raise HTTPException(409, f"ticket {ticket_id} is not merged (status {row.status})")
        data = ev.SplitSubmitted(requested_by=body.operator, reason=mask_free_text(body.reason))
        await publish(COMMANDS.name, _command(data, ticket_id, now(), idempotency_key))
        return {"ticket_id": ticket_id, "status": "split requested"}

    @r.post("/supervisor/decisions", status_code=202, tags=["supervisors"])
    async def decide(body: DecisionIn, idempotency_key: IdempotencyKey = None) -> dict[str, str]:
        """Decide who leads a disputed ticket; final: the lead may not return it."""
        for i, unit in enumerate([body.lead, *body.co_units]):
            if not _has_unit(catalogue, unit):
                loc = ("body", "lead") if i == 0 else ("body", "co_units", i - 1)
                raise RequestValidationError([{"type": "value_error", "loc": loc, "msg": "unknown unit (not in the catalogue)", "input": unit}])
        _status_or_404(engine, body.ticket_id)
        data = ev.SupervisorDecisionSubmitted(consultation_id=body.consultation_id, supervisor=body.supervisor, note=mask_free_text(body.note),
                                              routing=ev.Routing(lead=body.lead, co_units=tuple(body.co_units), level=body.level))
        await publish(COMMANDS.name, _command(data, body.ticket_id, now(), idempotency_key))
        return {"ticket_id": body.ticket_id, "lead": body.lead}

    @r.post("/callbacks", status_code=202, tags=["operators"])
    async def record_callback(body: CallbackIn, idempotency_key: IdempotencyKey = None) -> dict[str, str]:
        """Record the resident's verdict at callback (回访)."""
        _status_or_404(engine, body.ticket_id)
        data = ev.CallbackSubmitted(round=body.round, resolved=body.resolved, satisfaction=body.satisfaction,
                                    operator=body.operator, comment=mask_free_text(body.comment), reasonable_demand=body.reasonable_demand)
        await publish(COMMANDS.name, _command(data, body.ticket_id, now(), idempotency_key))
        return {"ticket_id": body.ticket_id, "status": "recorded"}

    @r.post("/callbacks/batch", status_code=200, tags=["operators"])
    async def record_callbacks(body: CallbackBatchIn) -> dict[str, list[dict[str, str]]]:
        """Record many callbacks in one request (a callback desk's system, the simulated hotline): each item
        is checked and published as on POST /callbacks, all acknowledged by the broker before the answer.
        Each result says `recorded`, or `unknown-ticket` (not in the status view yet: post it again later)."""
        known = _known_tickets(engine, {item.ticket_id for item in body.items})
        results, commands = [], []
        for item in body.items:
            if item.ticket_id not in known:
                results.append({"ticket_id": item.ticket_id, "status": "unknown-ticket"})
                continue
            data = ev.CallbackSubmitted(round=item.round, resolved=item.resolved, satisfaction=item.satisfaction,
                                        operator=item.operator, comment=mask_free_text(item.comment), reasonable_demand=item.reasonable_demand)
            commands.append(_command(data, item.ticket_id, now(), item.idempotency_key))
            results.append({"ticket_id": item.ticket_id, "status": "recorded"})
        await asyncio.gather(*(publish(COMMANDS.name, command) for command in commands))
        return {"results": results}

    @r.post("/residents/events", status_code=202, tags=["registers"])
    async def resident_event(body: ev.ResidentLifeEventRecorded) -> dict[str, str]:
        """A register reports a resident's life event (input to proactive rules)."""
        await publish(RESIDENTS.name, Envelope.origin(body, source=SOURCE, ticket_id=f"R-{body.resident_ref}", time=now()))
        return {"resident_ref": body.resident_ref}

    @r.get("/stats", tags=["hotline"])
    async def stats() -> dict[str, int]:
        """How many tickets are in each status now."""
        from sqlalchemy import func

        with Session(engine) as s:
            rows = s.exec(select(TicketStatus.status, func.count()).group_by(TicketStatus.status)).all()
        counts: dict[str, int] = {}
        for status, count in rows:
            word = _canonical(status)
            counts[word] = counts.get(word, 0) + count
        return counts

    @r.get("/catalogue/categories", tags=["hotline"])
    async def categories() -> list[dict[str, Any]]:
        """The responsibility catalogue's categories (codes for the category field)."""
        return [{"code": c.code, "name": c.name, "name_en": c.name_en} for c in catalogue.categories]

    return r


def _open311_service(c: Category) -> dict[str, Any]:
    return {"service_code": c.code, "service_name": c.name_en, "description": c.name, "metadata": False,
            "type": "realtime", "keywords": ",".join(c.keywords_en[:5]), "group": c.lead or f"{c.lead_by_area} office"}


def _open311_status(row: TicketStatus, catalogue: Catalogue) -> dict[str, Any]:
    name = catalogue.category(row.category).name_en if row.category and catalogue.has_category(row.category) else None
    return {
        "service_request_id": row.ticket_id, "status": "closed" if row.status in ("closed", "merged") else "open",
        "status_notes": _canonical(row.status) if row.status != "closed" else f"closed: {row.outcome}",
        "service_name": name, "service_code": row.category, "description": row.text,
        "agency_responsible": row.lead, "requested_datetime": row.requested_at, "updated_datetime": row.updated_at,
        "expected_datetime": None, "address": row.address, "lat": row.lat, "long": row.lon,
    }


def _open311_router(publish_submission: PublishSubmission, engine: Engine, catalogue: Catalogue,
                    now: Callable[[], datetime]) -> APIRouter:
    r = APIRouter(tags=["open311"])

    @r.get("/services.json")
    async def services() -> list[dict[str, Any]]:
        """GeoReport v2: the service list (our catalogue categories)."""
        return [_open311_service(c) for c in catalogue.categories]

    @r.get("/services/{code}.json")
    async def service_definition(code: str) -> dict[str, Any]:
        """GeoReport v2: a service definition (no extra attributes)."""
        if not catalogue.has_category(code):
            raise HTTPException(404, f"no service {code}")
        return {"service_code": code, "attributes": []}

    @r.post("/requests.json", status_code=201)
    async def create_request(request: Request) -> list[dict[str, Any]]:
        """GeoReport v2: submit a request (form-encoded or JSON)."""
        raw = await request.body()
        if request.headers.get("content-type", "").startswith("application/json"):
            fields = json.loads(raw or b"{}")
        else:
            fields = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
        try:
            submitted = Open311Request.model_validate(fields)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        _known_category(catalogue, submitted.service_code, ("body", "service_code"))
        key = request.headers.get("idempotency-key")
        envelope = submission_event(submitted.to_complaint(), now=now(), idempotency_key=key)
        await publish_submission(envelope)
        return [{"service_request_id": envelope.ticket_id, "service_notice": "registered by the 12345 hotline", "account_id": None}]

    @r.get("/requests.json")
    async def list_requests(service_request_id: str | None = None, service_code: str | None = None,
                            status: str | None = Query(None, pattern="^(open|closed)$"),
                            start_date: datetime | None = None, end_date: datetime | None = None) -> list[dict[str, Any]]:
        """GeoReport v2: requests, filtered like the standard (ids comma-separated, at most 1000)."""
        with Session(engine) as s:
            q = select(TicketStatus).where(TicketStatus.status != "closed-hidden")
            if service_request_id:
                q = q.where(col(TicketStatus.ticket_id).in_(service_request_id.split(",")))
            if service_code:
                q = q.where(TicketStatus.category == service_code)
            if start_date:
                q = q.where(col(TicketStatus.requested_at) >= start_date)
            if end_date:
                q = q.where(col(TicketStatus.requested_at) <= end_date)
            rows = s.exec(q.order_by(col(TicketStatus.requested_at).desc()).limit(1000)).all()
        out = [_open311_status(row, catalogue) for row in rows]
        return [o for o in out if status is None or o["status"] == status]

    @r.get("/requests/{ticket_id}.json")
    async def get_request(ticket_id: str) -> list[dict[str, Any]]:
        """GeoReport v2: one request (as a one-element list, as the standard has it)."""
        return [_open311_status(_status_or_404(engine, ticket_id), catalogue)]

    return r
