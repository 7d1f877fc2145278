"""The SLA handlers and the timer sweep on a real store, with time under the test's control (no broker)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session

from contracts import events as ev
from contracts.topics import SLA
from domain.catalogue import load_catalogue
from domain.holders import check_tiles, ledger_bounds, spans_from_facts
from services.common.pipeline import Emit, HandlerContext
from services.common.store import create_tables
from services.sla import domain
from services.sla.handlers import build_runtime, handle, sweep
from services.sla.models import TABLES, all_timers, make_store_engine, returns_and_tickets, ticket_facts
from services.sla.settings import SlaSettings
from services.sla.synthetic import TicketStory

SH = ZoneInfo("Asia/Shanghai")
GRID = "grid-east-1-a-1"
ONE_DAY = ev.Limits(sign_for=ev.TimeLimitSpec(amount=2, unit="wh"), response=ev.TimeLimitSpec(amount=4, unit="wh"),
                    resolution=ev.TimeLimitSpec(amount=1, unit="wd"))


def at(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2025, month, day, hour, minute, tzinfo=SH)


class Sla:
    """The SLA service's handlers on a SQLite store, driven by hand: feed events, sweep at a chosen now."""

    def __init__(self, path=None, **overrides):
        self.settings = SlaSettings(**overrides)
        self.engine = make_store_engine(f"sqlite:///{path / 'sla.db'}" if path else "sqlite://")
        create_tables(self.engine, TABLES)
        self.runtime = build_runtime(self.settings, load_catalogue())
        self.now = at(1, 1)

    def _ctx(self, session: Session) -> HandlerContext:
        return HandlerContext(session=session, now=lambda: self.now, source="/cityops/sla", settings=self.settings,
                              deps=self.runtime)

    def feed(self, events) -> list[Emit]:
        with Session(self.engine) as session, session.begin():
            ctx = self._ctx(session)
            return [emit for e in events for emit in handle(ctx, e)]

    def sweep(self, now: datetime) -> list[Emit]:
        self.now = now
        with Session(self.engine) as session, session.begin():
            return sweep(self._ctx(session))

    def timers(self) -> dict[tuple[str, str], domain.Timer]:
        with Session(self.engine) as session:
            return {(t.task_id, t.clock): t for t in all_timers(session)}


@pytest.fixture
def sla(tmp_path) -> Sla:
    return Sla(tmp_path)


def summary(emits: list[Emit]) -> list[tuple[str, str, str]]:
    out = []
    for emit in emits:
        data = emit.envelope.data
        detail = getattr(data, "clock", None) or getattr(data, "reason", "")
        if isinstance(data, ev.SlaReminderSent):
            detail = f"{data.clock}@{data.fraction}"
        if isinstance(data, ev.TicketEscalated):
            detail = f"{data.from_level}->{data.to_level}:{data.to_unit}"
        out.append((emit.topic, type(data).__name__, detail))
    return out


def grid_story(ticket_id: str = "T-G") -> tuple[TicketStory, str]:
    story = TicketStory(ticket_id, category="community.neighbour-dispute", limits=ONE_DAY)
    story.registered(at(11, 3, 8))
    story.classified(at(11, 3, 8, 30), lead=GRID, level=ev.Level.grid)
    return story, story.assigned(at(11, 3, 9), GRID)  # Monday 09:00


def test_reminders_breach_and_two_rungs_of_escalation_are_written_on_the_sla_topic(sla):
    # sla writes only its own topic: act forwards the notices to the unit and its supervisors
    # (tests/unit/test_act_forwards.py), being the one writer of the units' task topics.
    story, task = grid_story()
    sla.feed(story.events)
    story.signed_for(at(11, 3, 10), task)
    story.progress(at(11, 3, 11), task)
    sla.feed(story.events[-2:])
    assert sla.sweep(at(11, 3, 13)) == []  # resolution budget: 1wd = 14 h of working time; 50% at Tue 12:00
    emits = sla.sweep(at(11, 4, 12))
    assert summary(emits) == [(SLA.name, "SlaReminderSent", "resolution@0.5")]
    assert sla.sweep(at(11, 4, 12, 1)) == []  # fired once
    assert [s[2] for s in summary(sla.sweep(at(11, 4, 16)))] == ["resolution@0.8"]
    escalation = summary(sla.sweep(at(11, 4, 17, 31)))
    assert escalation == [
        (SLA.name, "SlaBreached", "resolution"),
        (SLA.name, "TicketEscalated", "grid->community:community-east-1-a"),
    ]
    assert sla.sweep(at(11, 5, 17, 30)) == []
    second = summary(sla.sweep(at(11, 5, 17, 31)))
    assert second == [(SLA.name, "TicketEscalated", "community->street:street-east-1")]


