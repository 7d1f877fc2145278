"""Each step applies the intake command addressed to it and writes the fact on its own topic: the same
fields, dated when the person decided, with an id derived from the command (a redelivery repeats it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import Session

from contracts import events as ev
from contracts.envelope import Envelope, derive_event_id
from contracts.examples import build_example
from contracts.topics import CONSULT, EVALUATE, TICKETS, TRIAGE
from domain.catalogue import load_catalogue
from services.common.pipeline import HandlerContext, NoDeps
from services.common.store import create_tables, make_engine
from services.sla.synthetic import TicketStory

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
DECIDED_AT = T0 + timedelta(hours=3)


def _run(tmp_path, tables: list, settings: Any, handle: Any, envelopes: list[Envelope[Any]], *, setup: Any = None,
         deps: Any = None) -> list[tuple[str, Envelope[Any]]]:
    """The emits of the last envelope, after the others (and `setup(session)`) were applied."""
    engine = make_engine(f"sqlite:///{tmp_path / 'step.db'}")
    create_tables(engine, tables)
    out: list = []
    with Session(engine) as s, s.begin():
        if setup is not None:
            setup(s)
            s.flush()
        ctx = HandlerContext(session=s, now=lambda: T0 + timedelta(days=1), source="/cityops/step", settings=settings,
                             deps=deps if deps is not None else NoDeps())
        for envelope in envelopes:
            out = [(e.topic, e.envelope) for e in handle(ctx, envelope)]
    return out


def _triage_deps() -> Any:
    from services.triage.handlers import TriageDeps

    return TriageDeps(catalogue=load_catalogue(), classifier=None)  # an operator's choice never asks the classifier


def _command(data: ev.Event, ticket_id: str = "T-1") -> Envelope[Any]:
    return Envelope.origin(data, source="/cityops/intake", ticket_id=ticket_id, time=DECIDED_AT)


def _is_fact_of(fact: Envelope[Any], command: Envelope[Any], fact_type: type[ev.Event]) -> None:
    assert isinstance(fact.data, fact_type)
    assert fact.data.model_dump() == command.data.model_dump()
    assert fact.time == command.time and fact.causation_id == command.id and fact.correlation_id == command.correlation_id
    assert fact.id == derive_event_id(command.id, fact_type.event_type, 0, command.ticket_id)


def test_triage_writes_the_operators_choice_then_the_classification(tmp_path):
    from services.triage.handlers import handle
    from services.triage.models import TriageTicket
    from services.triage.settings import TriageSettings

    ticket = build_example(ev.RegisteredTicket)
    command = _command(ev.ManualTriageSubmitted(category="city-management.street-light", operator="op-7"))
    out = _run(tmp_path, [TriageTicket.__table__], TriageSettings(), handle, [command],
               setup=lambda s: s.add(TriageTicket(ticket_id="T-1", registered_json=ticket.model_dump_json(), status="manual-triage")),
               deps=_triage_deps())
    assert [topic for topic, _ in out] == [TRIAGE.name, TRIAGE.name]
    _is_fact_of(out[0][1], command, ev.ManualTriageResolved)
    classified = out[1][1]
    assert isinstance(classified.data, ev.TicketClassified) and classified.data.method == "manual"
    assert classified.causation_id == out[0][1].id


def test_a_manual_choice_for_a_ticket_not_waiting_is_refused_and_writes_no_fact(tmp_path):
    from services.triage.handlers import handle
    from services.triage.models import TriageTicket
    from services.triage.settings import TriageSettings

    with pytest.raises(ValueError, match="not waiting for manual triage"):
        _run(tmp_path, [TriageTicket.__table__], TriageSettings(), handle,
             [_command(ev.ManualTriageSubmitted(category="city-management.street-light", operator="op-7"))],
             deps=_triage_deps())


def test_discover_writes_the_split_request_then_splits_a_merged_ticket(tmp_path):
    from services.discover.handlers import handle
    from services.discover.models import KnownTicket
    from services.discover.settings import DiscoverSettings

    ticket = build_example(ev.RegisteredTicket)
    command = _command(ev.SplitSubmitted(requested_by="op-7", reason="different lamp"))
    merged = KnownTicket(ticket_id="T-1", place_key="k", text=ticket.text, category=None, submitted_at=T0,
                         master_ticket_id="T-0", registered_json=ticket.model_dump_json())
    out = _run(tmp_path, [KnownTicket.__table__], DiscoverSettings(), handle, [command], setup=lambda s: s.add(merged))
    assert [(topic, type(e.data)) for topic, e in out] == [(TICKETS.name, ev.SplitRequested), (TICKETS.name, ev.TicketSplit)]
    _is_fact_of(out[0][1], command, ev.SplitRequested)
    # Not merged (any more): the request is still a fact, there is nothing to undo.
    (tmp_path / "unmerged").mkdir()
    again = _run(tmp_path / "unmerged", [KnownTicket.__table__], DiscoverSettings(), handle, [command])
    assert [type(e.data) for _, e in again] == [ev.SplitRequested]


def test_consult_writes_the_supervisors_decision(tmp_path):
    from services.consult.handlers import handle
    from services.consult.models import Consultation, RoutedTicket
    from services.consult.settings import ConsultSettings

    command = _command(ev.SupervisorDecisionSubmitted(consultation_id="C-1", supervisor="sup-1",
                                                      routing=ev.Routing(lead="street-east-1", level=ev.Level.street)))
    out = _run(tmp_path, [Consultation.__table__, RoutedTicket.__table__], ConsultSettings(), handle, [command])
    assert [topic for topic, _ in out] == [CONSULT.name]
    _is_fact_of(out[0][1], command, ev.SupervisorDecided)


def test_evaluate_writes_the_callback_then_closes(tmp_path):
    from services.evaluate.handlers import handle
    from services.evaluate.models import store_tables
    from services.evaluate.settings import EvaluateSettings

    story = TicketStory("T-1")
    story.registered(T0)
    story.assigned(T0, "water")
    story.handled(T0 + timedelta(hours=2), ("water",))
    command = _command(ev.CallbackSubmitted(round=1, resolved=True, satisfaction=ev.Satisfaction.satisfied, operator="op-9"))
    out = _run(tmp_path, store_tables(), EvaluateSettings(), handle, [*story.events, command])
    assert [(topic, type(e.data)) for topic, e in out] == [(EVALUATE.name, ev.CallbackRecorded), (EVALUATE.name, ev.TicketClosed)]
    _is_fact_of(out[0][1], command, ev.CallbackRecorded)
    assert out[1][1].causation_id == out[0][1].id
