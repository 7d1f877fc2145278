"""The working-day calendar: holiday data, deadline arithmetic and the pausable SLA clock."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.calendar import (
    CalendarCoverageError,
    ClockStateError,
    NaiveDatetimeError,
    SlaClock,
    WorkCalendar,
    load_calendar,
    parse_working_hours,
)

SH = ZoneInfo("Asia/Shanghai")


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SH)


def days(first: date, last: date) -> set[date]:
    return {first + timedelta(days=offset) for offset in range((last - first).days + 1)}


@pytest.fixture(scope="module")
def cal() -> WorkCalendar:
    return WorkCalendar.load()


# ----- the holiday data ---------------------------------------------------------------------------------


def _kinds_in(year: int) -> tuple[set[date], set[date]]:
    kinds = load_calendar().day_kinds()
    off = {day for day, kind in kinds.items() if kind == "off" and day.year == year}
    work = {day for day, kind in kinds.items() if kind == "work" and day.year == year}
    return off, work


def test_2025_days_off_and_make_up_days_match_the_notice():
    off, work = _kinds_in(2025)
    expected_off = (
        {date(2025, 1, 1)}
        | days(date(2025, 1, 28), date(2025, 2, 4))
        | days(date(2025, 4, 4), date(2025, 4, 6))
        | days(date(2025, 5, 1), date(2025, 5, 5))
        | days(date(2025, 5, 31), date(2025, 6, 2))
        | days(date(2025, 10, 1), date(2025, 10, 8))
    )
    assert off == expected_off
    assert work == {date(2025, 1, 26), date(2025, 2, 8), date(2025, 4, 27), date(2025, 9, 28), date(2025, 10, 11)}


def test_2026_days_off_and_make_up_days_match_the_notice():
    off, work = _kinds_in(2026)
    expected_off = (
        days(date(2026, 1, 1), date(2026, 1, 3))
        | days(date(2026, 2, 15), date(2026, 2, 23))
        | days(date(2026, 4, 4), date(2026, 4, 6))
        | days(date(2026, 5, 1), date(2026, 5, 5))
        | days(date(2026, 6, 19), date(2026, 6, 21))
        | days(date(2026, 9, 25), date(2026, 9, 27))
        | days(date(2026, 10, 1), date(2026, 10, 7))
    )
    assert off == expected_off
    assert work == {
        date(2026, 1, 4), date(2026, 2, 14), date(2026, 2, 28),
        date(2026, 5, 9), date(2026, 9, 20), date(2026, 10, 10),
    }


def test_every_year_cites_its_notice_and_unpublished_2027_is_provisional():
    calendar = load_calendar()
    assert calendar.covered_years == {2025, 2026, 2027}
    assert calendar.provisional_years == {2027}
    for schedule in calendar.base.years:
        assert f"国务院办公厅关于{schedule.year}年部分节假日安排的通知" in schedule.notice
        if schedule.status == "provisional":
            assert "official notice" in (schedule.note or "")


# ----- which days are working days ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2025, 3, 10), True),  # an ordinary Monday
        (date(2025, 3, 8), False),  # an ordinary Saturday
        (date(2025, 9, 27), False),  # the Saturday before the make-up Sunday is still off
        (date(2025, 9, 28), True),  # make-up Sunday before National Day
        (date(2025, 10, 1), False),
        (date(2025, 10, 8), False),  # a Wednesday inside the 8-day holiday
        (date(2025, 10, 9), True),
        (date(2025, 10, 11), True),  # make-up Saturday after National Day
        (date(2025, 1, 26), True),  # make-up Sunday before the Spring Festival
        (date(2025, 2, 4), False),
        (date(2025, 2, 8), True),
        (date(2026, 1, 2), False),  # a Friday bridged to New Year
        (date(2026, 1, 4), True),
        (date(2026, 2, 14), True),  # make-up Saturday before the 2026 Spring Festival
        (date(2026, 2, 23), False),  # a Monday, last day of the 9-day holiday
        (date(2026, 2, 24), True),
        (date(2026, 2, 28), True),
    ],
)
def test_is_workday(cal, day, expected):
    assert cal.is_workday(day) is expected


def test_is_workday_reads_an_aware_datetime_in_the_calendar_timezone(cal):
    # 2025-09-27 17:00 UTC is already 2025-09-28 01:00 in Shanghai: the make-up Sunday.
    assert cal.is_workday(datetime(2025, 9, 27, 17, 0, tzinfo=UTC)) is True


def test_next_workday_skips_the_holiday(cal):
    assert cal.next_workday(date(2025, 9, 30)) == date(2025, 10, 9)


# ----- "N个工作日内" -----------------------------------------------------------------------------------------


def test_friday_ticket_with_one_working_day_is_due_on_the_make_up_sunday(cal):
    assert cal.add(at(2025, 9, 26, 10), 1, "wd") == at(2025, 9, 28, 17, 30)


@pytest.mark.parametrize(
    ("amount", "due"),
    [
        (2, at(2025, 9, 29, 17, 30)),
        (3, at(2025, 9, 30, 17, 30)),
        (4, at(2025, 10, 9, 17, 30)),  # 1–8 Oct are skipped
        (5, at(2025, 10, 10, 17, 30)),
        (6, at(2025, 10, 11, 17, 30)),  # the make-up Saturday counts
        (7, at(2025, 10, 13, 17, 30)),
    ],
)
def test_working_days_across_national_day_2025(cal, amount, due):
    assert cal.add(at(2025, 9, 26, 10), amount, "wd") == due


def test_ticket_registered_during_a_holiday_counts_from_the_next_working_day(cal):
    assert cal.add(at(2025, 10, 3, 11), 1, "wd") == at(2025, 10, 9, 17, 30)
    assert cal.add(at(2025, 10, 3, 11), 0, "wd") == at(2025, 10, 9, 17, 30)


def test_working_days_across_spring_festival_2026(cal):
    friday = at(2026, 2, 13, 15)
    assert cal.add(friday, 1, "wd") == at(2026, 2, 14, 17, 30)  # make-up Saturday
    assert cal.add(friday, 2, "wd") == at(2026, 2, 24, 17, 30)
    # Registered on the first day off: 24, 25, 26, 27 Feb and the make-up Saturday 28 Feb.
    assert cal.add(at(2026, 2, 15, 9), 5, "wd") == at(2026, 2, 28, 17, 30)


def test_weekend_is_skipped_and_weekend_registration_counts_from_monday(cal):
    assert cal.add(at(2025, 3, 7, 15), 1, "wd") == at(2025, 3, 10, 17, 30)  # Friday → Monday
    assert cal.add(at(2025, 3, 8, 10), 1, "wd") == at(2025, 3, 10, 17, 30)  # Saturday → Monday
    assert cal.add(at(2025, 3, 9, 10), 5, "wd") == at(2025, 3, 14, 17, 30)  # Sunday → Friday


def test_registration_hour_does_not_change_a_working_day_deadline(cal):
    assert cal.add(at(2025, 3, 10, 8), 1, "wd") == at(2025, 3, 11, 17, 30)
    assert cal.add(at(2025, 3, 10, 22), 1, "wd") == at(2025, 3, 11, 17, 30)


def test_zero_working_days_means_the_same_working_day_while_it_lasts(cal):
    assert cal.add(at(2025, 3, 10, 10), 0, "wd") == at(2025, 3, 10, 17, 30)
    assert cal.add(at(2025, 3, 10, 22), 0, "wd") == at(2025, 3, 11, 17, 30)


# ----- working hours --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "hours", "due"),
    [
        (at(2025, 3, 10, 9), 7, at(2025, 3, 10, 17, 30)),  # a full working day is 7 hours
        (at(2025, 3, 10, 11), 1, at(2025, 3, 10, 12)),  # ends exactly at the lunch break, not after it
        (at(2025, 3, 10, 11), 2, at(2025, 3, 10, 14, 30)),  # the lunch break does not count
        (at(2025, 3, 10, 12, 30), 1, at(2025, 3, 10, 14, 30)),  # registered during lunch
        (at(2025, 3, 10, 8), 1, at(2025, 3, 10, 10)),  # registered before opening
        (at(2025, 3, 7, 16, 30), 2, at(2025, 3, 10, 10)),  # Friday afternoon → Monday morning
        (at(2025, 9, 26, 17), 1, at(2025, 9, 28, 9, 30)),  # into the make-up Sunday
        (at(2025, 9, 30, 17), 2, at(2025, 10, 9, 10, 30)),  # over National Day
    ],
)
def test_working_hours(cal, start, hours, due):
    assert cal.add(start, hours, "wh") == due


def test_working_time_between(cal):
    assert cal.working_time_between(at(2025, 3, 7, 16), at(2025, 3, 10, 10)) == timedelta(hours=2, minutes=30)
    assert cal.working_time_between(at(2025, 3, 10, 11), at(2025, 3, 10, 14)) == timedelta(hours=1, minutes=30)
    assert cal.working_time_between(at(2025, 9, 30, 17, 30), at(2025, 10, 9, 9)) == timedelta(0)
    with pytest.raises(ValueError, match="before start"):
        cal.working_time_between(at(2025, 3, 10, 12), at(2025, 3, 10, 11))


def test_working_hours_are_configurable(cal):
    plain = WorkCalendar(cal.holidays, working_hours=parse_working_hours("09:00-17:00"))
    assert plain.add(at(2025, 3, 10, 10), 1, "wd") == at(2025, 3, 11, 17)
    assert plain.add(at(2025, 3, 10, 16), 2, "wh") == at(2025, 3, 11, 10)


@pytest.mark.parametrize("bad", ["12:00-09:00", "09:00-12:00,11:00-17:00"])
def test_invalid_working_hours_are_refused(cal, bad):
    with pytest.raises(ValueError):
        WorkCalendar(cal.holidays, working_hours=parse_working_hours(bad))


# ----- natural time ---------------------------------------------------------------------------------------


def test_natural_hours_and_minutes_run_across_midnight_and_holidays(cal):
    assert cal.add(at(2025, 10, 1, 23, 30), 1, "h") == at(2025, 10, 2, 0, 30)
    assert cal.add(at(2025, 12, 31, 23, 50), 20, "m") == at(2026, 1, 1, 0, 10)


def test_results_are_in_the_calendar_timezone_whatever_the_input_zone(cal):
    nine_in_shanghai = datetime(2025, 3, 10, 1, 0, tzinfo=UTC)
    assert cal.add(nine_in_shanghai, 1, "h") == at(2025, 3, 10, 10)
    assert cal.add(nine_in_shanghai, 1, "h").tzinfo == SH
    assert cal.add(nine_in_shanghai, 1, "wh") == at(2025, 3, 10, 10)


# ----- refusals -------------------------------------------------------------------------------------------


def test_naive_datetimes_are_refused(cal):
    naive = datetime(2025, 3, 10, 9)
    with pytest.raises(NaiveDatetimeError, match="no timezone"):
        cal.add(naive, 1, "wd")
    with pytest.raises(NaiveDatetimeError):
        cal.is_workday(naive)
    with pytest.raises(NaiveDatetimeError):
        cal.working_time_between(at(2025, 3, 10, 9), naive)
    with pytest.raises(NaiveDatetimeError):
        SlaClock(1, "wd", naive, calendar=cal)
    with pytest.raises(NaiveDatetimeError):
        cal.start_clock(1, "wd", at(2025, 3, 10, 9)).pause(naive)


def test_bad_amounts_and_units_are_refused(cal):
    with pytest.raises(ValueError, match="negative"):
        cal.add(at(2025, 3, 10, 9), -1, "wd")
    with pytest.raises(ValueError, match="unknown unit"):
        cal.add(at(2025, 3, 10, 9), 1, "d")  # type: ignore[arg-type]


def test_years_without_holiday_data_are_refused_unless_allowed(cal):
    with pytest.raises(CalendarCoverageError, match="2028"):
        cal.is_workday(date(2028, 1, 3))
    with pytest.raises(CalendarCoverageError):
        cal.add(at(2027, 12, 31, 10), 1, "wd")
    lenient = WorkCalendar(cal.holidays, strict_coverage=False)
    assert lenient.add(at(2027, 12, 31, 10), 1, "wd") == at(2028, 1, 3, 17, 30)


# ----- a city's own days --------------------------------------------------------------------------------------


CITY_YAML = """
name: 示例市人民政府
years:
  - year: 2025
    notice: 示例市人民政府关于2025年地方节日放假的通知
    arrangements:
      - name: 建城纪念日
        days_off: {first: 2025-03-10, last: 2025-03-10}
      - name: 防汛集中办公
        workdays: [2025-03-15]
  - year: 2028
    notice: 示例市人民政府关于2028年地方节日放假的通知
    arrangements:
      - name: 建城纪念日
        days_off: {first: 2028-03-10, last: 2028-03-10}
