"""Pure rules of the workflow services, without a broker."""

from __future__ import annotations

from datetime import UTC, datetime

from contracts import events as ev
from services.act import domain as act
from services.consult import domain as consult
from services.discover import domain as discover
from services.evaluate import domain as evaluate

T0 = datetime(2026, 5, 6, 9, 0, tzinfo=UTC)


def submitted(text: str, when: datetime = T0, **loc: object) -> ev.TicketSubmitted:
    return ev.TicketSubmitted(channel="phone", text=text, submitted_at=when, location=ev.Location(**loc))


def test_phone_is_masked_and_pseudonym_is_stable_and_keyed():
    ref = discover.caller_ref(ev.Caller(name="张三", phone="13812345678"), key="k1")
    assert ref.masked_phone == "138****5678"
    assert ref == discover.caller_ref(ev.Caller(phone="138 1234 5678"), key="k1")
    assert ref.pseudonym != discover.caller_ref(ev.Caller(phone="13812345678"), key="k2").pseudonym
    assert "13812345678" not in ref.model_dump_json()
    assert discover.caller_ref(ev.Caller(), key="k1").anonymous


def test_proactive_rule_fires_only_at_seventy():
    from domain.residents.rules import load_rules

    event = lambda age: ev.ResidentLifeEventRecorded(resident_ref="R1", kind="birthday", age=age, occurred_on=T0)  # noqa: E731
    assert [f.rule.rule_id for f in discover.life_event_firings(event(70), None, load_rules())] == ["old-age-allowance-70"]
    assert discover.life_event_firings(event(69), None, load_rules()) == []


def test_consultation_verdicts():
    parties = ("water", "environment")
    assert consult.verdict(parties, {"water": (True, None)}).outcome == "waiting"
    assert consult.verdict(parties, {"water": (True, None), "environment": (True, None)}).outcome == "agreed"
    disputed = consult.verdict(parties, {"water": (False, "environment")})
    assert disputed.outcome == "disputed" and "water" in disputed.reason
    routing = ev.Routing(lead="water", co_units=("environment",), level="district")
    assert consult.parties_for(routing, ("housing", "water")) == ("water", "environment", "housing")


def test_ticket_is_handled_only_when_lead_and_every_remaining_co_unit_completed():
    L, C = ev.Role.lead, ev.Role.co
    assert not act.handling_complete([(L, "completed"), (C, "signed-for")])
    assert act.handling_complete([(L, "completed"), (C, "completed")])
    assert act.handling_complete([(L, "completed"), (C, "returned")])
    assert not act.handling_complete([(L, "withdrawn"), (C, "completed")])
    assert not act.handling_complete([])


def test_extension_allowance():
    assert act.extension_decision(0, 1, final=False)[0]
    assert not act.extension_decision(1, 1, final=False)[0]


def test_callback_verdicts():
    cb = lambda resolved, sat, rnd=1: ev.CallbackRecorded(round=rnd, resolved=resolved, satisfaction=sat)  # noqa: E731
    assert evaluate.after_callback(cb(True, "basically-satisfied"), 3) == "close"
    assert evaluate.after_callback(cb(True, "unsatisfied"), 3) == "reopen"
    assert evaluate.after_callback(cb(False, "satisfied"), 3) == "reopen"
    assert evaluate.after_callback(cb(False, "satisfied", 3), 3) == "close-unresolved"
    from domain.rates import rate
    assert rate(0, 0) is None and rate(1, 4) == 0.25


def test_ping_pong_escalation_opens_an_arbitration_for_a_supervisor(tmp_path):
    from sqlmodel import Session

    from contracts.envelope import Envelope
    from contracts.examples import build_example
    from domain.calendar import WorkCalendar
    from services.common.pipeline import HandlerContext
    from services.common.store import create_tables, make_engine
    from services.consult import handlers
    from services.consult.models import Consultation, RoutedTicket
    from services.consult.settings import ConsultSettings

    engine = make_engine(f"sqlite:///{tmp_path / 'consult.db'}")
    create_tables(engine, [Consultation.__table__, RoutedTicket.__table__])
    classified = build_example(ev.TicketClassified).model_copy(update={"needs_consultation": False})
    escalated = ev.TicketEscalated(reason="ping-pong", to_unit="hotline", task_id="T-9:water:3")
    with Session(engine) as s, s.begin():
        ctx = HandlerContext(session=s, now=lambda: T0, source="/test", settings=ConsultSettings(),
                             deps=handlers.ConsultDeps(calendar=WorkCalendar.load(strict_coverage=False)))
        assert list(handlers.handle(ctx, Envelope.origin(classified, source="/t", ticket_id="T-9"))) == []
        out = list(handlers.handle(ctx, Envelope.origin(escalated, source="/sla", ticket_id="T-9")))
    review = out[0].envelope.data
    assert isinstance(review, ev.SupervisorReviewRequested) and review.proposed == classified.routing
    assert out[0].topic == "cityops.consult.v1" and "ping-pong" in review.reason
