"""Triage at full size (issue 14, point 6): every one of the Yantai catalogue's 1,326 matters routes sensibly from
every district and from a sample of streets, communities and grids - a lead that exists at the right level, co-units
that exist, time limits that are positive and ordered, and the consultation flag the matter's kind of problem
says. One walk over the whole catalogue (~100k route() calls, a few seconds), so a generator change that leaves
one matter unroutable somewhere fails here with the matter and the place named."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import pytest

from domain.catalogue import AREA_LEVELS, Catalogue, Category, Location, RouteDecision, load_catalogue
from domain.city import CITY_CATALOGUE_PATH
from domain.city.matters import PROBLEMS

# A few of each lower level per district: enough to meet every district's branches and every area level's units.
PER_DISTRICT = {"street": 2, "community": 2, "grid": 3}


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return load_catalogue(CITY_CATALOGUE_PATH)


@pytest.fixture(scope="module")
def places(cat: Catalogue) -> list[Location]:
    """Every district, and a seeded sample of streets, communities and grids in each district."""
    rng = random.Random(14)
    by_district: dict[tuple[str, str], list[str]] = defaultdict(list)
    for area in cat.areas:
        if area.level != "district":
            by_district[(cat.area_chain({area.level: area.id})[-1].id, area.level)].append(area.id)
    chosen = [Location(district=a.id) for a in cat.areas if a.level == "district"]
    for (_, level), ids in sorted(by_district.items()):
        chosen += [Location(**{level: i}) for i in rng.sample(sorted(ids), min(PER_DISTRICT[level], len(ids)))]
    return chosen


def _district(cat: Catalogue, place: Location) -> str:
    return cat.area_chain(place)[-1].id


def _problems(cat: Catalogue, category: Category, place: Location, decision: RouteDecision) -> list[str]:
    where = f"{category.code} at {place.model_dump(exclude_none=True)}"
    found = []
    lead = cat.unit(decision.lead)  # raises for a lead that does not exist
    found += [f"{where}: co-unit {u} does not exist" for u in decision.co_units if not _exists(cat, u)]
    for unit in (cat.unit(u) for u in decision.co_units if _exists(cat, u)):
        if unit.branch_area is not None and unit.branch_area != _district(cat, place):
            found.append(f"{where}: co-unit {unit.id} is a branch in another district")
    if decision.lead in decision.co_units:
        found.append(f"{where}: lead {decision.lead} is also a co-unit")
    if decision.needs_consultation != category.needs_consultation:
        found.append(f"{where}: consultation {decision.needs_consultation}, category says {category.needs_consultation}")
    expected = _expected_lead(cat, category, place)
    if (lead.id, lead.level) != expected:
        found.append(f"{where}: lead {lead.id} ({lead.level}), expected {expected}")
    return found


def _exists(cat: Catalogue, unit_id: str) -> bool:
    try:
        cat.unit(unit_id)
    except KeyError:
        return False
    return True


def _expected_lead(cat: Catalogue, category: Category, place: Location) -> tuple[str, str]:
    """The lead the routing rule promises, worked out from the place's own area chain (not from route())."""
    chain = cat.area_chain(place)
    if category.lead_by_area is not None:
        wanted = AREA_LEVELS.index(category.lead_by_area)
        area = next(a for a in chain if AREA_LEVELS.index(a.level) >= wanted)
        return area.id, area.level
    if category.lead_branch_of is not None:
        branch = cat.branch(category.lead_branch_of, chain[-1].id)
        return (branch, "district") if branch is not None else (category.lead_branch_of, "city")
    assert category.lead is not None
    return category.lead, cat.unit(category.lead).level


def test_every_matter_routes_from_every_district_and_a_sample_of_areas(cat: Catalogue, places: list[Location]) -> None:
    assert len(cat.categories) == 1326
    levels = {next(level for level in AREA_LEVELS if getattr(p, level)) for p in places}
    assert levels == set(AREA_LEVELS), "the sample covers every area level"
    problems: list[str] = []
    for category in cat.categories:
        for place in places:
            problems += _problems(cat, category, place, cat.route(category.code, place))
    assert not problems, f"{len(problems)} bad routes, e.g.:\n" + "\n".join(problems[:20])


def test_a_district_branch_leads_wherever_its_bureau_has_one(cat: Catalogue, places: list[Location]) -> None:
    """The branch-led matters really reach branches: in a district with the bureau's branch the lead is that
    branch, at district level, with basis district-branch (and never a branch of another district)."""
    branch_led = [c for c in cat.categories if c.lead_branch_of is not None]
    assert len(branch_led) > 300
    reached = 0
    for category in branch_led:
        for place in places:
            decision = cat.route(category.code, place)
            lead = cat.unit(decision.lead)
            if lead.branch_of is not None:
                reached += 1
                assert (lead.branch_of, lead.branch_area) == (category.lead_branch_of, _district(cat, place))
                assert (decision.basis, decision.level) == ("district-branch", "district")
            else:
                assert cat.branch(category.lead_branch_of, _district(cat, place)) is None
    assert reached > len(branch_led) * len(places) // 2


def test_unlocated_tickets_still_have_a_lead(cat: Catalogue) -> None:
    for category in cat.categories:
        decision = cat.route(category.code, None)
        expected = cat.routing.unlocated_fallback if category.lead_by_area else (category.lead or category.lead_branch_of)
        assert decision.lead == expected, category.code
        assert all(_exists(cat, u) for u in decision.co_units), category.code


def test_time_limits_are_positive_and_ordered(cat: Catalogue) -> None:
    for category in cat.categories:
        clocks = [category.limits.sign_for, category.limits.response, category.limits.resolution]
        minutes = [c.nominal_minutes() for c in clocks]
        assert all(m > 0 for m in minutes), category.code
        assert minutes == sorted(minutes), category.code


def _problem_of(code: str) -> Any:
    slugs = [slug for slug in PROBLEMS if code.endswith(f"-{slug}")]
    return PROBLEMS[max(slugs, key=len)] if slugs else None


def test_the_consultation_flag_is_the_kind_of_problems(cat: Catalogue) -> None:
    """A generated matter needs consultation exactly when its kind of problem is genuinely multi-party."""
    small = {c.code for c in load_catalogue().categories}
    generated = [c for c in cat.categories if c.code not in small]
    assert len(generated) == 1326 - len(small)
    for category in generated:
        problem = _problem_of(category.code)
        assert problem is not None, category.code
        assert category.needs_consultation is problem.consult, category.code
    assert any(c.needs_consultation for c in generated) and not all(c.needs_consultation for c in generated)


def test_the_small_citys_matters_keep_their_flags(cat: Catalogue) -> None:
    for category in load_catalogue().categories:
        assert cat.category(category.code).needs_consultation is category.needs_consultation, category.code
