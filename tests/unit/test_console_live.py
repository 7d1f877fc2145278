"""The live feed's summaries: what each lifecycle event says, where its ticket is, which units hold it."""

from __future__ import annotations

from typing import Any

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.examples import build_example
from contracts.registry import EVENT_TYPES
from contracts.topics import topic_for_event
from services.common.auth import Role
from services.console.live import LIFECYCLE_TOPICS, STATUS_AFTER, TicketMemory, summarise, visible_to
from tests.harness.console import principal

EAST = ev.Location(district="district-east", street="street-east-1", community="community-east-1-a", grid="grid-east-1-a-1")


def envelope(data: Any, ticket_id: str = "T-1") -> Envelope[Any]:
    return Envelope.origin(data, source="/test", ticket_id=ticket_id)


def assigned(unit: str, location: ev.Location = EAST) -> Any:
    example = build_example(ev.TaskAssigned)
    return example.model_copy(update={"unit": unit, "joint_with": (), "ticket": example.ticket.model_copy(update={"location": location})})


def test_every_event_of_the_lifecycle_topics_has_a_status_rule() -> None:
    on_feed = {name for name in EVENT_TYPES if topic_for_event(name) in LIFECYCLE_TOPICS}
    assert {EVENT_TYPES[name].__name__ for name in on_feed} == set(STATUS_AFTER)


def test_a_units_report_reaches_the_grid_and_units_its_ticket_was_seen_with() -> None:
    memory = TicketMemory()
    first = summarise(envelope(assigned("water")), memory)
    assert first["status"] == "dispatched" and first["grid"] == "grid-east-1-a-1" and first["units"] == ["water"]
    done = build_example(ev.TaskCompleted).model_copy(update={"unit": "water"})
    later = summarise(envelope(done), memory)
    assert later == later | {"status": "completed", "unit": "water", "grid": "grid-east-1-a-1", "district": "district-east"}
    closed = summarise(envelope(build_example(ev.TicketClosed)), memory)
    assert closed["status"] == "closed" and closed["units"] == ["water"] and closed["grid"] == "grid-east-1-a-1"
    assert visible_to(principal(Role.unit, unit="water"), closed)
    assert not visible_to(principal(Role.unit, unit="power"), closed)
    assert visible_to(principal(Role.grid_worker, grids=("grid-east-1-a-1",)), closed)


def test_a_summary_carries_no_text_and_no_caller() -> None:
    registered = build_example(ev.TicketRegistered)
    summary = summarise(envelope(registered), TicketMemory())
    assert set(summary) == {"ticket_id", "event_type", "status", "unit", "units", "grid", "district", "at"}
    assert registered.ticket.text not in str(summary)


def test_waiting_on_the_resident_and_consultation_are_told_apart() -> None:
    waiting = build_example(ev.ProgressReported).model_copy(update={"waiting_on_resident": True})
    assert summarise(envelope(waiting), TicketMemory())["status"] == "waiting-on-resident"
    consult = build_example(ev.TicketClassified).model_copy(update={"needs_consultation": True})
    assert summarise(envelope(consult), TicketMemory())["status"] == "consulting"


def test_the_memory_forgets_the_least_recently_seen_ticket_first() -> None:
    memory = TicketMemory(size=2)
    for ticket in ("T-1", "T-2", "T-1", "T-3"):
        summarise(envelope(assigned("water"), ticket), memory)
    assert len(memory) == 2
    assert summarise(envelope(build_example(ev.TicketClosed), "T-1"), memory)["units"] == ["water"]
    assert summarise(envelope(build_example(ev.TicketClosed), "T-2"), memory)["units"] == []  # forgotten
