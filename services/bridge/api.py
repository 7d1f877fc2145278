"""The unit HTTP bridge's API: a unit's open tasks and consultations, and its reports on them.

Every route but /health needs a unit user's or a grid worker's token (`access(Role.unit, Role.grid_worker)`).
A unit user acts for its own unit, a grid worker for the grid units its token names; another unit's task is
403, an unknown id 404. A report is answered 202 once the broker has it, and built with the same builders
as the unit SDK's (contracts/unit_reports.py), so act, consult, sla and evaluate cannot tell them apart.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from contracts import events as ev
from contracts import unit_reports
from contracts.envelope import Envelope
from contracts.topics import UNIT_REPORTS
from domain.calendar import WorkCalendar
from domain.catalogue import Catalogue
from services.common.auth import PUBLIC, Principal, Role, access
from services.common.inputs import ID_MAX, ID_PATTERN, MAX_BODY_BYTES, Id, LongText, Note, refuse_invalid_requests
from services.common.store import ProcessedEvent

from . import domain
from .domain import Action
from .models import BridgeConsultation, BridgeParty, BridgeTask

Publish = Callable[[str, Envelope[Any]], Awaitable[None]]
UNITS_ONLY = access(Role.unit, Role.grid_worker)
Caller = Annotated[Principal | None, Depends(UNITS_ONLY)]
IdempotencyKey = Annotated[str | None, Header(max_length=200, description="A retry with the same key is one report: "
                                              "answered 202 again, applied once.")]
OPEN = [str(s) for s in domain.OPEN_STATES]
TaskId = Annotated[str, Path(max_length=ID_MAX, pattern=ID_PATTERN, description="Task id.")]
ConsultationId = Annotated[str, Path(max_length=ID_MAX, pattern=ID_PATTERN, description="Consultation id.")]
UnitFilter = Annotated[str | None, Query(max_length=ID_MAX, pattern=ID_PATTERN, description="Only this unit's (a grid worker "
                                         "with several grids).")]
AnsweredFilter = Annotated[bool, Query(description="Also the consultations the caller's units answered, until settled.")]
_INPUT = ConfigDict(extra="forbid", str_strip_whitespace=True)


# ---------------------------------------------------------------------------- what comes in

class ProgressIn(BaseModel):
    model_config = ConfigDict(**_INPUT, json_schema_extra={"examples": [{"note": "crew on site, valve replaced"}]})

    note: Note = Field(min_length=1, description="What was done.")
    waiting_on_resident: bool = Field(default=False, description="True while waiting on the resident (clocks paused).")


class ExtensionIn(BaseModel):
    model_config = ConfigDict(**_INPUT, json_schema_extra={"examples": [
        {"amount": 2, "unit": "wd", "reason": "replacement part ordered"}]})

    amount: int = Field(ge=1, le=365, description="How much more time.")
    unit: Literal["wd", "wh", "h", "m"] = Field(description="wd working days, wh working hours, h hours, m minutes.")
    reason: Note = Field(min_length=1, description="Why.")


class ReturnIn(BaseModel):
    model_config = ConfigDict(**_INPUT, json_schema_extra={"examples": [
        {"reason": "private property: the estate's management company is responsible", "suggested_unit": "housing"}]})

    reason: Note = Field(min_length=1, description="Why the task is not this unit's.")
    suggested_unit: Id | None = Field(default=None, description="The unit believed responsible.")


class CompleteIn(BaseModel):
    model_config = ConfigDict(**_INPUT, json_schema_extra={"examples": [{"result": "street light repaired on 6 May"}]})

    result: LongText = Field(min_length=1, description="What was done.")


class OnTheSpotIn(BaseModel):
    model_config = ConfigDict(**_INPUT, json_schema_extra={"examples": [
        {"result": "moved the bikes out of the stairwell with the residents"}]})

    result: LongText = Field(min_length=1, description="What the grid worker did on the spot.")


class EscalateIn(BaseModel):
    model_config = ConfigDict(**_INPUT, json_schema_extra={"examples": [
        {"to_level": "community", "reason": "help-requested", "note": "residents refuse to move the bikes"}]})

    to_level: Literal["community", "street", "district"] = Field(description="The level above that takes it.")
    reason: ev.EscalationReason = Field(description="Why: help-requested (求助), beyond-powers, needs-enforcement, "
                                        "multi-party or safety-risk.")
    note: Note = Field(min_length=1, description="What the worker saw and tried.")


class OpinionIn(BaseModel):
    model_config = ConfigDict(**_INPUT, json_schema_extra={"examples": [
        {"agrees": False, "proposed_lead": "housing", "comment": "a building matter, not a street one"}]})

    agrees: bool = Field(description="True when the unit accepts the proposed plan.")
    proposed_lead: Id | None = Field(default=None, description="Who should lead, when it disagrees.")
    comment: Note = Field(default="", description="Free-text opinion.")
    unit: Id | None = Field(default=None, description="Which of the caller's units answers (a grid worker "
                             "convened with several grids); default the one party the caller acts for.")


# ---------------------------------------------------------------------------- what goes out

_TICKET_EXAMPLE: JsonDict = {"channel": "phone", "text": "小区停水一整天了 / no water all day in our estate",
                             "caller": {"pseudonym": "p-3f9a1c", "masked_phone": "138****5678", "anonymous": False},
                             "location": {"district": "district-west", "street": "street-west-1", "community": "community-west-1-b",
                                          "grid": "grid-west-1-b-2", "address": "文庙路 12 号"},
                             "category": None, "urgency": "normal", "submitted_at": "2026-05-06T08:55:00Z"}


class ClockOut(BaseModel):
    clock: Literal["sign_for", "response", "resolution"] = Field(description="Which clock.")
    due: datetime | None = Field(description="Its deadline (UTC), as sign_for_due, response_due, resolution_due.")
    unit: str = Field(description="How it counts: wd/wh on working time (the working-day calendar), h/m on natural time.")
    left_s: int | None = Field(description="Seconds left at `as_of` on that time, negative once overdue; null when the "
                               "clock stopped (signed for, responded, closed) or has no deadline.")
    stopped: bool = Field(description="The clock has stopped for good (its step is done, or the task is closed).")
    running: bool = Field(description="Whether the time left shrinks right now: false outside working hours for wd/wh, "
                          "while waiting on the resident, or once stopped. A page counts down between refreshes only then.")


class JointOut(BaseModel):
    lead: str | None = Field(description="The lead unit (主办) of the joint action.")
    co_units: list[str] = Field(description="The co-units (协办).")
    done: list[str] = Field(description="Those of them that have completed their part.")


class TaskOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "task_id": "T-1A2B3C4D5E6F7A8B:water:1", "ticket_id": "T-1A2B3C4D5E6F7A8B", "unit": "water", "role": "lead",
        "round": 1, "final": False, "category": "water.outage", "status": "signed-for",
        "assigned_at": "2026-05-06T09:00:00Z", "sign_for_due": "2026-05-06T11:00:00Z", "response_due": "2026-05-07T09:00:00Z",
        "resolution_due": "2026-05-08T09:00:00Z", "extension_pending": False, "extensions_granted": 0, "handler": "li.wei",
        "last_note": None, "result": None, "joint_with": ["street-west-1"], "ticket": _TICKET_EXAMPLE,
        "as_of": "2026-05-06T10:00:00Z", "clocks": [
            {"clock": "sign_for", "due": "2026-05-06T11:00:00Z", "unit": "wh", "left_s": None, "stopped": True, "running": False},
            {"clock": "response", "due": "2026-05-07T09:00:00Z", "unit": "wd", "left_s": 28800, "stopped": False, "running": True},
            {"clock": "resolution", "due": "2026-05-08T09:00:00Z", "unit": "wd", "left_s": 57600, "stopped": False,
             "running": True}],
        "joint": {"lead": "water", "co_units": ["street-west-1"], "done": ["street-west-1"]}}]})

    task_id: str = Field(description="Task id.")
    ticket_id: str = Field(description="Ticket.")
    unit: str = Field(description="Unit the task is for.")
    role: str = Field(description="lead (主办) or co (协办).")
    round: int = Field(description="Handling round.")
    final: bool = Field(description="Assigned by a supervisor's decision: it may not be returned.")
    category: str = Field(description="Catalogue category code.")
    status: str = Field(description="assigned, signed-for, in-progress, waiting-on-resident, completed, returned or withdrawn.")
    assigned_at: datetime = Field(description="When it was assigned (UTC).")
    sign_for_due: datetime | None = Field(description="Deadline to sign for it.")
    response_due: datetime | None = Field(description="Deadline of the first substantive response.")
    resolution_due: datetime | None = Field(description="Deadline to complete it, granted extensions included.")
    extension_pending: bool = Field(description="An extension request waits for its decision.")
    extensions_granted: int = Field(description="Extensions approved so far.")
    handler: str | None = Field(description="Who signed for it.")
    last_note: str | None = Field(description="Last progress note, or the last decision on a request.")
    result: str | None = Field(description="What was done, once completed.")
    joint_with: list[str] = Field(description="Other units on the same joint action.")
    ticket: ev.RegisteredTicket = Field(description="The request (caller masked).")
    as_of: datetime | None = Field(default=None, description="When `clocks` were computed (the bridge's clock).")
    clocks: list[ClockOut] = Field(default_factory=list, description="The three clocks with the time left on each, "
                                   "computed on the working-day calendar.")
    joint: JointOut | None = Field(default=None, description="The joint action this task is part of (lead, co-units, "
                                   "who has reported done); null when the unit acts alone.")


class PartyOut(BaseModel):
    unit: str = Field(description="Unit convened.")
    answered: bool = Field(description="Whether it has given its opinion.")


class OpinionOut(BaseModel):
    unit: str = Field(description="One of the caller's units convened.")
    answered: bool = Field(description="Whether it has given its opinion (as read back from the reports topic).")
    agrees: bool | None = Field(default=None, description="Its answer.")
    proposed_lead: str | None = Field(default=None, description="Who it proposed should lead.")
    comment: str | None = Field(default=None, description="Its comment.")


class ConsultationOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "consultation_id": "C-1A2B3C4D5E6F7A8B-1", "ticket_id": "T-1A2B3C4D5E6F7A8B",
        "reason": "the category is led by area or department: the parties agree who leads",
        "proposed": {"lead": "water", "co_units": ["street-west-1"], "level": "district"},
        "opinions_due": "2026-05-06T13:00:00Z", "closed": False, "category": "water.outage",
        "parties": [{"unit": "water", "answered": False}, {"unit": "street-west-1", "answered": True}],
        "ticket": _TICKET_EXAMPLE, "mine": [{"unit": "water", "answered": False, "agrees": None, "proposed_lead": None,
                                              "comment": None}]}]})

    consultation_id: str = Field(description="Consultation id.")
    ticket_id: str = Field(description="Ticket.")
    reason: str = Field(description="Why the parties are convened.")
    proposed: ev.Routing = Field(description="The plan put to the parties.")
    opinions_due: datetime = Field(description="When opinions are due (UTC).")
    closed: bool = Field(description="Settled: the ticket has been dispatched.")
    parties: list[PartyOut] = Field(description="Every party and whether it answered.")
    category: str = Field(description="Catalogue category code.")
    ticket: ev.RegisteredTicket = Field(description="The request (caller masked).")
    mine: list[OpinionOut] = Field(default_factory=list, description="The caller's own parties and their opinions "
                                   "(other parties' answers are theirs: only whether they answered shows).")


class ReportAccepted(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "event_id": "5b0f6a43-3f1e-5c55-9d9e-0a4c51f3c1e2", "event_type": "cityops.act.task.completed.v1",
        "task_id": "T-1A2B3C4D5E6F7A8B:water:1", "consultation_id": None, "status_url": "/tasks/T-1A2B3C4D5E6F7A8B:water:1"}]})

    event_id: str = Field(description="Id of the report on cityops.unit-reports.v1.")
    event_type: str = Field(description="Its CloudEvents type.")
    task_id: str | None = Field(default=None, description="Task reported on.")
    consultation_id: str | None = Field(default=None, description="Consultation answered.")
    status_url: str = Field(description="Where to follow it (the read model shows the report once it is read back).")


def _error(description: str, detail: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"example": {"detail": detail}}}}


ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("No token, or a bad or expired one.", "a bearer token is required"),
    403: _error("Not a unit user's or grid worker's token, or another unit's task.", "task of another unit"),
    404: _error("No such id.", "no task T-1A2B3C4D5E6F7A8B:water:1"),
}
REPORT_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS, 409: _error("Its state does not allow it (e.g. completed).", "the task is completed: it is no longer open"),
    503: _error("The broker did not take the report in time; retry with the same Idempotency-Key.", "broker unavailable"),
}


# ---------------------------------------------------------------------------- the API

def build_api(*, publish: Publish, engine: Engine, catalogue: Catalogue, now: Callable[[], datetime],
              consumer: str = "bridge", lifespan: Any = None, max_body_bytes: int = MAX_BODY_BYTES,
              calendar: WorkCalendar | None = None) -> FastAPI:
    """The bridge's FastAPI app. `consumer`: the pipeline whose applied events say a report was already seen.
    A request body over `max_body_bytes` is answered 413 unread. `calendar`: the working-day calendar the time
    left on each clock is counted on (without one, tasks carry no `clocks`)."""
    api = FastAPI(lifespan=lifespan, title="cityops unit bridge", version="1",
                  description="For units (departments, street offices, communities, grids) without their own system: "
                              "list open tasks and consultations, sign for, report progress, ask for an extension, "
                              "return, complete, give an opinion. Bearer token of role unit or grid-worker.")
    grid_units = frozenset(u.id for u in catalogue.units if u.kind == "grid")
    known_units = frozenset(u.id for u in catalogue.units)
    reads = _Reads(engine, grid_units, calendar, now)
    # Routes are declared on the app itself (no included routers), so `api.routes` lists every one of them
    # for the route table test (tests/unit/test_bridge_access.py).
    _health_routes(api)
    _task_routes(api, reads, publish, known_units, consumer, {u.id: u.level for u in catalogue.units})
    _consultation_routes(api, reads, publish, known_units, now, consumer)
    refuse_invalid_requests(api, max_body_bytes=max_body_bytes)  # the app factory adds the audit around it
    return api


class _Reads:
    """The read model as the routes see it: rows by id, checked against the caller's units."""

    def __init__(self, engine: Engine, grid_units: frozenset[str], calendar: WorkCalendar | None,
                 now: Callable[[], datetime]) -> None:
        self.engine, self.grid_units, self.calendar, self.now = engine, grid_units, calendar, now

    def tasks_out(self, rows: list[BridgeTask]) -> list[TaskOut]:
        """Tasks as the caller sees them: with the time left on each clock now and their joint action, read with
        one query for every dispatch they belong to."""
        with Session(self.engine) as s:
            siblings = s.exec(select(BridgeTask.dispatch_id, BridgeTask.unit, BridgeTask.role, BridgeTask.status)
                              .where(col(BridgeTask.dispatch_id).in_({r.dispatch_id for r in rows}))).all()
        parts: dict[str, list[tuple[str, str, str]]] = {}
        for dispatch_id, unit, role, status in siblings:
            parts.setdefault(dispatch_id, []).append((unit, role, status))
        moment = domain.as_utc(self.now()) if rows else None
        return [task_out(row, self.calendar, moment, domain.joint_of(parts.get(row.dispatch_id, ()))) for row in rows]

    def units_of(self, principal: Principal | None, wanted: str | None = None) -> frozenset[str]:
        assert principal is not None  # UNITS_ONLY gives one or refuses
        units = domain.acting_units(principal, self.grid_units)
        if wanted is not None:
            if wanted not in units:
                raise HTTPException(403, f"this token does not act for unit {wanted}")
            return frozenset({wanted})
        return units

    def task(self, principal: Principal | None, task_id: str) -> BridgeTask:
        with Session(self.engine) as s:
            row = s.get(BridgeTask, task_id)
        if row is None:
            raise HTTPException(404, f"no task {task_id}")
        if row.unit not in self.units_of(principal):
            raise HTTPException(403, "task of another unit")
        return row

    def consultation(self, principal: Principal | None, consultation_id: str) -> tuple[BridgeConsultation, list[BridgeParty]]:
        with Session(self.engine) as s:
            row = s.get(BridgeConsultation, consultation_id)
            parties = list(s.exec(select(BridgeParty).where(col(BridgeParty.consultation_id) == consultation_id)).all())
        if row is None:
            raise HTTPException(404, f"no consultation {consultation_id}")
        if not self.units_of(principal) & {p.unit for p in parties}:
            raise HTTPException(403, "a consultation this token's units are not party to")
        return row, parties

    def seen(self, consumer: str, event_id: str) -> bool:
        """Whether the bridge already read this report back (a retry of a request that succeeded)."""
        with Session(self.engine) as s:
            return s.get(ProcessedEvent, (consumer, event_id)) is not None


