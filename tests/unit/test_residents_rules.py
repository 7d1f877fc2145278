"""Proactive rules on base data (domain.residents.rules): birthdays across year ends and 29 February, lead
time, each rule's conditions, and the dedupe key."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from domain.catalogue import load_catalogue
from domain.residents.records import Resident
from domain.residents.rules import (
    RULES_PATH,
    RuleError,
    WeatherAlert,
    age_on,
    anniversary,
    firings,
    load_rules,
    parse_rules,
    scan,
)

RULES = load_rules()


def person(born: date, **flags: object) -> Resident:
    return replace(Resident("R1", "张某", born, "F", "HH1", "H1", "阳光花园1号楼", "grid-east-1-a-1"), **flags)  # type: ignore[arg-type]


def fired(resident: Resident, today: date, alerts: tuple[WeatherAlert, ...] = ()) -> dict[str, str]:
    return {f.rule.rule_id: f.occasion for f in firings(resident, RULES, today, alerts)}


def test_eighty_fires_within_the_lead_time_across_the_year_end() -> None:
    r = person(date(1947, 1, 10))
    assert "old-age-allowance-80" in fired(r, date(2026, 12, 20))  # 21 days ahead, across the new year
    assert "old-age-allowance-80" not in fired(r, date(2026, 12, 1))  # 40 days ahead: too early
    assert "old-age-allowance-80" not in fired(r, date(2027, 1, 11))  # the day after: too late
    only = firings(r, RULES, date(2026, 12, 20))[0]
    assert only.on == date(2027, 1, 10) and "张某将于2027-01-10年满80周岁" in only.text()
    assert "will turn 80 on 2027-01-10" in only.text()


def test_a_29_february_birthday_falls_on_28_february_in_a_common_year() -> None:
    assert anniversary(date(1956, 2, 29), 2026) == date(2026, 2, 28)
    assert anniversary(date(1956, 2, 29), 2028) == date(2028, 2, 29)
    assert age_on(date(1956, 2, 29), date(2026, 2, 27)) == 69
    assert age_on(date(1956, 2, 29), date(2026, 2, 28)) == 70
    f = [x for x in firings(person(date(1956, 2, 29)), RULES, date(2026, 2, 1)) if x.rule.rule_id == "old-age-allowance-70"]
    assert f and f[0].on == date(2026, 2, 28)


def test_each_age_rule_fires_only_for_its_own_age() -> None:
    today = date(2026, 6, 1)
    assert {k for k in fired(person(date(1956, 6, 15)), today) if k.startswith("old-age")} == {"old-age-allowance-70"}
    assert {k for k in fired(person(date(1936, 6, 15)), today) if k.startswith("old-age")} == {"old-age-allowance-90"}
    assert not {k for k in fired(person(date(1957, 6, 15)), today) if k.startswith("old-age")}


def test_newborn_rules_go_to_registration_and_insurance_never_to_the_subsistence_allowance() -> None:
    today = date(2026, 6, 1)
    baby = person(date(2026, 5, 20), household_registered=False, medical_insured=False)
    got = {f.rule.rule_id: f.rule.category for f in firings(baby, RULES, today)}
    assert got == {"newborn-household-registration": "public-security.household-registration",
                   "newborn-medical-insurance": "social-security.social-insurance"}
    assert not fired(person(date(2026, 5, 20)), today)  # registered and insured: nothing to do
    assert "newborn-household-registration" not in fired(replace(baby, birth_date=date(2026, 3, 1)), today)  # past 30 days


def test_disability_subsidies() -> None:
    today = date(2026, 6, 1)
    poor = person(date(1980, 1, 1), disability_kind="visual", disability_grade=3, subsistence_since=date(2024, 1, 1))
    severe = person(date(1980, 1, 1), disability_kind="physical", disability_grade=1)
    assert set(fired(poor, today)) == {"disability-living-subsidy"}
    assert set(fired(severe, today)) == {"disability-care-subsidy"}
    assert fired(severe, today)["disability-care-subsidy"] == "once"


def test_unemployment_after_a_week_and_only_when_not_registered() -> None:
    r = person(date(1990, 3, 3), unemployed_since=date(2026, 5, 1))
    assert fired(r, date(2026, 5, 5)) == {}
    assert fired(r, date(2026, 5, 8)) == {"unemployment-registration": "2026-05-01"}
    assert fired(replace(r, unemployment_registered=True), date(2026, 5, 8)) == {}
    assert fired(replace(r, birth_date=date(1960, 1, 1)), date(2026, 5, 8)) == {}  # over working age


def test_recertification_lead_time() -> None:
    r = person(date(1970, 1, 1), subsistence_since=date(2020, 1, 1), subsistence_recert_due=date(2026, 7, 1))
    assert "subsistence-recertification" not in fired(r, date(2026, 5, 31))
    assert fired(r, date(2026, 6, 1))["subsistence-recertification"] == "2026-07-01"


def test_elderly_alone_are_visited_once_per_weather_alert_in_their_grid() -> None:
    r = person(date(1950, 1, 1), lives_alone=True)
    heat = WeatherAlert("heat-2026-07-10", "heat-wave", date(2026, 7, 10), date(2026, 7, 14), frozenset({"grid-east-1-a-1"}))
    elsewhere = replace(heat, alert_id="heat-x", grids=frozenset({"grid-west-1-a-1"}))
    assert fired(r, date(2026, 7, 11), (heat,)) == {"elderly-alone-weather-visit": "heat-2026-07-10"}
    assert fired(r, date(2026, 7, 11), (elsewhere,)) == {}
    assert fired(replace(r, lives_alone=False), date(2026, 7, 11), (heat,)) == {}
    assert fired(r, date(2026, 7, 20), (heat,)) == {}  # over


def test_the_scan_skips_keys_already_raised_and_a_new_occasion_is_a_new_key() -> None:
    r = person(date(1990, 3, 3), unemployed_since=date(2026, 5, 1))
    first = scan([r], RULES, date(2026, 5, 8))
    assert [f.key for f in first] == ["R1|unemployment-registration|2026-05-01"]
    assert scan([r], RULES, date(2026, 5, 9), raised={f.key for f in first}) == []
    again = scan([replace(r, unemployed_since=date(2027, 2, 1))], RULES, date(2027, 2, 9), raised={f.key for f in first})
    assert [f.key for f in again] == ["R1|unemployment-registration|2027-02-01"]


def test_every_rule_category_exists_in_both_catalogues() -> None:
    from domain.city.generate import CITY_CATALOGUE_PATH


    small, large = load_catalogue(), load_catalogue(CITY_CATALOGUE_PATH)
    for rule in RULES:
        assert small.has_category(rule.category), rule.rule_id
        assert large.has_category(rule.category), rule.rule_id
    assert len(RULES) >= 6 and RULES_PATH.exists()


def test_a_bad_rules_file_names_the_rule_and_field() -> None:
    with pytest.raises(RuleError, match="rule x: trigger"):
        parse_rules({"rules": [{"id": "x", "trigger": {}, "category": "c", "text_zh": "a", "text_en": "b"}]})
    with pytest.raises(RuleError, match="rule y: category"):
        parse_rules({"rules": [{"id": "y", "trigger": {"state": True}, "text_zh": "a", "text_en": "b"}]})
