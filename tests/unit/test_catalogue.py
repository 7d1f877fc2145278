"""The responsibility catalogue: its content, its validation, routing with fallback and exclusion, and diff."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from pydantic import ValidationError

from contracts.topics import AREA_TASKS, own_task_topic
from domain.catalogue import (
    AREA_LEVELS,
    Catalogue,
    Location,
    TimeLimit,
    UnknownCategoryError,
    UnknownUnitError,
    load_catalogue,
    parse_catalogue,
    read_catalogue_data,
)
from services.triage.nyc311 import load_nyc_mapping

REQUIRED_DEPARTMENTS = {
    "hotline", "city-management", "housing", "water", "power", "gas", "heating", "transport", "environment",
    "market-supervision", "education", "health", "social-security", "public-security", "civil-affairs",
    "natural-resources",
}
GRID = "grid-east-1-a-1"  # in community-east-1-a, street-east-1, district-east


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return load_catalogue()


@pytest.fixture
def data() -> dict:
    return copy.deepcopy(read_catalogue_data())


# ---------------------------------------------------------------------- content


def test_catalogue_is_versioned_and_has_at_least_40_categories(cat: Catalogue) -> None:
    assert cat.version == "2026.1"
    assert len(cat.categories) >= 40


def test_every_required_department_exists_with_the_right_kind(cat: Catalogue) -> None:
    ids = {u.id for u in cat.units}
    assert REQUIRED_DEPARTMENTS <= ids
    assert cat.unit("hotline").kind == "hotline"
    assert all(cat.unit(d).kind == "department" for d in REQUIRED_DEPARTMENTS - {"hotline"})


def test_every_department_leads_or_helps_in_some_category(cat: Catalogue) -> None:
    referenced = {c.lead for c in cat.categories} | {u for c in cat.categories for u in c.co_units}
    assert REQUIRED_DEPARTMENTS <= referenced


def test_areas_form_two_districts_of_two_streets_of_two_communities_of_two_grids(cat: Catalogue) -> None:
    by_level = {level: [a for a in cat.areas if a.level == level] for level in AREA_LEVELS}
    assert [len(by_level[lv]) for lv in ("district", "street", "community", "grid")] == [2, 4, 8, 16]
    for area in cat.areas:
        children = [a for a in cat.areas if a.parent == area.id]
        assert len(children) == (0 if area.level == "grid" else 2), area.id


def test_every_area_is_a_routable_unit_of_its_level(cat: Catalogue) -> None:
    expected_kind = {"street": "street-office", "community": "community", "grid": "grid", "district": "department"}
    for area in cat.areas:
        unit = cat.unit(area.id)
        assert (unit.level, unit.kind, unit.area) == (area.level, expected_kind[area.level], area.id)
        assert unit.name and unit.name_en and re.search(r"[\u4e00-\u9fff]", unit.name)


def test_every_referenced_unit_exists(cat: Catalogue) -> None:
    unit_ids = {u.id for u in cat.units}
    for category in cat.categories:
        assert category.lead is None or category.lead in unit_ids, category.code
        assert set(category.co_units) <= unit_ids, category.code


def test_some_categories_are_routed_by_area_and_some_need_consultation(cat: Catalogue) -> None:
    assert {c.lead_by_area for c in cat.categories} >= {"grid", "community", "street"}
    consulting = {c.code for c in cat.categories if c.needs_consultation}
    assert {"housing.property-dispute", "housing.shared-facility", "environment.water-pollution"} <= consulting
    assert len(consulting) < len(cat.categories) / 3  # consultation is the exception, not the rule


def test_units_for_topics_covers_departments_areas_and_hotline_with_topic_safe_ids(cat: Catalogue) -> None:
    topics = cat.units_for_topics()
    assert set(topics) == REQUIRED_DEPARTMENTS | {a.id for a in cat.areas}
    assert len(topics) == len(set(topics))
    for unit_id in topics:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", unit_id)
        assert re.fullmatch(r"[a-zA-Z0-9._-]{1,249}", cat.task_topic_of(unit_id))


def test_area_units_share_one_task_topic_and_the_others_have_their_own(cat: Catalogue) -> None:
    areas = set(cat.area_units())
    assert areas == {a.id for a in cat.areas if a.level in ("street", "community", "grid")}
    assert set(cat.own_topic_units()) == set(cat.units_for_topics()) - areas
    assert {cat.task_topic_of(u) for u in areas} == {AREA_TASKS.name}
    assert cat.task_topic_of("water") == own_task_topic("water")
    district = next(a.id for a in cat.areas if a.level == "district")  # its operations centre keeps its own
    assert cat.task_topic_of(district) == own_task_topic(district)
    with pytest.raises(UnknownUnitError):
        cat.task_topic_of("no-such-unit")


def test_a_reader_of_some_units_subscribes_to_their_topics_and_keeps_the_shared_one_to_its_areas(cat: Catalogue) -> None:
    grid, street = "grid-east-1-a-1", "street-east-1"
    assert cat.task_topics_of(["water", grid, street, "not-listed"]) == {
        AREA_TASKS.name: frozenset({grid, street}), own_task_topic("water"): frozenset({"water"}),
        own_task_topic("not-listed"): frozenset({"not-listed"})}


def test_nyc_mapping_names_only_existing_categories(cat: Catalogue) -> None:
    mapping = load_nyc_mapping()
    assert len(mapping) >= 150
    assert {code for code in mapping.values() if code} <= set(cat.category_codes())


# ---------------------------------------------------------------------- limits


@pytest.mark.parametrize(
    ("text", "amount", "unit"), [("1wd", 1, "wd"), ("13wd", 13, "wd"), ("8wh", 8, "wh"), ("24h", 24, "h"), ("30m", 30, "m")]
)
def test_time_limits_parse(text: str, amount: int, unit: str) -> None:
    limit = TimeLimit.parse(text)
    assert (limit.amount, limit.unit, str(limit)) == (amount, unit, text)


@pytest.mark.parametrize("text", ["", "5", "wd", "0wd", "3d", "1.5h", "-2h", "5 days"])
def test_malformed_time_limits_are_rejected(text: str) -> None:
    with pytest.raises(ValidationError):
        TimeLimit.parse(text)


def test_every_limit_parses_and_the_clocks_are_in_order(cat: Catalogue) -> None:
    for raw in read_catalogue_data()["categories"]:
        parsed = {k: TimeLimit.parse(v) for k, v in raw["limits"].items()}
        assert set(parsed) == {"sign_for", "response", "resolution"}, raw["code"]
        assert parsed["sign_for"].nominal_minutes() <= parsed["response"].nominal_minutes(), raw["code"]
        assert parsed["response"].nominal_minutes() <= parsed["resolution"].nominal_minutes(), raw["code"]


def test_utility_outages_are_answered_within_two_natural_hours(cat: Catalogue) -> None:
    for code in ("water.outage", "water.pipe-burst", "power.outage", "gas.leak", "heating.insufficient"):
        response = cat.category(code).limits.response
        assert response.unit in ("h", "m") and response.nominal_minutes() <= 120, code
        assert cat.category(code).limits.resolution.unit in ("h", "m"), code


def test_clocks_out_of_order_are_rejected(data: dict) -> None:
    data["categories"][0]["limits"] = {"sign_for": "5wd", "response": "1wd", "resolution": "10wd"}
    with pytest.raises(ValidationError, match="sign_for <= response <= resolution"):
        parse_catalogue(data)


# ---------------------------------------------------------------------- validation


def test_a_missing_unit_is_reported_with_the_category(data: dict) -> None:
    data["categories"][0]["co_units"] = ["no-such-unit"]
    with pytest.raises(ValidationError, match=r"category city-management\.street-light: unit 'no-such-unit'"):
        parse_catalogue(data)


def test_lead_and_lead_by_area_are_exclusive(data: dict) -> None:
    data["categories"][0]["lead_by_area"] = "street"
    with pytest.raises(ValidationError, match="exactly one of lead / lead_by_area"):
        parse_catalogue(data)


def test_an_area_with_a_missing_parent_is_rejected(data: dict) -> None:
    data["areas"][1]["parent"] = "district-north"
    with pytest.raises(ValidationError, match="parent 'district-north' is not an area"):
        parse_catalogue(data)


def test_a_category_level_must_match_its_lead(data: dict) -> None:
    data["categories"][0]["level"] = "street"
    with pytest.raises(ValidationError, match="lead city-management is city"):
        parse_catalogue(data)


def test_unit_ids_must_be_topic_safe(data: dict) -> None:
    data["units"][1]["id"] = "City Management"
    with pytest.raises(ValidationError):
        parse_catalogue(data)


def test_lookups_of_unknown_codes_raise_key_errors(cat: Catalogue) -> None:
    with pytest.raises(UnknownCategoryError):
        cat.category("no.such-category")
    with pytest.raises(UnknownUnitError):
        cat.unit("no-such-unit")
    assert not cat.has_category("no.such-category")


def test_load_catalogue_is_cached_per_file(cat: Catalogue, tmp_path: Path) -> None:
    assert load_catalogue() is cat
    copy_path = tmp_path / "copy.yaml"
    copy_path.write_text(yaml.safe_dump(read_catalogue_data(), allow_unicode=True), encoding="utf-8")
    other = load_catalogue(copy_path)
    assert other is not cat and other == cat


# ---------------------------------------------------------------------- routing


def test_department_category_goes_to_its_lead_with_co_units(cat: Catalogue) -> None:
    decision = cat.route("city-management.street-light", Location(grid=GRID))
    assert (decision.lead, decision.co_units, decision.level, decision.basis) == (
        "city-management", ("power",), "city", "catalogue-lead"
    )
    assert decision.needs_consultation is False


def test_area_category_goes_to_the_area_of_the_location(cat: Catalogue) -> None:
    assert cat.route("grid.corridor-safety", Location(grid=GRID)).lead == GRID
    assert cat.route("community.neighbour-dispute", Location(grid=GRID)).lead == "community-east-1-a"
    assert cat.route("city-management.street-vendor", Location(grid=GRID)).lead == "street-east-1"


def test_area_category_falls_back_to_the_nearest_higher_area_given(cat: Catalogue) -> None:
    by_street = cat.route("grid.corridor-safety", Location(street="street-west-2"))
    assert (by_street.lead, by_street.level, by_street.basis) == ("street-west-2", "street", "area-fallback")
    by_district = cat.route("community.neighbour-dispute", Location(district="district-west"))
    assert (by_district.lead, by_district.level) == ("district-west", "district")


def test_area_category_without_location_goes_to_the_hotline(cat: Catalogue) -> None:
    decision = cat.route("grid.corridor-safety", None)
    assert (decision.lead, decision.basis) == ("hotline", "unlocated")
    assert cat.route("grid.corridor-safety", Location(grid="grid-nowhere")).lead == "hotline"


def test_location_may_be_a_mapping_or_any_object(cat: Catalogue) -> None:
    as_dict = cat.route("community.neighbour-dispute", {"grid": GRID})
    as_object = cat.route("community.neighbour-dispute", SimpleNamespace(grid=GRID, street=None))
    assert as_dict.lead == as_object.lead == "community-east-1-a"


def test_most_specific_known_area_wins_and_unknown_ids_are_ignored(cat: Catalogue) -> None:
    inconsistent = Location(grid=GRID, street="street-west-2", district="district-west")
    assert cat.route("city-management.street-vendor", inconsistent).lead == "street-east-1"
    stale = Location(grid="grid-demolished", community="community-west-1-b")
    assert cat.route("grid.corridor-safety", stale).lead == "community-west-1-b"


def test_a_returned_area_task_escalates_one_level_at_a_time(cat: Catalogue) -> None:
    chain = [GRID, "community-east-1-a", "street-east-1", "district-east"]
    excluded: list[str] = []
    for expected in chain:
        decision = cat.route("grid.corridor-safety", Location(grid=GRID), excluding=excluded)
        assert decision.lead == expected
        excluded.append(decision.lead)
    assert decision.basis == "area-escalation"
    last = cat.route("grid.corridor-safety", Location(grid=GRID), excluding=excluded)
    assert (last.lead, last.basis, last.needs_consultation) == ("hotline", "hotline-fallback", True)


def test_a_returned_department_task_promotes_a_co_unit_then_the_district_coordinates(cat: Catalogue) -> None:
    location = Location(grid=GRID)
    first = cat.route("environment.water-pollution", location, excluding=["environment"])
    assert (first.lead, first.basis, first.co_units) == ("water", "co-unit-promoted", ("city-management",))
    second = cat.route("environment.water-pollution", location, excluding=["environment", "water"])
    assert second.lead == "city-management" and second.co_units == ()
    everyone = ["environment", "water", "city-management"]
    third = cat.route("environment.water-pollution", location, excluding=everyone)
    assert (third.lead, third.basis, third.needs_consultation) == ("district-east", "district-coordination", True)
    assert cat.route("environment.water-pollution", None, excluding=everyone).lead == "hotline"


def test_department_work_is_never_pushed_down_to_a_street_or_community(cat: Catalogue) -> None:
    for category in cat.categories:
        if category.lead is None:
            continue
        every_department = [category.lead, *category.co_units]
        decision = cat.route(category.code, Location(grid=GRID), excluding=every_department)
        assert cat.unit(decision.lead).level in ("district", "city"), category.code


def test_excluded_units_are_not_kept_as_co_units(cat: Catalogue) -> None:
    decision = cat.route("city-management.construction-noise", None, excluding=["environment"])
    assert decision.lead == "city-management" and decision.co_units == ("housing",)
    assert decision.excluded == ("environment",)


def test_the_hotline_cannot_be_excluded(cat: Catalogue) -> None:
    assert cat.route("hotline.policy-inquiry", None, excluding=["hotline"]).lead == "hotline"


def test_routing_an_unknown_category_raises(cat: Catalogue) -> None:
    with pytest.raises(UnknownCategoryError):
        cat.route("no.such-category", None)


# ---------------------------------------------------------------------- diff


def test_a_catalogue_does_not_differ_from_itself(cat: Catalogue) -> None:
    assert cat.diff(cat) == []
    assert cat.diff(parse_catalogue(read_catalogue_data())) == []


def test_diff_lists_exactly_the_categories_whose_routing_changed(cat: Catalogue, data: dict) -> None:
    by_code = {c["code"]: c for c in data["categories"]}
    by_code["city-management.street-light"]["co_units"] = []  # co-units changed
    by_code["water.outage"]["keywords_en"] = ["dry taps"]  # not routing: must not show up
    by_code["housing.rental"]["limits"]["resolution"] = "20wd"  # not routing either
    street_vendor = by_code["city-management.street-vendor"]  # area lead -> department lead
    street_vendor.pop("lead_by_area")
    street_vendor.update(lead="city-management", co_units=[], level="city")
    data["categories"] = [c for c in data["categories"] if c["code"] != "transport.taxi"]  # removed
    added = copy.deepcopy(by_code["transport.bus"]) | {"code": "transport.metro"}  # added
    data["categories"].append(added)
    changed = cat.diff(parse_catalogue(data))
    assert changed == sorted(
        ["city-management.street-light", "city-management.street-vendor", "transport.taxi", "transport.metro"]
    )