def _health_routes(api: FastAPI) -> None:
    @api.get("/health", dependencies=[Depends(PUBLIC)], tags=["health"])
    async def health() -> dict[str, str]:
        """Liveness (no token)."""
        return {"status": "ok"}


def _unknown_unit(known: frozenset[str], unit: str | None, field: str) -> None:
    if unit is not None and unit not in known:
        raise RequestValidationError([{"type": "value_error", "loc": ("body", field), "msg": f"unknown unit {unit!r}",
                                       "input": unit}])


def task_out(row: BridgeTask, calendar: WorkCalendar | None = None, now: datetime | None = None,
             joint: domain.Joint | None = None) -> TaskOut:
    assigned: ev.TaskAssigned = Envelope[ev.TaskAssigned].model_validate_json(row.assigned_json).data
    clocks = [] if calendar is None or now is None else [
        ClockOut(clock=c.clock, due=c.due, unit=c.unit, left_s=None if c.left is None else int(c.left.total_seconds()),
                 stopped=c.stopped, running=c.running)
        for c in domain.clocks_left(calendar, domain.Deadlines(row.sign_for_due, row.response_due, row.resolution_due),
                                    assigned.limits, row.status, now)]
    return TaskOut(as_of=now if clocks else None, clocks=clocks,
                   joint=None if joint is None else JointOut(lead=joint.lead, co_units=list(joint.co_units), done=list(joint.done)),
                   task_id=row.task_id, ticket_id=row.ticket_id, unit=row.unit, role=row.role, round=row.round,
                   final=row.final, category=row.category, status=row.status, assigned_at=domain.as_utc(row.assigned_at),
                   extension_pending=row.extensions_requested > row.extensions_decided,
                   extensions_granted=row.extensions_granted, handler=row.handler, last_note=row.last_note, result=row.result,
                   joint_with=list(assigned.joint_with), ticket=assigned.ticket, sign_for_due=_utc(row.sign_for_due),
                   response_due=_utc(row.response_due), resolution_due=_utc(row.resolution_due))


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else domain.as_utc(moment)


