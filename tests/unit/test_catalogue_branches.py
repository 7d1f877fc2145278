"""District branches: a category whose lead is "the branch of bureau X where the ticket is" (lead_branch_of)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from domain.catalogue import Catalogue, Location, load_catalogue, parse_catalogue, read_catalogue_data

EAST_GRID = "grid-east-1-a-1"
WEST_GRID = "grid-west-1-a-1"


def _branch(bureau: str, district: str) -> dict[str, Any]:
    short = district.removeprefix("district-")
    return {"id": f"{bureau}-{short}", "name": f"{bureau}{short}分局", "name_en": f"{bureau} {short} branch",
            "level": "district", "kind": "department", "branch_of": bureau, "branch_area": district}


def _with_branches(**category_fields: Any) -> dict[str, Any]:
    """The packaged small catalogue plus housing and environment branches in the east (none in the west) and one
    category routed to the housing branch of the location."""
    data = copy.deepcopy(read_catalogue_data())
    data["units"] += [_branch("housing", "district-east"), _branch("environment", "district-east")]
    category = {
        "code": "housing.demolition-site-dust", "name": "拆迁工地扬尘", "name_en": "Dust from a demolition site",
        "lead_branch_of": "housing", "co_branches_of": ["environment"], "co_units": ["city-management"],
        "level": "district", "limits": {"sign_for": "1wd", "response": "2wd", "resolution": "5wd"},
        "keywords_zh": ["拆迁工地扬尘"], "keywords_en": ["demolition dust"],
    }
    category.update(category_fields)
    data["categories"].append(category)
    return data


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return parse_catalogue(_with_branches())


def test_the_branch_of_the_tickets_district_leads(cat: Catalogue) -> None:
    decision = cat.route("housing.demolition-site-dust", Location(grid=EAST_GRID))
    assert (decision.lead, decision.basis, decision.level) == ("housing-east", "district-branch", "district")
    # The assisting bureau is resolved to its branch in the same district, before the plain co-units.
    assert decision.co_units == ("environment-east", "city-management")


def test_a_district_without_a_branch_falls_back_to_the_city_bureau(cat: Catalogue) -> None:
    decision = cat.route("housing.demolition-site-dust", Location(grid=WEST_GRID))
    assert (decision.lead, decision.basis, decision.level) == ("housing", "catalogue-lead", "city")
    assert decision.co_units == ("environment", "city-management")


def test_unlocated_goes_to_the_city_bureau(cat: Catalogue) -> None:
    decision = cat.route("housing.demolition-site-dust", None)
    assert (decision.lead, decision.basis) == ("housing", "catalogue-lead")


def test_a_returned_branch_task_promotes_the_co_units_then_the_district_centre(cat: Catalogue) -> None:
    where = {"street": "street-east-2"}
    first = cat.route("housing.demolition-site-dust", where, excluding=["housing-east"])
    assert (first.lead, first.basis) == ("environment-east", "co-unit-promoted")
    all_out = ["housing-east", "environment-east", "city-management"]
    last = cat.route("housing.demolition-site-dust", where, excluding=all_out)
    assert (last.lead, last.basis, last.needs_consultation) == ("district-east", "district-coordination", True)


def test_the_small_catalogue_routes_exactly_as_before(cat: Catalogue) -> None:
    """Adding branches and a branch category changes nothing for the existing categories."""
    small = load_catalogue()
    locations = [None, Location(grid=EAST_GRID), Location(street="street-west-2"), Location(district="district-east")]
    for code in small.category_codes():
        for where in locations:
            assert cat.route(code, where) == small.route(code, where)
    assert small.diff(cat) == ["housing.demolition-site-dust"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lead": "housing"}, "exactly one of lead / lead_by_area / lead_branch_of"),
        ({"level": "city"}, "handled at district level"),
        ({"lead_branch_of": "no-such-bureau"}, "'no-such-bureau' is not a city bureau"),
        ({"lead_branch_of": "housing-east"}, "'housing-east' is not a city bureau"),
        ({"co_branches_of": ["housing"]}, "lead bureau housing is also in co_branches_of"),
    ],
)
def test_bad_branch_categories_are_rejected(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_catalogue(_with_branches(**change))


@pytest.mark.parametrize(
    ("unit_change", "message"),
    [
        ({"branch_area": "street-east-1"}, "branch_area 'street-east-1' is not a district"),
        ({"branch_of": "hotline"}, "branch_of 'hotline' is not a city bureau"),
        ({"branch_area": None}, "give both branch_of and branch_area"),
        ({"level": "city"}, "a district branch has level district"),
    ],
)
def test_bad_branch_units_are_rejected(unit_change: dict[str, Any], message: str) -> None:
    data = _with_branches()
    data["units"][-2].update(unit_change)
    with pytest.raises(ValidationError, match=message):
        parse_catalogue(data)


def test_two_branches_of_one_bureau_in_one_district_are_rejected() -> None:
    data = _with_branches()
    data["units"].append({**_branch("housing", "district-east"), "id": "housing-east-2"})
    with pytest.raises(ValidationError, match="bureau 'housing' has 2 branches in 'district-east'"):
        parse_catalogue(data)