def test_sign_for_and_response_clocks_breach_on_their_own_when_the_unit_is_silent(sla):
    story, task = grid_story()
    sla.feed(story.events)
    emits = sla.sweep(at(11, 3, 15))  # sign-for 2 wh: due 11:00; response 4 wh: due 14:30
    kinds = Counter((type(e.envelope.data).__name__, getattr(e.envelope.data, "clock", None)) for e in emits
                    if e.topic == SLA.name)
    assert kinds[("SlaBreached", "sign_for")] == 1 and kinds[("SlaBreached", "response")] == 1
    assert kinds[("SlaBreached", "resolution")] == 0
    # Sign-for breached at 11:00 and its 2 wh window ran out at 14:30: two rungs. The response clock's own
    # first rung adds nothing: each level is told once.
    escalated = [e.envelope.data.to_level for e in emits if e.topic == SLA.name and isinstance(e.envelope.data, ev.TicketEscalated)]
    assert escalated == ["community", "street"]
    assert not [e for e in sla.sweep(at(11, 3, 16)) if isinstance(e.envelope.data, ev.TicketEscalated)]


def test_consultation_and_the_resident_pause_the_clocks_and_an_extension_moves_the_deadline(sla):
    story, task = grid_story()
    story.signed_for(at(11, 3, 9, 30), task)
    story.progress(at(11, 3, 10), task, waiting_on_resident=True)  # 1 h used
    story.progress(at(11, 4, 10), task)  # waited a whole working day
    story.consultation_requested(at(11, 4, 11), (GRID, "water"), due=at(11, 6))  # 2 h used
    story.supervisor_decided(at(11, 5, 11), GRID)  # a working day in consultation
    story.extension_decided(at(11, 5, 12), task, amount=1, unit="wd")
    sla.feed(story.events)
    resolution = sla.timers()[(task, "resolution")]
    # 1wd from Mon 09:00 = Tue 17:30; +1 wd waiting, +1 wd consultation, +1 wd extension = Fri 17:30.
    assert resolution.sla_clock(sla.runtime.calendar).deadline == at(11, 7, 17, 30)
    assert not [e for e in sla.sweep(at(11, 7, 17, 30)) if isinstance(e.envelope.data, ev.SlaBreached)]
    assert [e for e in sla.sweep(at(11, 7, 17, 31)) if isinstance(e.envelope.data, ev.SlaBreached)]


def test_completion_stops_every_clock_and_records_on_time(sla):
    story, task = grid_story()
    story.completed(at(11, 4, 10), task)
    sla.feed(story.events)
    timers = sla.timers()
    assert {c: (timers[(task, c)].status, timers[(task, c)].on_time) for c in domain.CLOCKS} == {
        "sign_for": ("done", False), "response": ("done", False), "resolution": ("done", True)}
    assert sla.sweep(at(12, 31)) == []


def test_a_closed_ticket_fires_nothing_more(sla):
    story, _ = grid_story()
    story.closed(at(11, 3, 9, 30))
    sla.feed(story.events)
    assert sla.sweep(at(12, 31)) == []


