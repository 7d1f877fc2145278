"""The simulated units: an answer without delay goes out with the event's batch, and is the same event
(same derived id, same content) the tick sends when the answer is delayed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlmodel import Session

from contracts import codec
from contracts import events as ev
from contracts.topics import AUDIT
from services.common.pipeline import HandlerContext
from services.common.store import create_tables, make_engine
from services.sla.synthetic import TicketStory
from services.units.handlers import UnitDeps, handle, send_due
from services.units.hotline import StaffTokens
from services.units.models import PendingAction
from services.units.settings import UnitSettings
from tests.harness.auth import verifier
from tests.harness.workflow import STAFF_TOKENS

UNIT = "housing"


def _assignment():
    story = TicketStory("T-U1")
    at = datetime(2026, 3, 2, 9, tzinfo=UTC)
    story.registered(at)
    story.assigned(at + timedelta(minutes=5), UNIT)
    return story.events[-1]


def _run(tmp_path, name: str, assignment, delay_s: float, now: datetime) -> tuple[list, list, int]:
    """(events emitted while handling, events the tick sends an hour later, pending rows in between)."""
    settings = UnitSettings(sign_delay_s=delay_s, work_delay_s=delay_s, p_return=0, p_extension=0)
    engine = make_engine(f"sqlite:///{tmp_path / name}.db")
    create_tables(engine, [PendingAction.__table__])
    clock = [now]
    with Session(engine) as session, session.begin():
        ctx = HandlerContext(session=session, now=lambda: clock[0], source="/cityops/units", settings=settings,
                             deps=UnitDeps(frozenset({UNIT})))
        handled = list(handle(ctx, assignment))
        pending = session.execute(select(func.count()).select_from(PendingAction.__table__)).scalar_one()
        clock[0] = now + timedelta(hours=1)
        ticked = send_due(ctx)
    return handled, ticked, pending


def _wire(emits: list) -> list[tuple[str, bytes, bytes, list]]:
    """What would go on the wire, without the send time (the tick stamps its own `now`)."""
    out = []
    for emit in emits:
        rec = codec.encode(emit.envelope)
        out.append((emit.topic, rec.key, rec.value, [(k, v) for k, v in rec.headers if k != "ce_time"]))
    return out


def test_answers_without_delay_go_out_at_once_as_the_same_events_the_tick_sends(tmp_path):
    now = datetime(2026, 3, 2, 10, tzinfo=UTC)
    assignment = _assignment()
    at_once, ticked_after_none, pending_none = _run(tmp_path, "at-once", assignment, 0, now)
    handled_later, later, pending_later = _run(tmp_path, "later", assignment, 5, now)

    assert [type(e.envelope.data) for e in at_once] == [ev.TaskSignedFor, ev.ProgressReported, ev.TaskCompleted]
    assert pending_none == 0 and ticked_after_none == []
    assert handled_later == [] and pending_later == 3
    assert sorted(_wire(at_once)) == sorted(_wire(later))


# --- the simulated hotline staff go through intake's HTTP API --------------------------------------

def _hotline_fixture(tmp_path, known_tickets: set[str]):
    """A units store, and intake's real API (its broker replaced by a list) behind an in-process transport."""
    import httpx

    from domain.catalogue import load_catalogue
    from services.intake.api import build_api
    from services.intake.models import TicketStatus

    published: list = []

    async def publish(topic, envelope):
        if topic != AUDIT.name:  # the audit trail of these posts is tests/unit/test_audit.py's
            published.append((topic, envelope))

    intake_engine = make_engine(f"sqlite:///{tmp_path / 'intake.db'}")
    create_tables(intake_engine, [TicketStatus.__table__])
    with Session(intake_engine) as s, s.begin():
        for tid in known_tickets:
            s.add(TicketStatus(ticket_id=tid, status="awaiting-callback", requested_at=datetime(2026, 3, 2, tzinfo=UTC),
                               updated_at=datetime(2026, 3, 2, tzinfo=UTC)))
    api = build_api(publish=publish, engine=intake_engine, catalogue=load_catalogue(), now=lambda: datetime(2026, 3, 2, 11, tzinfo=UTC),
                    verifier=verifier())
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://intake")
    engine = make_engine(f"sqlite:///{tmp_path / 'units.db'}")
    create_tables(engine, [PendingAction.__table__])
    return client, engine, published


def _pending(engine) -> list[str]:
    with Session(engine) as s:
        return list(s.execute(select(PendingAction.__table__.c.kind)).scalars())