def consultation_out(row: BridgeConsultation, parties: Iterable[BridgeParty], mine: frozenset[str] = frozenset()) -> ConsultationOut:
    d: ev.ConsultationRequested = Envelope[ev.ConsultationRequested].model_validate_json(row.requested_json).data
    parties = list(parties)
    return ConsultationOut(mine=[OpinionOut(unit=p.unit, answered=p.answered, agrees=p.agrees, proposed_lead=p.proposed_lead,
                                            comment=p.comment) for p in parties if p.unit in mine],
                           consultation_id=row.consultation_id, ticket_id=row.ticket_id, reason=d.reason, proposed=d.proposed,
                           opinions_due=domain.as_utc(row.opinions_due), closed=row.closed, category=d.category,
                           parties=[PartyOut(unit=p.unit, answered=p.answered) for p in parties], ticket=d.ticket)


def _task_routes(api: FastAPI, reads: _Reads, publish: Publish, known_units: frozenset[str], consumer: str,
                 unit_levels: dict[str, str]) -> None:
    tags: list[str | Enum] = ["tasks"]

    async def report(principal: Principal | None, task_id: str, action: Action, key: str | None,
                     build: Callable[[Envelope[Any], str], Envelope[Any]], to_level: str | None = None) -> ReportAccepted:
        """Check who asks and what the task allows, then publish the report `build` makes from the assignment.
        A retry (same Idempotency-Key) of a report already applied is answered 202 again, whatever the task's state
        now; without a key every request is checked anew."""
        row = reads.task(principal, task_id)
        envelope = build(Envelope[ev.TaskAssigned].model_validate_json(row.assigned_json), row.unit)
        if not (key and reads.seen(consumer, envelope.id)):
            reason = domain.refusal(action, row.status, final=row.final,
                                    extension_pending=row.extensions_requested > row.extensions_decided)
            if reason is None and action in (Action.on_the_spot, Action.escalate):
                assigned = Envelope[ev.TaskAssigned].model_validate_json(row.assigned_json).data
                reason = domain.grid_work_refusal(action, assigned, unit_levels.get(row.unit, ""), to_level)
            if reason:
                raise HTTPException(409, reason)
        await publish(UNIT_REPORTS.name, envelope)
        return ReportAccepted(event_id=envelope.id, event_type=envelope.type, task_id=task_id, status_url=f"/tasks/{task_id}")

    @api.get("/tasks", tags=tags, response_model=list[TaskOut], responses=ERRORS)
    async def open_tasks(principal: Caller, unit: UnitFilter = None, limit: int = Query(200, ge=1, le=1000)) -> list[TaskOut]:
        """The caller's open tasks (assigned, signed-for, in-progress, waiting-on-resident), the most urgent first."""
        units = reads.units_of(principal, unit)
        with Session(reads.engine) as s:
            rows = s.exec(select(BridgeTask).where(col(BridgeTask.unit).in_(units), col(BridgeTask.status).in_(OPEN))
                          .order_by(col(BridgeTask.resolution_due).is_(None), col(BridgeTask.resolution_due),
                                    col(BridgeTask.assigned_at)).limit(limit)).all()
        return reads.tasks_out(list(rows))

    @api.get("/tasks/{task_id}", tags=tags, response_model=TaskOut, responses=ERRORS)
    async def one_task(principal: Caller, task_id: TaskId) -> TaskOut:
        """One task of the caller's units, in any state."""
        return reads.tasks_out([reads.task(principal, task_id)])[0]

    @api.post("/tasks/{task_id}/sign-for", tags=tags, status_code=202, response_model=ReportAccepted, responses=REPORT_ERRORS)
    async def sign_for(principal: Caller, task_id: TaskId, idempotency_key: IdempotencyKey = None) -> ReportAccepted:
        """Sign for (签收) an assigned task. The handler recorded is the token's subject."""
        assert principal is not None
        return await report(principal, task_id, Action.sign_for, idempotency_key,
                            lambda t, u: unit_reports.sign_for(t, u, handler=principal.subject, key=idempotency_key))

    @api.post("/tasks/{task_id}/progress", tags=tags, status_code=202, response_model=ReportAccepted, responses=REPORT_ERRORS)
    async def progress(principal: Caller, task_id: TaskId, body: ProgressIn, idempotency_key: IdempotencyKey = None) -> ReportAccepted:
        """Report progress; `waiting_on_resident` pauses the clocks until the next report."""
        key = idempotency_key or _each_one()  # several notes on one task are several reports
        return await report(principal, task_id, Action.progress, idempotency_key,
                            lambda t, u: unit_reports.progress(t, u, body.note, body.waiting_on_resident, key=key))

    @api.post("/tasks/{task_id}/extension", tags=tags, status_code=202, response_model=ReportAccepted, responses=REPORT_ERRORS)
    async def extension(principal: Caller, task_id: TaskId, body: ExtensionIn, idempotency_key: IdempotencyKey = None) -> ReportAccepted:
        """Ask for more time (延期); the hotline decides (the decision shows on the task)."""
        key = idempotency_key or _each_one()  # a unit may ask again after a decision
        return await report(principal, task_id, Action.extension, idempotency_key,
                            lambda t, u: unit_reports.request_extension(t, u, body.amount, body.unit, body.reason, key=key))

    @api.post("/tasks/{task_id}/return", tags=tags, status_code=202, response_model=ReportAccepted, responses=REPORT_ERRORS)
    async def return_task(principal: Caller, task_id: TaskId, body: ReturnIn, idempotency_key: IdempotencyKey = None) -> ReportAccepted:
        """Return the task (退单) as not this unit's, with the reason and, if known, the responsible unit."""
        _unknown_unit(known_units, body.suggested_unit, "suggested_unit")
        return await report(principal, task_id, Action.return_, idempotency_key,
                            lambda t, u: unit_reports.return_task(t, u, body.reason, body.suggested_unit, key=idempotency_key))

    @api.post("/tasks/{task_id}/complete", tags=tags, status_code=202, response_model=ReportAccepted, responses=REPORT_ERRORS)
    async def complete(principal: Caller, task_id: TaskId, body: CompleteIn, idempotency_key: IdempotencyKey = None) -> ReportAccepted:
        """Complete the unit's part (办结) with what was done."""
        return await report(principal, task_id, Action.complete, idempotency_key,
                            lambda t, u: unit_reports.complete(t, u, body.result, key=idempotency_key))

    @api.post("/tasks/{task_id}/resolve-on-the-spot", tags=tags, status_code=202, response_model=ReportAccepted,
              responses=REPORT_ERRORS)
    async def resolve_on_the_spot(principal: Caller, task_id: TaskId, body: OnTheSpotIn,
                                  idempotency_key: IdempotencyKey = None) -> ReportAccepted:
        """A grid worker resolved a small matter where it was (就地解决): the task is completed, the co-units' parts
        are withdrawn and the ticket counts as handled at grid level (docs/grid-workers.md). 409 when the task is
        not a grid-led matter of the caller's grid."""
        return await report(principal, task_id, Action.on_the_spot, idempotency_key,
                            lambda t, u: unit_reports.resolve_on_the_spot(t, u, body.result, key=idempotency_key))

    @api.post("/tasks/{task_id}/escalate", tags=tags, status_code=202, response_model=ReportAccepted,
              responses=REPORT_ERRORS)
    async def escalate(principal: Caller, task_id: TaskId, body: EscalateIn,
                       idempotency_key: IdempotencyKey = None) -> ReportAccepted:
        """Send the matter up the area chain (上报) to a level above the unit's, with a reason: the area of that level
        where the ticket is takes it. 409 for a level not above the unit's or a task it does not lead."""
        return await report(principal, task_id, Action.escalate, idempotency_key,
                            lambda t, u: unit_reports.escalate(t, u, body.to_level, body.reason, body.note,
                                                               key=idempotency_key), to_level=body.to_level)



