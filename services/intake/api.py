"""The hotline's HTTP API: submit, status, operator actions, and the Open311 GeoReport v2 edge."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from contracts import events as ev
from contracts.envelope import Envelope, derive_event_id
from contracts.topics import COMMANDS, INTAKE, RESIDENTS
from domain.catalogue import Catalogue, Category
from domain.grid_workers import Roster, reporter_refusal, roster_for
from domain.privacy import mask_free_text
from domain.statuses import LEGACY_STATUS_NAMES, parse_status
from services.common.audit import AuditMiddleware, note_disclosed, note_published
from services.common.auth import PUBLIC, Principal, Role, TokenVerifier, access, install_verifier
from services.common.inputs import ID_MAX, ID_PATTERN, KEY_MAX, MAX_BODY_BYTES, Id, Key, Moment, Note, refuse_invalid_requests
from services.common.logs import get_logger
from services.common.settings import DEFAULT_PSEUDONYM_KEY

from .domain import SOURCE, ComplaintIn, LocationIn, Open311Request, PlaceOf, ResidentEventIn, placed, submission_event
from .keystore import Claim, GroupSealer, KeyReused, PlainRow, Submission, callers_of
from .models import Submitter, SubmittingClient, TicketStatus, TriageCandidates
from .privacy_api import privacy_router
from .suggest import Suggester, suggestion_rows

Publish = Callable[[str, Envelope[Any]], Awaitable[None]]

log = get_logger(__name__)

# Who may do what (README, "Security"). Every route names one of these; tests/unit/test_route_access.py
# fails on a route that names none.
SUBMIT = access(Role.operator, Role.app, Role.grid_worker)
READ_TICKETS = access(Role.operator, Role.supervisor, Role.auditor)
OPERATOR = access(Role.operator)
SPLIT = access(Role.operator, Role.supervisor)
SUPERVISOR = access(Role.supervisor)
REGISTER = access(Role.app)  # a city register reporting residents' life events is an app with its own client id
ANY_ROLE = access(*Role)
OPEN311_SUBMIT = access(Role.app, Role.operator)
OPEN311_READ = access(Role.app, Role.operator, Role.supervisor, Role.auditor)
SUGGEST = access(Role.operator, Role.app, Role.grid_worker)  # whoever submits may be helped to choose a category

# A handler that needs the caller takes its route's rule as a parameter: `caller: Annotated[Principal, Depends(RULE)]`.

MAX_CO_UNITS = 5  # the catalogue's widest joint action has 2 co-units; each one's result rides on TicketHandled
MAX_ROUND = 100  # a ticket re-handled a hundred times is a case for a supervisor, not a callback
MAX_ID_LIST = 1000 * (ID_MAX + 1)  # GET requests.json: at most 1000 comma-separated ids
MAX_SUGGESTION_TEXT = 4000
MAX_CALLBACK_QUEUE = 500  # tickets one callback-queue page opens at most
# Reads that show personal data: each is on the audit trail (who, when, which tickets), like a change.
DISCLOSING_READS = frozenset({"/callbacks/queue"})
TicketId = Annotated[str, Path(max_length=ID_MAX, pattern=ID_PATTERN, description="Ticket id.")]


class Accepted(BaseModel):
    ticket_id: str = Field(description="The ticket's id.")
    status_url: str = Field(description="Where to follow it.")


# Who decided is the token's subject, never a field of the body: an `operator` or `supervisor` field sent by
# an older client is ignored.
class ManualTriageIn(BaseModel):
    category: Id = Field(description="Category code the operator chose.")


class SplitIn(BaseModel):
    reason: Note = Field(min_length=1, description="Why the tickets are different problems.")


class DecisionIn(BaseModel):
    ticket_id: Id = Field(description="Ticket decided.")
    lead: Id = Field(description="Unit that leads; it may not return the ticket.")
    co_units: list[Id] = Field(default_factory=list, max_length=MAX_CO_UNITS, description="Co-handling units.")
    level: ev.Level = Field(default=ev.Level.district, description="Level it is handled at.")
    consultation_id: Id | None = Field(default=None, description="The consultation decided.")
    note: Note = Field(default="", description="Reasoning.")


class CallbackIn(BaseModel):
    ticket_id: Id = Field(description="Ticket called back.")
    round: int = Field(ge=1, le=MAX_ROUND, description="Handling round evaluated.")
    resolved: bool = Field(description="Resident says it is solved.")
    satisfaction: ev.Satisfaction = Field(description="satisfied, basically-satisfied or unsatisfied.")
    comment: Note = Field(default="", description="Resident's words.")
    reasonable_demand: bool = Field(default=True, description="False for a demand judged unreasonable.")


class CallbackBatchItem(CallbackIn):
    idempotency_key: Key | None = Field(default=None, description="A retry with the same key is applied once (as the header on POST /callbacks).")


class CallbackBatchIn(BaseModel):
    items: list[CallbackBatchItem] = Field(min_length=1, max_length=500, description="Callbacks to record, at most 500.")


def build_api(*, publish: Publish, engine: Engine, catalogue: Catalogue, now: Callable[[], datetime],
              lifespan: Any = None, pseudonym_key: str = DEFAULT_PSEUDONYM_KEY,
              verifier: TokenVerifier | None = None, max_body_bytes: int = MAX_BODY_BYTES,
              suggester: Suggester | None = None, place_of: PlaceOf | None = None) -> FastAPI:
    """The hotline's API. A request body over `max_body_bytes` is answered 413 unread. Without a `verifier` every route but the public ones answers 503 (fail closed);
    every state-changing call is recorded on the audit topic through `publish`. A submission's caller is
    sealed in intake's key store (its tables must exist in `engine`) with `pseudonym_key` before it is
    published; the app factory checks that key in production. `place_of` places a pin or an address in the
    city (default: the small city's map, built here with the app, not on the first pin)."""
    api = FastAPI(lifespan=lifespan, title="cityops hotline intake", version="1",
                  description="Submit complaints, follow tickets, resolve manual triage, decide disputes, record callbacks; "
                              "Open311 GeoReport v2 at /open311/v2. Every route but /health and the Open311 service list "
                              "needs `Authorization: Bearer <token>` (`cityops auth token`).")
    if verifier is not None:
        install_verifier(api, verifier=verifier)

    async def publish_noted(topic: str, envelope: Envelope[Any]) -> None:
        await publish(topic, envelope)
        note_published(envelope)

    sealer = GroupSealer(engine, pseudonym_key)

    async def publish_submission(submission: Submission) -> None:
        sealed = await sealer.seal(submission)
        await publish_noted(INTAKE.name, sealed)

    if place_of is None:
        place_of = _small_city_places(catalogue)
    accept = _acceptance(publish_submission, engine, catalogue, now, place_of)
    api.include_router(_hotline_router(publish_noted, accept, engine, catalogue, now))
    api.include_router(_desk_router(engine, catalogue, suggester))
    api.include_router(_open311_router(accept, engine, catalogue),
                       prefix="/open311/v2")
    api.include_router(privacy_router(engine, pseudonym_key))
    refuse_invalid_requests(api, max_body_bytes=max_body_bytes)  # inside the audit: a 413 is recorded too
    api.add_middleware(AuditMiddleware, publish=publish, service="intake", source=SOURCE, clock=now,
                       disclosing_reads=DISCLOSING_READS)
    return api


def accepted_response(ticket_id: str) -> Response:
    """POST /tickets' 202 as pre-built bytes: returning the `Accepted` model made FastAPI validate and serialise it
    again on every request (the hottest route; `response_model` still documents it)."""
    body = json.dumps({"ticket_id": ticket_id, "status_url": f"/tickets/{ticket_id}"}, separators=(",", ":")).encode()
    return Response(body, status_code=202, media_type="application/json")


def scoped_key(caller: Principal, idempotency_key: str | None) -> str | None:
    """An Idempotency-Key is the caller's own: two apps (or two operators) using the same key name two things."""
    return f"{caller.idempotency_scope}:{idempotency_key}" if idempotency_key else None


def _check_grids(caller: Principal, complaint: ComplaintIn) -> None:
    """A grid worker reports from the grids its token names (an operator or an app may name any place)."""
    if caller.has(Role.operator, Role.app) or not caller.grids:
        return
    grid = complaint.location.grid
    if grid is not None and grid not in caller.grids:
        raise HTTPException(403, f"grid {grid} is not one of this grid worker's grids")


def _who_submitted(caller: Principal, ticket_id: str) -> tuple[PlainRow, ...]:
    """Who submitted a ticket: an app reads back its own requests and nobody else's; an operator lists
    their own (`GET /tickets?mine=true`). Written in the submission's sealing transaction."""
    client = (PlainRow(SubmittingClient, {"ticket_id": ticket_id, "client_id": caller.client_id}),) if caller.client_id else ()
    return (*client, PlainRow(Submitter, {"ticket_id": ticket_id, "submitter": caller.idempotency_scope}))


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


def _public(row: TicketStatus, candidates: TriageCandidates | None = None) -> dict[str, Any]:
    out = row.model_dump()
    out["status"] = _canonical(row.status)
    if out["status"] == "manual-triage":
        pairs = json.loads(candidates.candidates) if candidates is not None else []
        out["candidates"] = [{"category": c, "confidence": p} for c, p in pairs]
        out["triage_reason"] = candidates.reason if candidates is not None else None
    return out


def _with_candidates(s: Session, rows: Any) -> list[dict[str, Any]]:
    """Rows as answered, those in manual triage with the classifier's candidates (one query for all)."""
    waiting = [r.ticket_id for r in rows if _canonical(r.status) == "manual-triage"]
    found = {c.ticket_id: c for c in s.exec(select(TriageCandidates).where(col(TriageCandidates.ticket_id).in_(waiting))).all()} if waiting else {}
    return [_public(r, found.get(r.ticket_id)) for r in rows]
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


PublishSubmission = Callable[[Submission], Awaitable[None]]


Accept = Callable[[ComplaintIn, Principal, str | None, tuple[str, ...]], Awaitable[Envelope[Any]]]


def _small_city_places(catalogue: Catalogue | None) -> PlaceOf:
    """The small city's map; without a catalogue (an API built only to print its OpenAPI document) nowhere."""
    from domain.city.place import Place
    from domain.city.places import city_places

    if catalogue is None:
        return lambda _location: Place()
    return city_places("demo", catalogue).place


def _acceptance(publish_submission: PublishSubmission, engine: Engine, catalogue: Catalogue,
                now: Callable[[], datetime], place_of: PlaceOf) -> Accept:
    """What every door a complaint comes through (POST /tickets, Open311) does once its body is valid."""

    rosters: list[Roster] = []  # read on the first patrol report that names its reporter, then kept

    def roster() -> Roster:
        if not rosters:
            rosters.append(roster_for([a.id for a in catalogue.areas if a.level == "grid"], catalogue.version))
        return rosters[0]

    async def accept(complaint: ComplaintIn, caller: Principal, idempotency_key: str | None,
                     location_field: tuple[str, ...]) -> Envelope[Any]:
        complaint = complaint.model_copy(update={"location": placed(complaint.location, place_of)})
        _known_areas(catalogue, complaint.location, location_field)
        _check_grids(caller, complaint)
        _check_reporter(caller, complaint)
        _known_reporter(roster, complaint, (location_field[0], "reported_by"))
        key = scoped_key(caller, idempotency_key)
        envelope = submission_event(complaint, now=now(), idempotency_key=key)
        claim = Claim(key, complaint.fingerprint()) if key is not None else None
        try:
            await publish_submission(Submission(envelope, _who_submitted(caller, envelope.ticket_id), claim))
        except KeyReused as exc:
            raise HTTPException(409, str(exc)) from exc
        return envelope
    return accept


def _check_reporter(caller: Principal, complaint: ComplaintIn) -> None:
    """A grid worker names only themselves as a patrol report's reporter (their token's subject is their roster
    id); an operator or an app relays reports of any grid worker the roster knows."""
    if complaint.reported_by is None or caller.has(Role.operator, Role.app) or not caller.has(Role.grid_worker):
        return
    if complaint.reported_by != caller.subject:
        raise HTTPException(403, f"reported_by: a grid worker reports as themselves ({caller.subject}), "
                                 f"not as {complaint.reported_by}")


def _known_reporter(roster: Callable[[], Roster], complaint: ComplaintIn, field: tuple[str, ...]) -> None:
    """A patrol report names a grid worker of the roster, posted to the grid it is about (422 naming the field)."""
    if complaint.reported_by is None:
        return
    why = ("only a grid-patrol report names its reporter" if complaint.channel != ev.Channel.grid_patrol
           else reporter_refusal(roster(), complaint.reported_by, complaint.location.grid))
    if why is not None:
        raise RequestValidationError([{"type": "value_error", "loc": field, "msg": why, "input": complaint.reported_by}])


def _known_areas(catalogue: Catalogue, location: LocationIn, field: tuple[str, ...]) -> None:
    wrong = location.unknown_areas(catalogue)
    if wrong:
        raise RequestValidationError([{"type": "value_error", "loc": (*field, level), "msg": why, "input": None} for level, why in wrong])


def _hotline_router(publish: Publish, accept: Accept, engine: Engine, catalogue: Catalogue,
                    now: Callable[[], datetime]) -> APIRouter:
    r = APIRouter()

    @r.get("/health", tags=["hotline"], dependencies=[Depends(PUBLIC)])
    async def health() -> dict[str, str]:
        """The API answers (for load balancers and the hub's readiness probe; needs no token)."""
        return {"status": "ok"}

    @r.post("/tickets", status_code=202, response_model=Accepted, tags=["hotline"],
            responses={409: {"description": "This Idempotency-Key was already used with another body."},
                       413: {"description": "The body is larger than the API accepts."}})
    async def submit(complaint: ComplaintIn, caller: Annotated[Principal, Depends(SUBMIT)],
                     idempotency_key: IdempotencyKey = None) -> Response:
        """Submit a complaint (operator, app, grid worker). A retry with the same Idempotency-Key and the same body by
        the same caller returns the same ticket and creates nothing new; the same key with another body is 409."""
        _known_category(catalogue, complaint.category, ("body", "category"))
        envelope = await accept(complaint, caller, idempotency_key, ("body", "location"))
        return accepted_response(envelope.ticket_id)

    @r.get("/tickets/{ticket_id}", tags=["hotline"], dependencies=[Depends(READ_TICKETS)])
    async def status(ticket_id: TicketId) -> dict[str, Any]:
        """Where a ticket is now (in manual triage: with the classifier's candidates)."""
        row = _status_or_404(engine, ticket_id)
        with Session(engine) as s:
            return _with_candidates(s, [row])[0]

    @r.get("/tickets", tags=["hotline"])
    async def list_tickets(caller: Annotated[Principal, Depends(READ_TICKETS)],
                           status: Annotated[str | None, Query(max_length=40, pattern=r"^[a-z][a-z\-]*$")] = None, limit: int = Query(100, ge=1, le=1000),
                           mine: bool = Query(False, description="Only the tickets this caller submitted through the API.")) -> list[dict[str, Any]]:
        """Tickets, newest first, optionally by status (e.g. manual-triage, supervisor-review; the older
        words consultation and re-handling still select consulting and reopened). Tickets in manual triage
        carry the classifier's `candidates`."""
        with Session(engine) as s:
            q = select(TicketStatus)
            if status:
                q = q.where(col(TicketStatus.status).in_(_status_words(status)))
            if mine:
                q = q.join(Submitter, col(Submitter.ticket_id) == col(TicketStatus.ticket_id)).where(
                    Submitter.submitter == caller.idempotency_scope)
            rows = s.exec(q.order_by(col(TicketStatus.updated_at).desc()).limit(limit)).all()
            return _with_candidates(s, rows)

    @r.post("/triage/{ticket_id}/resolve", status_code=202, tags=["operators"])
    async def resolve_manual_triage(ticket_id: TicketId, body: ManualTriageIn, caller: Annotated[Principal, Depends(OPERATOR)],
                                    idempotency_key: IdempotencyKey = None) -> dict[str, str]:
        """Choose the category of a ticket waiting in the manual-triage queue (operator)."""
        _known_category(catalogue, body.category, ("body", "category"))
        _status_or_404(engine, ticket_id)
        data = ev.ManualTriageSubmitted(category=body.category, operator=caller.subject)
        await publish(COMMANDS.name, _command(data, ticket_id, now(), scoped_key(caller, idempotency_key)))
        return {"ticket_id": ticket_id, "category": body.category}

    @r.post("/tickets/{ticket_id}/split", status_code=202, tags=["operators"])
    async def split(ticket_id: TicketId, body: SplitIn, caller: Annotated[Principal, Depends(SPLIT)],
                    idempotency_key: IdempotencyKey = None) -> dict[str, str]:
        """Undo a merge: the ticket is handled on its own (operator or supervisor)."""
        row = _status_or_404(engine, ticket_id)
        if row.status != "merged":
            raise HTTPException(409, f"ticket {ticket_id} is not merged (status {row.status})")
        data = ev.SplitSubmitted(requested_by=caller.subject, reason=mask_free_text(body.reason))
        await publish(COMMANDS.name, _command(data, ticket_id, now(), scoped_key(caller, idempotency_key)))
        return {"ticket_id": ticket_id, "status": "split requested"}

    @r.post("/supervisor/decisions", status_code=202, tags=["supervisors"])
    async def decide(body: DecisionIn, caller: Annotated[Principal, Depends(SUPERVISOR)],
                     idempotency_key: IdempotencyKey = None) -> dict[str, str]:
        """Decide who leads a disputed ticket; final: the lead may not return it (supervisor)."""
        for i, unit in enumerate([body.lead, *body.co_units]):
            if not _has_unit(catalogue, unit):
                loc = ("body", "lead") if i == 0 else ("body", "co_units", i - 1)
                raise RequestValidationError([{"type": "value_error", "loc": loc, "msg": "unknown unit (not in the catalogue)", "input": unit}])
        _status_or_404(engine, body.ticket_id)
        data = ev.SupervisorDecisionSubmitted(consultation_id=body.consultation_id, supervisor=caller.subject, note=mask_free_text(body.note),
                                              routing=ev.Routing(lead=body.lead, co_units=tuple(body.co_units), level=body.level))
        await publish(COMMANDS.name, _command(data, body.ticket_id, now(), scoped_key(caller, idempotency_key)))
        return {"ticket_id": body.ticket_id, "lead": body.lead}

    @r.post("/callbacks", status_code=202, tags=["operators"])
    async def record_callback(body: CallbackIn, caller: Annotated[Principal, Depends(OPERATOR)],
                              idempotency_key: IdempotencyKey = None) -> dict[str, str]:
        """Record the resident's verdict at callback (回访) (operator)."""
        _status_or_404(engine, body.ticket_id)
        data = ev.CallbackSubmitted(round=body.round, resolved=body.resolved, satisfaction=body.satisfaction,
                                    operator=caller.subject, comment=mask_free_text(body.comment), reasonable_demand=body.reasonable_demand)
        await publish(COMMANDS.name, _command(data, body.ticket_id, now(), scoped_key(caller, idempotency_key)))
        return {"ticket_id": body.ticket_id, "status": "recorded"}

    @r.post("/callbacks/batch", status_code=200, tags=["operators"])
    async def record_callbacks(body: CallbackBatchIn, caller: Annotated[Principal, Depends(OPERATOR)]) -> dict[str, list[dict[str, str]]]:
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
                                        operator=caller.subject, comment=mask_free_text(item.comment), reasonable_demand=item.reasonable_demand)
            commands.append(_command(data, item.ticket_id, now(), scoped_key(caller, item.idempotency_key)))
            results.append({"ticket_id": item.ticket_id, "status": "recorded"})
        await asyncio.gather(*(publish(COMMANDS.name, command) for command in commands))
        return {"results": results}

    @r.post("/residents/events", status_code=202, tags=["registers"], dependencies=[Depends(REGISTER)])
    async def resident_event(body: ResidentEventIn) -> dict[str, str]:
        """A register (an app) reports a resident's life event (input to proactive rules)."""
        _known_areas(catalogue, body.location, ("body", "location"))
        await publish(RESIDENTS.name, Envelope.origin(body.to_event(), source=SOURCE, ticket_id=f"R-{body.resident_ref}", time=now()))
        return {"resident_ref": body.resident_ref}

    @r.get("/stats", tags=["hotline"], dependencies=[Depends(READ_TICKETS)])
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

    @r.get("/catalogue/categories", tags=["hotline"], dependencies=[Depends(ANY_ROLE)])
    async def categories() -> list[dict[str, Any]]:
        """The responsibility catalogue's categories (codes for the category field; any role)."""
        return [{"code": c.code, "name": c.name, "name_en": c.name_en} for c in catalogue.categories]

    return r


