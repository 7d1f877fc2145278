"""act is the one writer of the units' task topics: what consult and sla address to units reaches them
through act, as the same event (same id), on each unit's task topic (the shared area topic for a grid or a
community, a department's own), keyed by the unit id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.topics import AREA_TASKS, own_task_topic
from domain.catalogue import load_catalogue
from services.act.handlers import ActDeps, handle
from services.act.models import ActTicket, Task
from services.act.settings import ActSettings
from services.common.pipeline import HandlerContext
from services.common.store import create_tables, make_engine
from services.sla.synthetic import TicketStory

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
GRID, COMMUNITY = "grid-east-1-a-1", "community-east-1-a"


@pytest.fixture
def act(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'act.db'}")
    create_tables(engine, [ActTicket.__table__, Task.__table__])

    def feed(envelope: Envelope) -> list[tuple[str, str | None, str]]:
        with Session(engine) as s, s.begin():
            ctx = HandlerContext(session=s, now=lambda: T0, source="/cityops/act", settings=ActSettings(),
                                 deps=ActDeps(load_catalogue().level_of))
            out = list(handle(ctx, envelope))
        return [(e.topic, e.key, e.envelope.id) for e in out]

    return feed


def _dispatched(act) -> tuple[TicketStory, str]:
    story = TicketStory("T-F")
    story.registered(T0)
    emits = act(story.classified(T0, GRID))
    assert (AREA_TASKS.name, GRID, emits[0][2]) in emits
    return story, f"T-F:{GRID}:1"


def test_sla_reminders_and_escalations_reach_the_unit_and_its_supervisor(act):
    story, task = _dispatched(act)
    reminder = Envelope.origin(ev.SlaReminderSent(task_id=task, unit=GRID, clock="resolution", fraction=0.5,
                                                  deadline=T0 + timedelta(days=1)), source="/cityops/sla", ticket_id="T-F")
    assert act(reminder) == [(AREA_TASKS.name, GRID, reminder.id)]
    breach = Envelope.origin(ev.TicketEscalated(from_level="grid", to_level="community", to_unit=COMMUNITY, reason="breach",
                                                task_id=task), source="/cityops/sla", ticket_id="T-F")
    assert act(breach) == [(AREA_TASKS.name, GRID, breach.id), (AREA_TASKS.name, COMMUNITY, breach.id)]
    ping_pong = Envelope.origin(ev.TicketEscalated(to_level="city", to_unit="hotline", reason="ping-pong", task_id=task),
                                source="/cityops/sla", ticket_id="T-F")
    assert act(ping_pong) == [(own_task_topic("hotline"), "hotline", ping_pong.id)]


def test_a_consultation_reaches_every_party(act):
    story = TicketStory("T-C")
    story.registered(T0)
    requested = story.consultation_requested(T0, ("water", "housing"), T0 + timedelta(hours=2))
    assert act(requested) == [(own_task_topic("water"), "water", requested.id),
                              (own_task_topic("housing"), "housing", requested.id)]