def test_ping_pong_escalates_to_arbitration_once_and_the_returns_index_counts_the_overruled(sla):
    story = TicketStory("T-PP")
    story.registered(at(11, 3, 8))
    emits = []
    for round_, unit in enumerate(["water", "housing"], start=1):
        task = story.assigned(at(11, 3, 9 + round_), unit, round=round_)
        emits += sla.feed([story.events[-1], story.returned(at(11, 3, 9 + round_, 30), task)])
    assert emits == []  # two returns: not more than N=2
    task = story.assigned(at(11, 3, 14), "water", round=3)
    emits = sla.feed([story.events[-1], story.returned(at(11, 3, 14, 30), task)])
    assert summary(emits) == [(SLA.name, "TicketEscalated", "None->city:hotline")]  # act forwards it to the arbiter
    assert emits[0].envelope.data.reason == "ping-pong"
    task = story.assigned(at(11, 3, 15), "housing", round=4)
    assert sla.feed([story.events[-1], story.returned(at(11, 3, 15, 30), task)]) == []  # once per ticket
    sla.feed([story.supervisor_decided(at(11, 4, 9), "water")])
    with Session(sla.engine) as session:
        returns, tickets = returns_and_tickets(session)
    index = {r.unit: r for r in domain.returns_index(returns, tickets)}
    assert (index["water"].returns, index["water"].overruled, index["water"].tickets) == (2, 2, 1)
    assert index["water"].per_hundred == 200.0
    assert (index["housing"].returns, index["housing"].overruled) == (2, 0)


def test_a_refused_return_resumes_the_clocks_and_counts_as_overruled(sla):
    story, task = grid_story()
    story.returned(at(11, 3, 9, 10), task)
    story.return_rejected(at(11, 3, 9, 20), task)
    sla.feed(story.events)
    assert sla.timers()[(task, "resolution")].status == "running"
    with Session(sla.engine) as session:
        returns, _ = returns_and_tickets(session)
    assert returns == [(GRID, True)]


def test_a_sweep_rolled_back_by_a_crash_fires_the_same_events_with_the_same_ids_next_time(sla):
    story, _ = grid_story()
    sla.feed(story.events)
    sla.now = at(11, 4, 12)
    with Session(sla.engine) as session:
        session.begin()
        first = sweep(sla._ctx(session))
        session.rollback()  # the process died before the commit
    again = sla.sweep(at(11, 4, 12))
    assert [e.envelope.id for e in again] == [e.envelope.id for e in first] and first
    assert sla.sweep(at(11, 4, 12)) == []


def test_the_stored_ledger_tiles_the_lifetime(sla):
    story, task = grid_story()
    story.progress(at(11, 3, 10), task, waiting_on_resident=True)
    story.completed(at(11, 4, 10), task)
    story.closed(at(11, 5, 9))
    sla.feed(story.events)
    with Session(sla.engine) as session:
        facts = ticket_facts(session, "T-G")
    spans = spans_from_facts(facts)
    check_tiles(spans, *ledger_bounds(facts))
    assert [s.party for s in spans] == ["hotline", f"unit:{GRID}", "resident", "hotline"]


def test_a_task_announced_twice_keeps_its_first_clocks(sla):
    story, task = grid_story()
    sla.feed(story.events)
    again = TicketStory("T-G", limits=ONE_DAY)
    again.assigned(at(11, 5, 9), GRID)
    sla.feed(again.events)
    assert sla.timers()[(task, "resolution")].started_at == at(11, 3, 9)


def _clock_state(sla: Sla) -> dict:
    calendar = sla.runtime.calendar
    return {key: (t.status, t.on_time, t.sla_clock(calendar).deadline_at(at(12, 31)), t.pause_reasons)
            for key, t in sla.timers().items()}


def _busy_story() -> TicketStory:
    story, task = grid_story("T-ORDER")
    story.signed_for(at(11, 3, 9, 30), task)
    story.progress(at(11, 3, 10), task, waiting_on_resident=True)
    story.consultation_requested(at(11, 3, 11), (GRID, "water"), due=at(11, 6))
    story.progress(at(11, 4, 10), task)
    story.supervisor_decided(at(11, 4, 11), GRID)
    story.extension_decided(at(11, 4, 12), task, amount=1, unit="wd")
    story.completed(at(11, 6, 16), task)
    return story


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=st.permutations(range(len(_busy_story().events))))
def test_the_order_events_arrive_in_does_not_change_the_clocks(order):
    # Several topics give no order between them: a sign-for can be read before its assignment.
    story = _busy_story()
    in_order, shuffled = Sla(), Sla()
    in_order.feed(story.events)
    shuffled.feed([story.events[i] for i in order])
    assert _clock_state(shuffled) == _clock_state(in_order)
    resolution = _clock_state(in_order)[("T-ORDER:grid-east-1-a-1:1", "resolution")]
    assert resolution[:2] == ("done", True)