def _desk_router(engine: Engine, catalogue: Catalogue, suggester: Suggester | None) -> APIRouter:
    """What the operators' desk (the console) reads besides the tickets: areas, suggestions, the callback queue."""
    r = APIRouter()

    @r.get("/catalogue/areas", tags=["hotline"], dependencies=[Depends(ANY_ROLE)])
    async def areas() -> list[dict[str, Any]]:
        """The catalogue's areas (districts, streets, communities, grids) with their parents: the location
        fields' ids, for cascading pickers (any role)."""
        return [{"id": a.id, "name": a.name, "name_en": a.name_en, "level": str(a.level), "parent": a.parent}
                for a in catalogue.areas]

    @r.get("/triage/suggestions", tags=["operators"], dependencies=[Depends(SUGGEST)])
    async def suggestions(text: Annotated[str, Query(min_length=1, max_length=MAX_SUGGESTION_TEXT,
                                                     description="The complaint as typed so far.")]) -> dict[str, Any]:
        """The classifier's three most probable categories for a text, with their probabilities (operator, app,
        grid worker). `ready` is false while the model is still loading (the first request starts it)."""
        pairs = await suggester.top(text) if suggester is not None and text.strip() else None
        return {"ready": pairs is not None, "suggestions": suggestion_rows(pairs or [], catalogue)}

    @r.get("/callbacks/queue", tags=["operators"])
    async def callback_queue(caller: Annotated[Principal, Depends(OPERATOR)],
                             limit: int = Query(100, ge=1, le=MAX_CALLBACK_QUEUE)) -> list[dict[str, Any]]:
        """Handled tickets awaiting the callback (回访), oldest first, with the caller's name and phone opened from
        intake's key store (operator only: the one place the hub shows a caller's number; null once erased)."""
        def read() -> list[dict[str, Any]]:
            with Session(engine) as s:
                rows = s.exec(select(TicketStatus).where(col(TicketStatus.status) == "handled")
                              .order_by(col(TicketStatus.updated_at).asc()).limit(limit)).all()
            callers = callers_of(engine, [row.ticket_id for row in rows])
            out = []
            for row in rows:
                who = callers.get(row.ticket_id)
                out.append(_public(row) | {"caller_name": who.name if who else None, "caller_phone": who.phone if who else None})
            return out
        queue = await asyncio.to_thread(read)
        # Which tickets' callers this operator saw goes on the audit trail (never the numbers themselves).
        note_disclosed([row["ticket_id"] for row in queue if row["caller_phone"] or row["caller_name"]])
        log.info("callback_queue_opened", operator=caller.subject, tickets=len(queue))
        return queue

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