"""


@pytest.fixture
def city_cal(tmp_path: Path) -> WorkCalendar:
    override = tmp_path / "city.yaml"
    override.write_text(CITY_YAML, encoding="utf-8")
    return WorkCalendar.load(overrides=[override])


def test_city_override_adds_a_local_day_off_and_an_extra_workday(cal, city_cal):
    assert cal.is_workday(date(2025, 3, 10)) is True
    assert city_cal.is_workday(date(2025, 3, 10)) is False
    assert city_cal.is_workday(date(2025, 3, 15)) is True  # a Saturday
    assert city_cal.add(at(2025, 3, 7, 15), 1, "wd") == at(2025, 3, 11, 17, 30)
    assert city_cal.is_workday(date(2025, 9, 28)) is True  # the national schedule still applies


def test_city_override_does_not_make_a_year_covered(city_cal):
    with pytest.raises(CalendarCoverageError):
        city_cal.is_workday(date(2028, 3, 10))


def test_city_override_wins_over_the_national_schedule(tmp_path):
    override = tmp_path / "city.yaml"
    override.write_text(
        "name: 示例市\nyears:\n  - year: 2025\n    notice: 示例市通知\n    arrangements:\n"
        "      - name: 取消补班\n        days_off: {first: 2025-10-11, last: 2025-10-11}\n",
        encoding="utf-8",
    )
    assert WorkCalendar.load(overrides=[override]).is_workday(date(2025, 10, 11)) is False


@pytest.mark.parametrize(
    ("arrangement", "message"),
    [
        ("{name: x, workdays: [2025-03-12]}", "Saturdays or Sundays"),  # a Wednesday
        ("{name: x, days_off: {first: 2025-03-12, last: 2025-03-10}}", "after it ends"),
        ("{name: x}", "neither"),
        ("{name: x, days_off: {first: 2205-03-10, last: 2205-03-10}}", "outside the year"),
        ("{name: x, days_of: {first: 2025-03-10, last: 2025-03-10}}", "days_of"),  # misspelt key
    ],
)
def test_calendar_files_with_mistakes_are_refused(tmp_path, arrangement, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        f"name: bad\nyears:\n  - year: 2025\n    notice: n\n    arrangements:\n      - {arrangement}\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match=message):
        load_calendar(overrides=[bad])


# ----- the SLA clock ------------------------------------------------------------------------------------------


def test_clock_deadline_without_pauses(cal):
    assert cal.start_clock(4, "wh", at(2025, 3, 10, 9)).deadline == at(2025, 3, 10, 14, 30)


def test_pause_and_resume_do_not_charge_the_paused_working_time(cal):
    clock = cal.start_clock(4, "wh", at(2025, 3, 10, 9))
    paused = clock.pause(at(2025, 3, 10, 10))
    assert paused.is_paused and paused.deadline is None
    assert paused.deadline_at(at(2025, 3, 10, 10, 30)) == at(2025, 3, 10, 15)
    resumed = paused.resume(at(2025, 3, 10, 11))
    assert resumed.deadline == at(2025, 3, 10, 15, 30)
    assert clock.deadline == at(2025, 3, 10, 14, 30)  # the original clock is untouched


def test_pause_over_a_weekend_costs_a_working_day_clock_nothing(cal):
    clock = cal.start_clock(1, "wd", at(2025, 3, 7, 10))
    resumed = clock.pause(at(2025, 3, 7, 18)).resume(at(2025, 3, 10, 9))
    assert resumed.deadline == clock.deadline == at(2025, 3, 10, 17, 30)


def test_pause_in_working_hours_moves_a_working_day_clock_by_working_time(cal):
    # Paused Fri 15:00 → Mon 10:00 = 2.5 h on Friday + 1 h on Monday = 3.5 working hours.
    clock = cal.start_clock(1, "wd", at(2025, 3, 7, 10))
    resumed = clock.pause(at(2025, 3, 7, 15)).resume(at(2025, 3, 10, 10))
    assert resumed.deadline == at(2025, 3, 11, 14)


def test_natural_clock_pauses_in_natural_time(cal):
    clock = cal.start_clock(2, "h", at(2025, 3, 8, 10))  # a Saturday: natural time ignores it
    assert clock.deadline == at(2025, 3, 8, 12)
    assert clock.pause(at(2025, 3, 8, 10, 30)).resume(at(2025, 3, 8, 11, 30)).deadline == at(2025, 3, 8, 13)


def test_fraction_elapsed_excludes_paused_time(cal):
    clock = cal.start_clock(4, "wh", at(2025, 3, 10, 9))
    assert clock.fraction_elapsed(at(2025, 3, 10, 8)) == 0.0
    assert clock.fraction_elapsed(at(2025, 3, 10, 11)) == pytest.approx(0.5)
    with_pause = clock.pause(at(2025, 3, 10, 10)).resume(at(2025, 3, 10, 11))
    assert with_pause.fraction_elapsed(at(2025, 3, 10, 11)) == pytest.approx(0.25)
    assert with_pause.fraction_elapsed(at(2025, 3, 10, 10, 30)) == pytest.approx(0.25)  # while paused
    assert with_pause.fraction_elapsed(with_pause.deadline) == pytest.approx(1.0)


def test_breach_is_strictly_after_the_deadline_and_never_while_paused_in_time(cal):
    clock = cal.start_clock(4, "wh", at(2025, 3, 10, 9))
    assert not clock.is_breached(at(2025, 3, 10, 14, 30))
    assert clock.is_breached(at(2025, 3, 10, 14, 31))
    paused = clock.pause(at(2025, 3, 10, 14))
    assert not paused.is_breached(at(2025, 3, 12, 18))


def test_pausing_a_clock_that_has_run_out_does_not_revive_it(cal):
    clock = cal.start_clock(1, "wh", at(2025, 3, 10, 9))  # due 10:00
    late = clock.pause(at(2025, 3, 10, 11)).resume(at(2025, 3, 11, 9))
    assert late.deadline == at(2025, 3, 10, 10)
    assert late.is_breached(at(2025, 3, 11, 10))


def test_extension_adds_working_days_across_national_day(cal):
    clock = cal.start_clock(5, "wd", at(2025, 9, 22, 10))
    assert clock.deadline == at(2025, 9, 28, 17, 30)  # 23, 24, 25, 26 and the make-up Sunday
    extended = clock.extend(3, "wd")
    assert extended.deadline == at(2025, 10, 9, 17, 30)  # 29, 30 Sep, 9 Oct
    assert extended.extend(2, "wh").deadline == at(2025, 10, 10, 11)
    assert clock.deadline == at(2025, 9, 28, 17, 30)


def test_extension_and_pause_combine(cal):
    clock = cal.start_clock(4, "wh", at(2025, 3, 10, 9)).extend(1, "wh")  # due 15:30
    resumed = clock.pause(at(2025, 3, 10, 10)).resume(at(2025, 3, 10, 10, 30))
    assert resumed.deadline == at(2025, 3, 10, 16)


def test_clock_transitions_are_checked(cal):
    clock = cal.start_clock(1, "wd", at(2025, 3, 10, 9))
    with pytest.raises(ClockStateError, match="not paused"):
        clock.resume(at(2025, 3, 10, 10))
    with pytest.raises(ClockStateError, match="already paused"):
        clock.pause(at(2025, 3, 10, 10)).pause(at(2025, 3, 10, 11))
    with pytest.raises(ClockStateError, match="before"):
        clock.pause(at(2025, 3, 10, 8))
    with pytest.raises(ClockStateError, match="before"):
        clock.pause(at(2025, 3, 10, 10)).resume(at(2025, 3, 10, 9, 30))
    with pytest.raises(dataclasses.FrozenInstanceError):
        clock.limit = 5  # type: ignore[misc]


# ----- properties ---------------------------------------------------------------------------------------------

# Starts within covered data, far enough from the end of 2027 that every amount below stays covered.
starts = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(SH))
units = st.sampled_from(["wd", "wh", "h", "m"])
amounts = st.integers(min_value=0, max_value=80)
prop_settings = settings(max_examples=150, deadline=None)


@prop_settings
@given(start=starts, unit=units, a=amounts, b=amounts)
def test_deadline_is_monotonic_in_amount(cal, start, unit, a, b):
    low, high = sorted((a, b))
    assert start <= cal.add(start, low, unit) <= cal.add(start, high, unit)


@prop_settings
@given(start=starts, hours=amounts)
def test_working_hours_round_trip(cal, start, hours):
    assert cal.working_time_between(start, cal.add(start, hours, "wh")) == timedelta(hours=hours)


@prop_settings
@given(start=starts, minutes=st.integers(min_value=0, max_value=20_000))
def test_add_working_time_round_trips(cal, start, minutes):
    duration = timedelta(minutes=minutes)
    assert cal.working_time_between(start, cal.add_working_time(start, duration)) == duration


@prop_settings
@given(moments=st.lists(starts, min_size=3, max_size=3))
def test_working_time_is_additive(cal, moments):
    a, b, c = sorted(moments)
    assert cal.working_time_between(a, c) == cal.working_time_between(a, b) + cal.working_time_between(b, c)


@prop_settings
@given(
    start=starts,
    limit=st.integers(min_value=1, max_value=20),
    unit=units,
    pause_after=st.integers(min_value=0, max_value=10_000),
    pause_for=st.integers(min_value=0, max_value=10_000),
)
def test_a_pause_keeps_the_remaining_time(cal, start, limit, unit, pause_after, pause_for):
    clock = cal.start_clock(limit, unit, start)
    paused_at = start + timedelta(minutes=pause_after)
    if paused_at >= clock.deadline:
        return  # a pause after the clock ran out credits nothing (tested above)
    resumed_at = paused_at + timedelta(minutes=pause_for)
    resumed = clock.pause(paused_at).resume(resumed_at)
    left_before = cal.elapsed_between(paused_at, clock.deadline, unit)
    left_after = cal.elapsed_between(resumed_at, resumed.deadline, unit)
    assert left_after == left_before
    assert resumed.fraction_elapsed(resumed.deadline) == pytest.approx(1.0)


def test_default_working_hours_and_timezone(cal):
    # Guards the default working hours the docstrings and the 17:30 expectations above rely on.
    assert cal.working_hours == ((time(9, 0), time(12, 0)), (time(13, 30), time(17, 30)))
    assert cal.timezone == "Asia/Shanghai"