def test_settings_refuse_nonsense():
    with pytest.raises(ValueError):
        SlaSettings(reminder_fractions=(0.5, 1.2))
    with pytest.raises(ValueError):
        SlaSettings(ladder=())
    assert SlaSettings(reminder_fractions=(0.8, 0.5, 0.8)).reminder_fractions == (0.5, 0.8)
    assert SlaSettings(pingpong_window="P3D").pingpong_window == timedelta(days=3)


class ExplodingCatalogue:
    """The real catalogue, except that looking up one unit fails once `explode` is set."""

    def __init__(self, bad_unit: str) -> None:
        self.real, self.bad_unit, self.explode = load_catalogue(), bad_unit, False

    def unit(self, unit_id: str):
        if self.explode and unit_id == self.bad_unit:
            raise RuntimeError("corrupt catalogue entry")
        return self.real.unit(unit_id)

    def __getattr__(self, name: str):
        return getattr(self.real, name)


def test_a_timer_that_cannot_fire_is_parked_and_the_others_still_fire(sla):
    catalogue = ExplodingCatalogue(GRID)
    sla.runtime = build_runtime(sla.settings, catalogue)
    bad, bad_task = grid_story("T-BAD")
    good = TicketStory("T-OK", limits=ONE_DAY)
    good.registered(at(11, 3, 8))
    good_task = good.assigned(at(11, 3, 9), "grid-east-2-a-1")
    for story, task in ((bad, bad_task), (good, good_task)):
        story.signed_for(at(11, 3, 9, 5), task)
        story.progress(at(11, 3, 9, 10), task)
    sla.feed(bad.events + good.events)
    catalogue.explode = True
    emits = sla.sweep(at(11, 4, 17, 31))
    assert {e.envelope.ticket_id for e in emits} == {"T-OK"}
    timers = sla.timers()
    assert timers[(bad_task, "resolution")].fired == () and timers[(bad_task, "resolution")].rung == 0
    catalogue.explode = False
    assert sla.sweep(at(11, 4, 17, 32)) == []  # parked: it waits for an event (or an operator), not a retry storm


# ---------------------------------------------------------------------------- who may report (domain.reports)
# A report from another unit read after the assignment is dead-lettered (tests/unit/test_unit_report_readers.py);
# these are the ones read before it, which sla cannot refuse when they come (it does not park).


def _from(story: TicketStory, when: datetime, data: ev.Event):
    return story.add(data, when, "/cityops/units")


def test_another_unit_s_reports_read_before_the_assignment_move_no_clock_nor_the_ledger():
    story, task = grid_story()
    forged = [_from(story, at(11, 3, 8, 45), ev.TaskSignedFor(task_id=task, unit="water")),  # dated before the assignment
              _from(story, at(11, 3, 9, 30), ev.ProgressReported(task_id=task, unit="water", note="on it")),
              _from(story, at(11, 3, 10), ev.TaskCompleted(task_id=task, unit="water", result="fixed"))]
    honest, attacked = Sla(), Sla()
    honest.feed(story.events[:3])
    attacked.feed(forged + story.events[:3])  # read ahead of the assignment: nothing to refuse them by yet
    assert _clock_state(attacked) == _clock_state(honest)
    assert {t.status for t in attacked.timers().values()} == {"running"}
    ledgers = []
    for svc in (honest, attacked):
        with Session(svc.engine) as session:
            ledgers.append(spans_from_facts(ticket_facts(session, "T-G"), at(11, 4)))
    assert ledgers[1] == ledgers[0] and [s.party for s in ledgers[1]] == ["hotline", f"unit:{GRID}"]
    honest.feed([story.completed(at(11, 3, 11), task)])  # the task's own unit is heard
    assert {t.status for t in honest.timers().values()} == {"done"}