def _own_client(caller: Principal) -> str | None:
    """The client whose requests alone an app may read; None for the roles that read every request."""
    if caller.has(Role.operator, Role.supervisor, Role.auditor):
        return None
    return caller.client_id or ""  # an app token without a client id reads nothing


def _open311_fields(raw: bytes, content_type: str) -> Any:
    """The submitted fields of an Open311 POST, JSON or form-encoded; 422 for a body that is neither."""
    try:
        if content_type.startswith("application/json"):
            return json.loads(raw or b"{}")
        return {k: v[-1] for k, v in parse_qs(raw.decode("utf-8"), strict_parsing=False).items()}
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        kind = "json_invalid" if content_type.startswith("application/json") else "form_invalid"
        raise RequestValidationError([{"type": kind, "loc": ("body",), "input": None,
                                       "msg": f"the body is not valid {'JSON' if kind == 'json_invalid' else 'form data'} "
                                              f"({type(exc).__name__})"}]) from None


# The body is read by hand (GeoReport v2 clients send form data or JSON); this documents it for clients and the fuzzer.
_OPEN311_SCHEMA = Open311Request.model_json_schema()
_OPEN311_BODY = {"requestBody": {"required": True, "content": {
    "application/x-www-form-urlencoded": {"schema": _OPEN311_SCHEMA}, "application/json": {"schema": _OPEN311_SCHEMA}}}}


