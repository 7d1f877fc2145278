"""The ledger: whose clock was running, spans that tile each ticket's lifetime exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.holders import (
    CONSULTATION,
    HOTLINE,
    RESIDENT,
    LedgerTilingError,
    Span,
    bounds_for,
    check_tiles,
    ledger_for,
    ledgers_by_ticket,
    tiling_problems,
    time_by_party,
)
from services.sla.synthetic import TicketStory

T0 = datetime(2025, 11, 3, 9, 0, tzinfo=UTC)


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def parties(spans: list[Span]) -> list[tuple[str, float, float]]:
    return [(s.party, (s.start - T0).total_seconds() / 3600, (s.end - T0).total_seconds() / 3600) for s in spans]


def test_a_plain_ticket_hotline_unit_resident_unit_hotline():
    story = TicketStory("T-1")
    story.registered(h(0))
    story.classified(h(0.5), lead="water")
    task = story.assigned(h(1), "water")
    story.signed_for(h(2), task)
    story.progress(h(3), task, waiting_on_resident=True)
    story.progress(h(5), task)
    story.extension_decided(h(6), task)  # an extension is still the unit's time
    story.completed(h(8), task)
    story.handled(h(8), ("water",))
    story.callback_requested(h(8.5), ("water",))
    story.callback_recorded(h(9))
    story.closed(h(10))
    spans = ledger_for(story.events)
    assert parties(spans) == [(HOTLINE, 0, 1), ("unit:water", 1, 3), (RESIDENT, 3, 5), ("unit:water", 5, 8),
                              (HOTLINE, 8, 10)]
    check_tiles(spans, *bounds_for(story.events))
    assert time_by_party(spans)["unit:water"] == timedelta(hours=5)


def test_consultation_wins_and_the_lead_holds_while_co_units_work():
    story = TicketStory("T-2")
    story.registered(h(0))
    story.consultation_requested(h(1), ("water", "housing"), due=h(20))
    story.plan_agreed(h(4), lead="water", deadline=h(100))
    lead = story.assigned(h(4), "water")
    co = story.assigned(h(4), "housing", role="co")
    story.completed(h(6), lead)
    story.completed(h(7), co)
    story.closed(h(9))
    assert parties(ledger_for(story.events)) == [(HOTLINE, 0, 1), (CONSULTATION, 1, 4), ("unit:water", 4, 6),
                                                 ("unit:housing", 6, 7), (HOTLINE, 7, 9)]


def test_a_return_goes_back_to_the_hotline_and_a_refused_return_stays_with_the_unit():
    story = TicketStory("T-3")
    story.registered(h(0))
    first = story.assigned(h(1), "water")
    story.returned(h(2), first)
    story.reroute_requested(h(2), ("water",), 1)
    second = story.assigned(h(3), "housing", round=2, final=True)
    story.returned(h(4), second)
    story.return_rejected(h(4.5), second)
    story.completed(h(6), second)
    spans = ledger_for(story.events, now=h(12))
    assert parties(spans) == [(HOTLINE, 0, 1), ("unit:water", 1, 2), (HOTLINE, 2, 3), ("unit:housing", 3, 4),
                              (HOTLINE, 4, 4.5), ("unit:housing", 4.5, 6), (HOTLINE, 6, 12)]
    check_tiles(spans, *bounds_for(story.events, now=h(12)))


def test_a_reopened_ticket_waits_on_the_hotline_until_the_new_round_is_assigned():
    story = TicketStory("T-4")
    story.registered(h(0))
    story.completed(h(2), story.assigned(h(1), "water"))
    story.reopened(h(3), 2, ("water",))
    story.completed(h(6), story.assigned(h(4), "water", round=2))
    story.closed(h(7), rounds=2)
    story.progress(h(8), "T-4:water:2")  # after the close: ignored
    assert parties(ledger_for(story.events)) == [(HOTLINE, 0, 1), ("unit:water", 1, 2), (HOTLINE, 2, 4),
                                                 ("unit:water", 4, 6), (HOTLINE, 6, 7)]


def test_events_arriving_out_of_time_order_are_placed_by_their_time():
    story = TicketStory("T-5")
    story.registered(h(0))
    task = story.assigned(h(1), "water")
    story.completed(h(3), task)
    story.progress(h(2), task, waiting_on_resident=True)  # read later from another topic, happened earlier
    spans = ledger_for(story.events)
    assert parties(spans) == [(HOTLINE, 0, 1), ("unit:water", 1, 2), (RESIDENT, 2, 3)]


def test_check_tiles_reports_gaps_overlaps_and_wrong_ends():
    good = [Span(HOTLINE, h(0), h(1)), Span("unit:a", h(1), h(2))]
    check_tiles(good, h(0), h(2))
    with pytest.raises(LedgerTilingError):
        check_tiles([Span(HOTLINE, h(0), h(1)), Span("unit:a", h(1.5), h(2))], h(0), h(2))
    assert tiling_problems([Span(HOTLINE, h(0), h(1.5)), Span("unit:a", h(1), h(2))], h(0), h(2))
    assert tiling_problems(good, h(0), h(3))
    assert tiling_problems([], h(0), h(1)) and not tiling_problems([], h(1), h(1))


def test_ledgers_by_ticket_splits_a_mixed_stream():
    a, b = TicketStory("A"), TicketStory("B")
    a.registered(h(0))
    b.registered(h(1))
    a.closed(h(2))
    ledgers = ledgers_by_ticket(a.events + b.events, now=h(5))
    assert parties(ledgers["A"]) == [(HOTLINE, 0, 2)] and parties(ledgers["B"]) == [(HOTLINE, 1, 5)]


# ----- the property: any sequence of events, in any order, tiles its lifetime ---------------------------

ACTIONS = ["assign", "assign_co", "sign", "progress", "wait", "extension", "complete", "return", "reject",
           "consult", "agree", "decide", "reopen", "handled", "callback"]


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from(ACTIONS), st.integers(-90, 600), st.integers(0, 3)), max_size=40),
       close=st.booleans(), now_after=st.integers(0, 1000))
def test_spans_always_tile_the_lifetime_exactly(steps, close, now_after):
    story = TicketStory("T-P")
    story.registered(T0)
    clock, rounds, tasks = T0, 1, []
    for action, minutes, pick in steps:
        clock += timedelta(minutes=minutes)  # negative: a service whose clock lags stamps the past
        task = tasks[pick % len(tasks)] if tasks else "T-P:nobody:1"
        match action:
            case "assign" | "assign_co":
                unit = f"u{len(tasks)}"
                tasks.append(story.assigned(clock, unit, round=rounds, role="lead" if action == "assign" else "co"))
            case "sign":
                story.signed_for(clock, task)
            case "progress" | "wait":
                story.progress(clock, task, waiting_on_resident=action == "wait")
            case "extension":
                story.extension_decided(clock, task)
            case "complete":
                story.completed(clock, task)
            case "return":
                story.returned(clock, task)
            case "reject":
                story.return_rejected(clock, task)
            case "consult":
                story.consultation_requested(clock, ("u0", "u1"), due=clock)
            case "agree":
                story.plan_agreed(clock, "u0", deadline=clock)
            case "decide":
                story.supervisor_decided(clock, "u0")
            case "reopen":
                rounds += 1
                story.reopened(clock, rounds, ("u0",))
            case "handled":
                story.handled(clock, ("u0",))
            case "callback":
                story.callback_requested(clock, ("u0",))
    if close:
        story.closed(clock + timedelta(minutes=5))
    now = clock + timedelta(minutes=now_after)
    spans = ledger_for(story.events, now=now)
    start, end = bounds_for(story.events, now=now)
    check_tiles(spans, start, end)
    assert sum((s.duration for s in spans), timedelta()) == end - start
    assert all(a.party != b.party for a, b in zip(spans, spans[1:]))  # neighbours always differ
