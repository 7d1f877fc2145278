"""SLA timers on a controllable clock: holidays and 调休, reminders, breach, escalation, extension, pauses."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import events as ev
from domain.calendar import WorkCalendar
from domain.catalogue import load_catalogue
from services.sla import domain
from services.sla.domain import SlaPolicy, Timer

SH = ZoneInfo("Asia/Shanghai")
POLICY = SlaPolicy()


def at(month: int, day: int, hour: int = 0, minute: int = 0, year: int = 2025) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SH)


@pytest.fixture(scope="module")
def cal() -> WorkCalendar:
    return WorkCalendar.load()


def limits(sign_for: str = "1wd", response: str = "2wd", resolution: str = "3wd") -> ev.Limits:
    spec = {k: dict(zip(("amount", "unit"), domain.parse_limit(v), strict=True))
            for k, v in {"sign_for": sign_for, "response": response, "resolution": resolution}.items()}
    return ev.Limits.model_validate(spec)


def timer(clock: str = "resolution", *, assigned: datetime, unit: str = "water", level: str | None = "city",
          **limit_text: str) -> Timer:
    timers = domain.timers_for_task(task_id="T-1:water:1", ticket_id="T-1", unit=unit, level=level,
                                    limits=limits(**limit_text), assigned_at=assigned)
    return next(t for t in timers if t.clock == clock)


def fire(t: Timer, now: datetime, cal: WorkCalendar, policy: SlaPolicy = POLICY) -> tuple[Timer, list[domain.Firing]]:
    return domain.fire_due(t, now, cal, policy)


def kinds(firings: list[domain.Firing]) -> list[str]:
    return [f.key for f in firings]


# ----- holidays and 调休 -------------------------------------------------------------------------------


def test_national_day_2025_reminders_at_50_and_80_percent_and_breach_on_the_make_up_saturday(cal):
    # Assigned Tue 30 Sep 10:00, 3 working days: 1-8 Oct are off, Sat 11 Oct is a make-up workday.
    t = timer(assigned=at(9, 30, 10), resolution="3wd")
    # Budget: 6 h on 30 Sep + 3 x 7 h = 27 h of working time. 50% = 13.5 h -> Fri 10 Oct 09:30.
    assert domain.next_due_at(t, cal, POLICY) == at(10, 10, 9, 30)
    t, fired = fire(t, at(10, 8, 23, 59), cal)
    assert fired == []  # the whole holiday costs nothing
    t, fired = fire(t, at(10, 10, 9, 30), cal)
    assert kinds(fired) == ["resolution|reminder|0.5"]
    assert fired[0].deadline == at(10, 11, 17, 30)
    # 80% = 21.6 h -> 1.6 h into Saturday 11 Oct: 10:36.
    assert domain.next_due_at(t, cal, POLICY) == at(10, 11, 10, 36)
    t, fired = fire(t, at(10, 11, 10, 35), cal)
    assert fired == []
    t, fired = fire(t, at(10, 11, 10, 36), cal)
    assert kinds(fired) == ["resolution|reminder|0.8"]
    t, fired = fire(t, at(10, 11, 17, 30), cal)
    assert fired == []  # breached only strictly after the deadline
    t, fired = fire(t, at(10, 11, 17, 31), cal)
    assert kinds(fired) == ["resolution|breach|", "task|escalation|1"]
    assert t.breach_deadline == at(10, 11, 17, 30)


def test_sign_for_on_a_make_up_sunday(cal):
    # Registered on Saturday 27 Sep: day 1 is Sunday 28 Sep, a make-up workday, not Monday.
    t = timer("sign_for", assigned=at(9, 27, 12))
    assert t.sla_clock(cal).deadline == at(9, 28, 17, 30)


def test_spring_festival_2026_deadlines_skip_the_nine_days_off(cal):
    # Fri 13 Feb 16:00, 2 working days: Sat 14 Feb works (调休), 15-23 Feb are off, so day 2 is Tue 24 Feb.
    t = timer(assigned=at(2, 13, 16, year=2026), resolution="2wd")
    assert t.sla_clock(cal).deadline == at(2, 24, 17, 30, year=2026)
    # Budget 1.5 + 7 + 7 = 15.5 h; 50% = 7.75 h -> Sat 14 Feb 16:45; 80% = 12.4 h -> Tue 24 Feb 14:24.
    assert domain.next_due_at(t, cal, POLICY) == at(2, 14, 16, 45, year=2026)
    t, fired = fire(t, at(2, 23, 23, 0, year=2026), cal)
    assert kinds(fired) == ["resolution|reminder|0.5"]
    assert domain.next_due_at(t, cal, POLICY) == at(2, 24, 14, 24, year=2026)
    t, fired = fire(t, at(2, 24, 14, 24, year=2026), cal)
    assert kinds(fired) == ["resolution|reminder|0.8"]


# ----- exactly once, catch-up ---------------------------------------------------------------------------


def test_each_reminder_fires_once_however_often_the_sweep_runs(cal):
    t = timer(assigned=at(11, 3, 9), resolution="1wd")  # Monday: deadline Tue 4 Nov 17:30
    seen: list[str] = []
    now = at(11, 3, 9)
    while now < at(11, 6, 18):
        t, fired = fire(t, now, cal)
        seen += kinds(fired)
        now += timedelta(minutes=7)
    assert seen == ["resolution|reminder|0.5", "resolution|reminder|0.8", "resolution|breach|",
                    "task|escalation|1"]


def test_a_sweep_after_a_long_outage_fires_everything_that_fell_due_in_order(cal):
    t = timer(assigned=at(11, 3, 9), resolution="1wd", unit="grid-east-1-a-1", level="grid")
    t, fired = fire(t, at(11, 20, 12), cal)
    assert kinds(fired) == ["resolution|reminder|0.5", "resolution|reminder|0.8", "resolution|breach|",
                            "task|escalation|1", "task|escalation|2", "task|escalation|3",
                            "task|escalation|4"]
    assert [(f.from_level, f.to_level) for f in fired if f.kind == "escalation"] == [
        ("grid", "community"), ("community", "street"), ("street", "district"), ("district", "city")]
    assert fire(t, at(12, 31, 12), cal)[1] == []  # top of the ladder: nothing more, ever
    assert domain.next_due_at(t, cal, POLICY) is None


# ----- escalation up the ladder ----------------------------------------------------------------------------


def test_breach_escalates_a_grid_task_to_its_community_then_to_the_street(cal):
    catalogue = load_catalogue()
    t = timer(assigned=at(11, 3, 9), resolution="1wd", unit="grid-east-1-a-1", level="grid")
    t, fired = fire(t, at(11, 4, 17, 31), cal)  # deadline Tue 17:30
    first = fired[-1]
    assert (first.kind, first.rung, first.from_level, first.to_level) == ("escalation", 1, "grid", "community")
    assert domain.supervisor_for(catalogue, t.unit, {}, first.to_level, "hotline") == "community-east-1-a"
    # The community gets the clock's own limit again (1 working day) from the missed deadline.
    assert domain.next_due_at(t, cal, POLICY) == at(11, 5, 17, 30)
    t, fired = fire(t, at(11, 5, 17, 30), cal)
    assert fired == []
    t, fired = fire(t, at(11, 5, 17, 31), cal)
    second = fired[0]
    assert (second.rung, second.from_level, second.to_level) == (2, "community", "street")
    assert domain.supervisor_for(catalogue, t.unit, {}, second.to_level, "hotline") == "street-east-1"
    assert t.rung == 2


def test_a_configured_escalation_window_replaces_the_clocks_own_limit(cal):
    policy = dataclasses.replace(POLICY, escalation_window=(2, "h"))
    t = timer(assigned=at(11, 3, 9), resolution="1wd", unit="grid-east-1-a-1", level="grid")
    t, _ = fire(t, at(11, 4, 17, 31), cal, policy)
    assert domain.next_due_at(t, cal, policy) == at(11, 4, 19, 30)


def test_a_city_department_escalates_once_to_the_city_supervisor(cal):
    t = timer(assigned=at(11, 3, 9), resolution="1wd", unit="water", level="city")
    t, fired = fire(t, at(11, 30, 12), cal)
    escalations = [f for f in fired if f.kind == "escalation"]
    assert [(f.from_level, f.to_level) for f in escalations] == [("city", "city")]
    assert domain.supervisor_for(load_catalogue(), "water", {}, "city", "hotline") == "hotline"


def test_supervisor_by_the_ticket_location_for_a_department_below_the_top():
    catalogue = load_catalogue()
    location = {"district": "district-west", "street": "street-west-2", "community": "community-west-2-b"}
    assert domain.supervisor_for(catalogue, "some-unknown-unit", location, "street", "hotline") == "street-west-2"
    assert domain.supervisor_for(None, "grid-east-1-a-1", location, "community", "hotline") is None  # level only


# ----- extension and pauses ---------------------------------------------------------------------------------


def test_an_approved_extension_moves_the_deadline(cal):
    t = timer(assigned=at(11, 3, 9), resolution="1wd")  # deadline Tue 4 Nov 17:30
    t, _ = fire(t, at(11, 4, 12), cal)
    t = domain.extend(t, 2, "wd")
    assert t.sla_clock(cal).deadline == at(11, 6, 17, 30)
    t, fired = fire(t, at(11, 4, 17, 31), cal)
    assert "resolution|breach|" not in kinds(fired)
    t, fired = fire(t, at(11, 6, 17, 31), cal)
    assert "resolution|breach|" in kinds(fired)


def test_consultation_time_is_not_charged_and_a_paused_clock_fires_nothing(cal):
    t = timer(assigned=at(11, 3, 9), resolution="1wd")
    t = domain.pause(t, "consultation", at(11, 3, 10))
    assert domain.next_due_at(t, cal, POLICY) is None
    t, fired = fire(t, at(11, 10, 10), cal)
    assert fired == []
    t = domain.resume(t, "consultation", at(11, 5, 10))  # two working days in consultation
    assert t.sla_clock(cal).deadline == at(11, 6, 17, 30)
    assert fire(t, at(11, 4, 17, 31), cal)[1] == []


def test_overlapping_pauses_hold_the_clock_until_both_reasons_end(cal):
    t = timer(assigned=at(11, 3, 9), resolution="1wd")
    t = domain.pause(t, "resident", at(11, 3, 10))
    t = domain.pause(t, "consultation", at(11, 3, 11))
    t = domain.resume(t, "resident", at(11, 3, 12))
    assert t.paused
    t = domain.resume(t, "consultation", at(11, 4, 10))
    assert not t.paused and len(t.pauses) == 1
    assert t.sla_clock(cal).deadline == at(11, 5, 17, 30)  # one working day (10:00 to 10:00) credited


def test_waiting_on_the_resident_over_a_weekend_costs_a_working_day_clock_nothing(cal):
    t = timer(assigned=at(11, 7, 9), resolution="1wd")  # Fri: deadline Mon 10 Nov 17:30
    t = domain.pause(t, "resident", at(11, 7, 17, 30))
    t = domain.resume(t, "resident", at(11, 10, 9))
    assert t.sla_clock(cal).deadline == at(11, 10, 17, 30)


def test_completion_on_time_and_late(cal):
    on_time = domain.finish(timer(assigned=at(11, 3, 9), resolution="1wd"), at(11, 4, 17, 30), cal)
    late = domain.finish(timer(assigned=at(11, 3, 9), resolution="1wd"), at(11, 4, 17, 31), cal)
    assert (on_time.status, on_time.on_time, late.on_time) == ("done", True, False)
    assert fire(on_time, at(12, 1), cal)[1] == []


def test_a_finish_while_waiting_on_the_resident_does_not_charge_the_wait(cal):
    t = domain.pause(timer(assigned=at(11, 3, 9), resolution="1wd"), "resident", at(11, 3, 10))
    done = domain.finish(t, at(11, 5, 10), cal)
    assert done.on_time is True and not done.paused


def test_a_returned_task_stops_and_a_refused_return_runs_on_as_if_never_stopped(cal):
    t = timer(assigned=at(11, 3, 9), resolution="1wd")
    returned = domain.set_aside(t, "returned", at(11, 3, 11))
    assert fire(returned, at(11, 20), cal)[1] == []
    back = domain.reinstate(returned)
    assert back.sla_clock(cal).deadline == at(11, 4, 17, 30)
    assert "resolution|breach|" in kinds(fire(back, at(11, 4, 17, 31), cal)[1])


def test_a_resolution_date_fixed_by_consultation_replaces_the_limit(cal):
    due = at(11, 12, 18)
    timers = domain.timers_for_task(task_id="T:u:1", ticket_id="T", unit="u", level=None, limits=limits(),
                                    assigned_at=at(11, 3, 9), resolution_due=due)
    resolution = next(t for t in timers if t.clock == "resolution")
    assert resolution.sla_clock(cal).deadline == due


# ----- a property: fired instants agree with the schedule --------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(start_minutes=st.integers(0, 60 * 24 * 200), amount=st.integers(1, 6), unit=st.sampled_from(["wd", "wh", "h"]),
       step_minutes=st.integers(20, 1440))
def test_sweeping_at_any_pace_fires_each_point_exactly_once_and_never_early(cal, start_minutes, amount, unit,
                                                                             step_minutes):
    start = at(6, 1) + timedelta(minutes=start_minutes)
    t = timer(assigned=start, unit="grid-east-1-a-1", level="grid", sign_for=f"1{unit}", response=f"1{unit}",
              resolution=f"{amount}{unit}")
    deadline = t.sla_clock(cal).deadline
    now, keys = start, []
    while now < deadline + timedelta(days=60) and t.rung < 4:
        due = domain.next_due_at(t, cal, POLICY)
        t, fired = fire(t, now, cal)
        for firing in fired:
            assert due is not None and due <= now  # the schedule never sleeps past a firing
            if firing.kind == "reminder":
                assert t.sla_clock(cal).fraction_elapsed(now) >= firing.fraction
            else:
                assert now > deadline
        keys += kinds(fired)
        now += timedelta(minutes=step_minutes)
    assert keys == ["resolution|reminder|0.5", "resolution|reminder|0.8", "resolution|breach|",
                    "task|escalation|1", "task|escalation|2", "task|escalation|3",
                    "task|escalation|4"]


# ----- ping-pong and the returns index ----------------------------------------------------------------------


def test_ping_pong_needs_more_than_n_returns_inside_the_window():
    window = timedelta(days=10)
    times = [at(11, 1), at(11, 5), at(11, 9)]
    assert domain.is_ping_pong(times, at(11, 9), max_returns=2, window=window)
    assert not domain.is_ping_pong(times[:2], at(11, 5), max_returns=2, window=window)
    assert not domain.is_ping_pong(times, at(11, 12), max_returns=2, window=window)  # the first fell out


def test_returns_index_counts_only_overruled_returns_per_hundred_tickets():
    rows = domain.returns_index([("water", True), ("water", False), ("housing", True)],
                                {"water": 50, "housing": 200, "power": 10})
    by_unit = {r.unit: r for r in rows}
    assert by_unit["water"].per_hundred == pytest.approx(2.0)
    assert by_unit["housing"].per_hundred == pytest.approx(0.5)
    assert by_unit["power"].per_hundred == 0.0
    assert [r.unit for r in rows][:2] == ["water", "housing"]


def test_unit_rates_use_finished_clocks_only_and_flag_small_samples(cal):
    base = timer(assigned=at(11, 3, 9), resolution="1wd")
    done_on_time = domain.finish(base, at(11, 4, 10), cal)
    done_late = domain.finish(base, at(11, 5, 10), cal)
    returned = domain.set_aside(base, "returned", at(11, 3, 10))
    rates = domain.unit_rates([done_on_time, done_late, returned, base], min_sample=3)
    water = rates[0]
    assert (water.clocks["resolution"].finished, water.clocks["resolution"].on_time) == (2, 1)
    assert water.clocks["resolution"].rate == 0.5 and water.small_sample and water.running == 1


def test_a_running_clock_past_its_deadline_is_judged_late_as_projections_judge_it(cal):
    import dataclasses

    from domain.rates import response_counts

    base = timer(assigned=at(11, 3, 9), resolution="1wd")
    overdue = dataclasses.replace(base, breach_deadline=at(11, 4, 17))  # breached, still not done
    water = domain.unit_rates([domain.finish(base, at(11, 4, 10), cal), overdue, base], min_sample=1)[0]
    assert (water.clocks["resolution"].finished, water.clocks["resolution"].on_time) == (2, 1)
    # the same verdict the projections give a task whose sign-for clock breached without a sign-for
    assert domain.clock_verdict(overdue) == response_counts(signed_for=False, sign_for_breached=True)


def test_parse_limit():
    assert domain.parse_limit("13wd") == (13, "wd") and domain.parse_limit("30m") == (30, "m")
    with pytest.raises(ValueError):
        domain.parse_limit("3 weeks")