def test_simulated_callbacks_and_decisions_are_posted_to_intake_not_emitted(tmp_path):
    import asyncio

    from contracts.envelope import Envelope
    from contracts.topics import COMMANDS
    from services.units.hotline import post_due

    client, engine, published = _hotline_fixture(tmp_path, {"T-CB", "T-SUP"})
    settings = UnitSettings(sign_delay_s=0, callbacks=True, supervisor=True)
    now = datetime(2026, 3, 2, 10, tzinfo=UTC)
    callback = Envelope.origin(ev.CallbackRequested(round=1, caller=ev.CallerRef(anonymous=True), units=("water",)),
                               source="/cityops/evaluate", ticket_id="T-CB", time=now)
    review = Envelope.origin(ev.SupervisorReviewRequested(consultation_id="C-1", reason="disputed", opinions=(),
                                                          proposed=ev.Routing(lead="street-east-1", level="street")),
                             source="/cityops/consult", ticket_id="T-SUP", time=now)
    with Session(engine) as session, session.begin():
        ctx = HandlerContext(session=session, now=lambda: now, source="/cityops/units", settings=settings, deps=UnitDeps(frozenset({UNIT})))
        assert list(handle(ctx, callback)) == [] and list(handle(ctx, review)) == []  # nothing on Kafka from units
        assert send_due(ctx) == []
    assert sorted(_pending(engine)) == ["callback", "decision"]

    async def rounds():
        async with client:
            first = await post_due(client, engine, now, tokens=STAFF_TOKENS)
            again = await post_due(client, engine, now + timedelta(seconds=1), tokens=STAFF_TOKENS)
        return first, again

    assert asyncio.run(rounds()) == (1, 1)  # the callback at once (no delay); the decision 0.2 s later
    assert _pending(engine) == []
    assert [topic for topic, _ in published] == [COMMANDS.name] * 2
    cb, decision = (e for _, e in published)
    # who decided is each one's own token
    assert isinstance(cb.data, ev.CallbackSubmitted) and cb.ticket_id == "T-CB" and cb.data.operator == "simulated-callback-desk"
    assert isinstance(decision.data, ev.SupervisorDecisionSubmitted) and decision.data.routing.lead == "street-east-1"
    assert decision.data.supervisor == "simulated-supervisor"


def test_a_decision_intake_cannot_take_yet_is_kept_and_posted_again_with_the_same_key(tmp_path):
    import asyncio

    from contracts.envelope import Envelope
    from services.intake.models import TicketStatus
    from services.units.hotline import post_due

    client, engine, published = _hotline_fixture(tmp_path, set())
    settings = UnitSettings(sign_delay_s=0, callbacks=True)
    now = datetime(2026, 3, 2, 10, tzinfo=UTC)
    callback = Envelope.origin(ev.CallbackRequested(round=1, caller=ev.CallerRef(anonymous=True), units=("water",)),
                               source="/cityops/evaluate", ticket_id="T-LATE", time=now)
    with Session(engine) as session, session.begin():
        ctx = HandlerContext(session=session, now=lambda: now, source="/cityops/units", settings=settings, deps=UnitDeps(frozenset({UNIT})))
        list(handle(ctx, callback))

    async def rounds():
        async with client:
            assert await post_due(client, engine, now, tokens=STAFF_TOKENS) == 0  # 404: intake's status view has not seen it
            with Session(make_engine(f"sqlite:///{tmp_path / 'intake.db'}")) as s, s.begin():
                s.add(TicketStatus(ticket_id="T-LATE", status="awaiting-callback", requested_at=now, updated_at=now))
            assert await post_due(client, engine, now) == 0  # no token: 401, kept until the token is set
            assert await post_due(client, engine, now, tokens=StaffTokens(operator=STAFF_TOKENS.supervisor)) == 0  # 403: kept
            assert await post_due(client, engine, now, tokens=STAFF_TOKENS) == 1
            # A crash before the row was deleted posts it again: the same key, so the same command id.
            await client.post("/callbacks", json={"ticket_id": "T-LATE", "round": 1, "resolved": True, "satisfaction": "satisfied"},
                              headers={"Idempotency-Key": f"{callback.id}:hotline:0", **STAFF_TOKENS.headers("callback")})

    asyncio.run(rounds())
    assert _pending(engine) == [] and len(published) == 2 and published[0][1].id == published[1][1].id