def test_returns_count_for_ping_pong_and_the_returns_index_only_by_the_unit_assigned():
    story = TicketStory("T-PP")
    story.registered(at(11, 3, 8))
    sla = Sla()
    # Returns forged by another unit on the ticket's first task, read before its assignment, and on tasks never
    # assigned at all: none counts, however many.
    first = "T-PP:water:1"
    forged = [_from(story, at(11, 3, 9, m), ev.TaskReturned(task_id=task, unit=unit, reason="not ours"))
              for m, (task, unit) in enumerate([(first, "housing"), ("T-PP:housing:7", "housing"),
                                                ("T-PP:housing:8", "housing"), ("T-PP:housing:9", "housing")])]
    assert sla.feed(forged) == []
    story.assigned(at(11, 3, 8, 30), "water")
    assert sla.feed([story.events[-1]]) == []
    with Session(sla.engine) as session:
        returns, _ = returns_and_tickets(session)
    assert returns == []
    # A genuine return read before its assignment counts once the assignment is read.
    early = TicketStory("T-EARLY")
    early.registered(at(11, 3, 8))
    tasks = [early.assigned(at(11, 3, 9 + n), unit, round=n + 1) for n, unit in enumerate(["water", "housing", "water"])]
    assigned = list(early.events[1:])
    returned = [early.returned(at(11, 3, 9 + n, 30), task) for n, task in enumerate(tasks)]
    emits = sla.feed(assigned[:2] + returned)  # the third return is read before the third assignment
    assert emits == []
    assert summary(sla.feed(assigned[2:])) == [(SLA.name, "TicketEscalated", "None->city:hotline")]


def test_a_rebuild_skips_a_report_the_live_service_refused_and_records_it_dead_lettered(tmp_path):
    from services.common.collector import bulk_collection
    from services.common.store import ProcessedEvent
    from services.sla.rebuild import _apply
    from tests.harness.pipeline import record_of

    story, task = grid_story()
    forged = _from(story, at(11, 3, 10), ev.TaskCompleted(task_id=task, unit="water", result="fixed"))
    rebuilt = Sla(tmp_path)
    with bulk_collection() as collector:
        assert _apply(rebuilt.engine, rebuilt.settings, rebuilt.runtime, [record_of(e) for e in story.events],
                      collector) == 3
        assert collector.units == 1  # one chunk of the rebuild: one unit
    assert {t.status for t in rebuilt.timers().values()} == {"running"}
    with Session(rebuilt.engine) as session:
        assert session.get(ProcessedEvent, ("sla", forged.id)).outcome == "dead-lettered"


def test_a_rebuild_read_in_stretches_equals_one_read_and_applies_a_re_sent_copy_once(tmp_path, monkeypatch):
    """`cityops sla rebuild` applies the log a fetch at a time (its length is not bounded by memory): a copy of an
    event re-sent in a later stretch is found in the ledger, and every timer's next due time is set in chunks."""
    from sqlalchemy import func, select, update

    from services.common.collector import bulk_collection
    from services.common.store import ProcessedEvent
    from services.sla import rebuild
    from services.sla.models import SlaTimerRow
    from tests.harness.pipeline import record_of

    def due_times(store: Sla) -> dict[tuple[str, str], datetime | None]:
        with Session(store.engine) as session:
            return {(t.task_id, t.clock): t.next_due_at for t in session.execute(select(SlaTimerRow)).scalars()}

    stories = [grid_story(f"T-G{n}") for n in range(4)]
    for story, task in stories:
        story.signed_for(at(11, 3, 10), task)
    records = [record_of(e) for story, _ in stories for e in story.events]
    copy = records[1]  # an outbox re-send, read again later
    whole, stretched = Sla(tmp_path / "whole"), Sla(tmp_path / "stretched")
    monkeypatch.setattr(rebuild, "TIMER_BATCH", 3)
    with bulk_collection() as collector:
        applied_once = rebuild._apply(whole.engine, whole.settings, whole.runtime, records, collector)
        applied = sum(rebuild._apply(stretched.engine, stretched.settings, stretched.runtime, part, collector)
                      for part in (records[:5], records[5:11], records[11:] + [copy]))
        with Session(stretched.engine) as session, session.begin():
            session.execute(update(SlaTimerRow).values(next_due_at=None))  # so that the reschedule must set each
        rebuild._reschedule(stretched.engine, stretched.runtime, collector)

    assert applied == applied_once == len(records)
    assert stretched.timers() == whole.timers()
    expected = due_times(whole)
    assert sum(due is not None for due in expected.values()) > rebuild.TIMER_BATCH  # more than one chunk to set
    assert due_times(stretched) == expected
    with Session(stretched.engine) as session:
        assert session.execute(select(func.count()).select_from(ProcessedEvent)).scalar() == len(records)