def _each_one() -> str:
    return uuid.uuid4().hex


def _consultation_routes(api: FastAPI, reads: _Reads, publish: Publish, known_units: frozenset[str],
                         now: Callable[[], datetime], consumer: str) -> None:
    tags: list[str | Enum] = ["consultations"]

    @api.get("/consultations", tags=tags, response_model=list[ConsultationOut], responses=ERRORS)
    async def open_consultations(principal: Caller, unit: UnitFilter = None, answered: AnsweredFilter = False) -> list[ConsultationOut]:
        """Consultations (协商) the caller's units are convened to and have not answered, before their due time;
        with `answered=true`, also those they answered that are not settled yet (to see their own opinion)."""
        units = reads.units_of(principal, unit)
        moment = domain.as_utc(now())
        waiting = col(BridgeConsultation.opinions_due) >= moment
        mine = col(BridgeParty.answered).is_(False) & waiting
        with Session(reads.engine) as s:
            rows = s.exec(select(BridgeConsultation).join(BridgeParty, col(BridgeParty.consultation_id) == col(BridgeConsultation.consultation_id))
                          .where(col(BridgeParty.unit).in_(units), col(BridgeConsultation.closed).is_(False),
                                 (col(BridgeParty.answered).is_(True) | mine) if answered else mine)
                          .order_by(col(BridgeConsultation.opinions_due))).unique().all()
            parties: dict[str, list[BridgeParty]] = {row.consultation_id: [] for row in rows}
            for p in s.exec(select(BridgeParty).where(col(BridgeParty.consultation_id).in_(list(parties)))).all():
                parties[p.consultation_id].append(p)
        return [consultation_out(row, parties[row.consultation_id], units) for row in rows]

    @api.get("/consultations/{consultation_id}", tags=tags, response_model=ConsultationOut, responses=ERRORS)
    async def one_consultation(principal: Caller, consultation_id: ConsultationId) -> ConsultationOut:
        """One consultation the caller's units are party to, with who has answered."""
        return consultation_out(*reads.consultation(principal, consultation_id), reads.units_of(principal))

    @api.post("/consultations/{consultation_id}/opinion", tags=tags, status_code=202, response_model=ReportAccepted, responses=REPORT_ERRORS)
    async def opinion(principal: Caller, consultation_id: ConsultationId, body: OpinionIn,
                      idempotency_key: IdempotencyKey = None) -> ReportAccepted:
        """Give the unit's opinion on the proposed plan (agree, or propose another lead)."""
        _unknown_unit(known_units, body.proposed_lead, "proposed_lead")
        row, parties = reads.consultation(principal, consultation_id)
        party = _answering_party(reads.units_of(principal, body.unit), parties)
        cause = Envelope[ev.ConsultationRequested].model_validate_json(row.requested_json)
        envelope = unit_reports.opinion(cause, party.unit, body.agrees, body.proposed_lead, body.comment, key=idempotency_key)
        if not (idempotency_key and reads.seen(consumer, envelope.id)):
            reason = domain.opinion_refusal(closed=row.closed, answered=party.answered,
                                            opinions_due=domain.as_utc(row.opinions_due), now=now())
            if reason:
                raise HTTPException(409, reason)
        await publish(UNIT_REPORTS.name, envelope)
        return ReportAccepted(event_id=envelope.id, event_type=envelope.type, consultation_id=consultation_id,
                              status_url=f"/consultations/{consultation_id}")



def _answering_party(units: frozenset[str], parties: list[BridgeParty]) -> BridgeParty:
    """The party the caller answers as: the one it acts for, or the one it names among several."""
    mine = [p for p in parties if p.unit in units]
    if not mine:
        raise HTTPException(403, "a consultation this unit is not party to")
    if len(mine) > 1:
        raise RequestValidationError([{"type": "value_error", "loc": ("body", "unit"), "input": None,
                                       "msg": f"the caller is convened as several parties ({', '.join(p.unit for p in mine)}): name one"}])
    return mine[0]