def _open311_router(accept: Accept, engine: Engine, catalogue: Catalogue) -> APIRouter:
    r = APIRouter(tags=["open311"])

    @r.get("/services.json", dependencies=[Depends(PUBLIC)])
    async def services() -> list[dict[str, Any]]:
        """GeoReport v2: the service list (our catalogue categories)."""
        return [_open311_service(c) for c in catalogue.categories]

    @r.get("/services/{code}.json", dependencies=[Depends(PUBLIC)])
    async def service_definition(code: Annotated[str, Path(max_length=ID_MAX, pattern=ID_PATTERN)]) -> dict[str, Any]:
        """GeoReport v2: a service definition (no extra attributes)."""
        if not catalogue.has_category(code):
            raise HTTPException(404, f"no service {code}")
        return {"service_code": code, "attributes": []}

    @r.post("/requests.json", status_code=201, openapi_extra=_OPEN311_BODY,
            responses={409: {"description": "This Idempotency-Key was already used with another body."},
                       413: {"description": "The body is larger than the API accepts."}})
    async def create_request(request: Request, caller: Annotated[Principal, Depends(OPEN311_SUBMIT)]) -> list[dict[str, Any]]:
        """GeoReport v2: submit a request (form-encoded or JSON; an app, or an operator)."""
        fields = _open311_fields(await request.body(), request.headers.get("content-type", ""))
        try:
            submitted = Open311Request.model_validate(fields)
        except ValidationError as exc:
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
        _known_category(catalogue, submitted.service_code, ("body", "service_code"))
        key = request.headers.get("idempotency-key")
        if key is not None and len(key) > KEY_MAX:
            raise RequestValidationError([{"type": "string_too_long", "loc": ("header", "idempotency-key"), "input": None,
                                           "msg": f"String should have at most {KEY_MAX} characters"}])
        envelope = await accept(submitted.to_complaint(), caller, key, ("body",))
        return [{"service_request_id": envelope.ticket_id, "service_notice": "registered by the 12345 hotline", "account_id": None}]

    @r.get("/requests.json")
    async def list_requests(caller: Annotated[Principal, Depends(OPEN311_READ)],
                            service_request_id: Annotated[str | None, Query(max_length=MAX_ID_LIST, pattern=r"^[A-Za-z0-9._:,\-]*$")] = None,
                            service_code: Annotated[str | None, Query(max_length=ID_MAX, pattern=ID_PATTERN)] = None,
                            status: str | None = Query(None, pattern="^(open|closed)$"),
                            start_date: Moment | None = None, end_date: Moment | None = None) -> list[dict[str, Any]]:
        """GeoReport v2: requests, filtered like the standard (ids comma-separated, at most 1000). An app sees only
        the requests its own client submitted; operators, supervisors and auditors see every one."""
        with Session(engine) as s:
            q = select(TicketStatus).where(TicketStatus.status != "closed-hidden")
            own = _own_client(caller)
            if own is not None:
                q = q.join(SubmittingClient, col(SubmittingClient.ticket_id) == col(TicketStatus.ticket_id)).where(
                    SubmittingClient.client_id == own)
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
    async def get_request(ticket_id: TicketId, caller: Annotated[Principal, Depends(OPEN311_READ)]) -> list[dict[str, Any]]:
        """GeoReport v2: one request (as a one-element list, as the standard has it); an app, only its own."""
        own = _own_client(caller)
        if own is not None:
            with Session(engine) as s:
                mine = s.get(SubmittingClient, ticket_id)
            if mine is None or mine.client_id != own:
                raise HTTPException(404, f"no ticket {ticket_id} submitted by this client")
        return [_open311_status(_status_or_404(engine, ticket_id), catalogue)]

    return r
