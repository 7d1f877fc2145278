"""The whole responsibility catalogue: its cross-reference validation, lookups and the routing rule.

The rule itself is described in the package docstring (`domain.catalogue`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import Field, PrivateAttr, model_validator

from contracts.topics import is_area_level, unit_task_topic

from .models import (
    AREA_LEVELS,
    PARENT_LEVEL,
    Area,
    AreaLevel,
    Category,
    FrozenModel,
    RouteBasis,
    RouteDecision,
    RoutingDefaults,
    Unit,
    UnknownCategoryError,
    UnknownUnitError,
    field_of,
    unit_for_area,
)


class Catalogue(FrozenModel):
    """The whole catalogue: areas, units, categories. Validated so that every reference resolves."""

    version: str = Field(min_length=1, description="Catalogue version, e.g. 2026.1.")
    routing: RoutingDefaults = Field(default_factory=RoutingDefaults, description="Catalogue-wide routing settings.")
    areas: tuple[Area, ...] = Field(description="Districts, streets, communities and grids.")
    units: tuple[Unit, ...] = Field(description="All units: departments, the hotline and one unit per area.")
    categories: tuple[Category, ...] = Field(min_length=1, description="The catalogue lines.")

    _areas_by_id: dict[str, Area] = PrivateAttr(default_factory=dict)
    _units_by_id: dict[str, Unit] = PrivateAttr(default_factory=dict)
    _categories_by_code: dict[str, Category] = PrivateAttr(default_factory=dict)
    _unit_of_area: dict[str, str] = PrivateAttr(default_factory=dict)
    _branches: dict[tuple[str, str], str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _add_area_units(cls, data: Any) -> Any:
        """Every area is a unit; derive the ones the file does not list explicitly."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        units = list(data.get("units") or [])
        known = {field_of(u, "id") for u in units}
        for area in data.get("areas") or []:
            if field_of(area, "id") not in known:
                units.append(unit_for_area(area))
        data["units"] = units
        return data

    def model_post_init(self, __context: Any) -> None:
        self._areas_by_id = {a.id: a for a in self.areas}
        self._units_by_id = {u.id: u for u in self.units}
        self._categories_by_code = {c.code: c for c in self.categories}
        self._unit_of_area = {u.area: u.id for u in self.units if u.area is not None}
        self._branches = {(u.branch_of, u.branch_area): u.id for u in self.units if u.branch_of and u.branch_area}

    @model_validator(mode="after")
    def _references_resolve(self) -> Catalogue:
        problems = [
            *self._duplicate_problems(),
            *self._area_problems(),
            *self._category_problems(),
            *self._branch_problems(),
        ]
        if self.routing.unlocated_fallback not in self._units_by_id:
            problems.append(f"routing.unlocated_fallback {self.routing.unlocated_fallback!r} is not a unit")
        if problems:
            raise ValueError("catalogue is inconsistent:\n  - " + "\n  - ".join(problems))
        return self

    def _duplicate_problems(self) -> list[str]:
        problems = []
        for what, ids in (
            ("area id", [a.id for a in self.areas]),
            ("unit id", [u.id for u in self.units]),
            ("category code", [c.code for c in self.categories]),
        ):
            problems += [f"duplicate {what} {i!r}" for i, n in Counter(ids).items() if n > 1]
        return problems

    def _area_problems(self) -> list[str]:
        problems = []
        for area in self.areas:
            if area.parent is not None:
                parent = self._areas_by_id.get(area.parent)
                if parent is None:
                    problems.append(f"area {area.id}: parent {area.parent!r} is not an area")
                elif parent.level != PARENT_LEVEL[area.level]:
                    problems.append(f"area {area.id}: a {area.level} must sit in a {PARENT_LEVEL[area.level]}")
            if area.id not in self._unit_of_area:
                problems.append(f"area {area.id}: no unit has area={area.id}")
        for unit in self.units:
            if unit.area is not None and unit.area not in self._areas_by_id:
                problems.append(f"unit {unit.id}: area {unit.area!r} is not an area")
        return problems

    def _category_problems(self) -> list[str]:
        problems = []
        for cat in self.categories:
            for unit_id in (cat.lead, *cat.co_units):
                if unit_id is not None and unit_id not in self._units_by_id:
                    problems.append(f"category {cat.code}: unit {unit_id!r} does not exist")
            lead = self._units_by_id.get(cat.lead or "")
            if lead is not None and lead.level != cat.level:
                problems.append(f"category {cat.code}: level {cat.level} but lead {lead.id} is {lead.level}")
            for bureau in (cat.lead_branch_of, *cat.co_branches_of):
                if bureau is not None and not self._is_bureau(bureau):
                    problems.append(f"category {cat.code}: {bureau!r} is not a city bureau (a department without branch_of)")
        return problems

    def _is_bureau(self, unit_id: str) -> bool:
        unit = self._units_by_id.get(unit_id)
        return unit is not None and unit.kind == "department" and unit.branch_of is None and unit.area is None

    def _branch_problems(self) -> list[str]:
        problems = []
        seen: Counter[tuple[str, str]] = Counter()
        for unit in self.units:
            if unit.branch_of is None or unit.branch_area is None:
                continue
            seen[(unit.branch_of, unit.branch_area)] += 1
            if not self._is_bureau(unit.branch_of):
                problems.append(f"unit {unit.id}: branch_of {unit.branch_of!r} is not a city bureau")
            area = self._areas_by_id.get(unit.branch_area)
            if area is None or area.level != "district":
                problems.append(f"unit {unit.id}: branch_area {unit.branch_area!r} is not a district")
            if unit.level != "district":
                problems.append(f"unit {unit.id}: a district branch has level district, not {unit.level}")
        problems += [f"bureau {b!r} has {n} branches in {d!r}" for (b, d), n in seen.items() if n > 1]
        return problems

    # ------------------------------------------------------------------ lookups

    def category(self, code: str) -> Category:
        """The category with this code; ``UnknownCategoryError`` if there is none."""
        try:
            return self._categories_by_code[code]
        except KeyError:
            raise UnknownCategoryError(f"no category {code!r} in catalogue {self.version}") from None

    def has_category(self, code: str) -> bool:
        """Whether the catalogue contains this category code."""
        return code in self._categories_by_code

    def unit(self, unit_id: str) -> Unit:
        """The unit with this id; ``UnknownUnitError`` if there is none."""
        try:
            return self._units_by_id[unit_id]
        except KeyError:
            raise UnknownUnitError(f"no unit {unit_id!r} in catalogue {self.version}") from None

    def area(self, area_id: str) -> Area:
        """The area with this id; ``KeyError`` if there is none."""
        return self._areas_by_id[area_id]

    def category_codes(self) -> tuple[str, ...]:
        """All category codes in catalogue order."""
        return tuple(c.code for c in self.categories)

    def units_for_topics(self) -> tuple[str, ...]:
        """Every unit id that receives tasks: departments, every area's unit, and the hotline (which receives
        unlocated and fully returned tasks); each on the topic `task_topic_of` names."""
        return tuple(u.id for u in self.units)

    def own_topic_units(self) -> tuple[str, ...]:
        """The units with a task topic (and a Kafka principal) of their own: all but the area units (street
        offices, communities, grids), which share `contracts.topics.AREA_TASKS`."""
        return tuple(u.id for u in self.units if not is_area_level(u.level))

    def area_units(self) -> tuple[str, ...]:
        """The units whose tasks arrive on the shared area task topic, keyed by their id."""
        return tuple(u.id for u in self.units if is_area_level(u.level))

    def task_topic_of(self, unit_id: str) -> str:
        """The topic unit `unit_id`'s tasks and notices are published on; ``UnknownUnitError`` if no such unit."""
        return unit_task_topic(unit_id, self.unit(unit_id).level)

    def task_topics_of(self, unit_ids: Iterable[str]) -> dict[str, frozenset[str]]:
        """The task topics a reader answering for these units subscribes to, each with the units whose records
        it carries for them (a unit the catalogue does not list: its own topic, as `unit_task_topic` says)."""
        by_topic: dict[str, set[str]] = {}
        for unit_id in unit_ids:
            by_topic.setdefault(unit_task_topic(unit_id, self.level_of(unit_id)), set()).add(unit_id)
        return {topic: frozenset(units) for topic, units in sorted(by_topic.items())}

    def level_of(self, unit_id: str) -> str | None:
        """The level of unit `unit_id`, None when the catalogue has no such unit."""
        unit = self._units_by_id.get(unit_id)
        return unit.level if unit is not None else None

    # ------------------------------------------------------------------ routing

    def area_chain(self, location: Any) -> tuple[Area, ...]:
        """The areas of a location, most specific first, derived from its most specific known area id."""
        start = self._most_specific_area(location)
        chain: list[Area] = []
        while start is not None:
            chain.append(start)
            start = self._areas_by_id.get(start.parent) if start.parent else None
        return tuple(chain)

    def _most_specific_area(self, location: Any) -> Area | None:
        if location is None:
            return None
        for level in AREA_LEVELS:
            area = self._areas_by_id.get(field_of(location, level) or "")
            if area is not None and area.level == level:
                return area
        return None

    def route(self, category_code: str, location: Any = None, excluding: Iterable[str] = ()) -> RouteDecision:
        """Route a ticket of ``category_code`` at ``location``, skipping units in ``excluding`` (units that
        returned the task). See the module docstring for the rule."""
        category = self.category(category_code)
        excluded = tuple(dict.fromkeys(excluding))
        # The fallback unit (the hotline) owns every ticket and cannot return one to itself.
        skip = set(excluded) - {self.routing.unlocated_fallback}
        if category.lead_by_area is not None:
            lead, basis = self._area_lead(category.lead_by_area, location, skip)
        else:
            lead, basis = self._department_lead(category, location, skip)
        co_units = self._co_units(category, self._district_of(location))
        return self._decision(category, lead, basis, excluded, co_units)

    def branch(self, bureau: str, district: str | None) -> str | None:
        """The unit id of ``bureau``'s branch in the ``district`` area, None when it has none there."""
        return self._branches.get((bureau, district)) if district is not None else None

    def _district_of(self, location: Any) -> str | None:
        return next((a.id for a in self.area_chain(location) if a.level == "district"), None)

    def _co_units(self, category: Category, district: str | None) -> tuple[str, ...]:
        """Assisting units with the bureaus of ``co_branches_of`` resolved to their branch where the ticket is."""
        branches = (self.branch(b, district) or b for b in category.co_branches_of)
        return tuple(dict.fromkeys((*branches, *category.co_units)))

    def _department_lead(self, category: Category, location: Any, excluded: set[str]) -> tuple[str, RouteBasis]:
        district = self._district_of(location)
        candidates: list[tuple[str, RouteBasis]] = [self._catalogue_lead(category, district)]
        candidates += [(unit_id, "co-unit-promoted") for unit_id in self._co_units(category, district)]
        if district is not None:
            candidates.append((self._unit_of_area[district], "district-coordination"))
        return self._first_not_excluded(candidates, excluded)

    def _catalogue_lead(self, category: Category, district: str | None) -> tuple[str, RouteBasis]:
        if category.lead_branch_of is None:
            return category.lead or "", "catalogue-lead"
        branch = self.branch(category.lead_branch_of, district)
        # Unlocated, or a district the bureau has no branch in: the bureau itself leads at city level.
        return (branch, "district-branch") if branch is not None else (category.lead_branch_of, "catalogue-lead")

    def _area_lead(self, wanted: AreaLevel, location: Any, excluded: set[str]) -> tuple[str, RouteBasis]:
        chain = self.area_chain(location)
        if not chain:
            return self.routing.unlocated_fallback, "unlocated"
        at_or_above = [a for a in chain if AREA_LEVELS.index(a.level) >= AREA_LEVELS.index(wanted)]
        candidates: list[tuple[str, RouteBasis]] = []
        for position, area in enumerate(at_or_above):
            first_choice: RouteBasis = "area" if area.level == wanted else "area-fallback"
            basis = first_choice if position == 0 else "area-escalation"
            candidates.append((self._unit_of_area[area.id], basis))
        return self._first_not_excluded(candidates, excluded)

    def _first_not_excluded(
        self, candidates: list[tuple[str, RouteBasis]], excluded: set[str]
    ) -> tuple[str, RouteBasis]:
        for unit_id, basis in candidates:
            if unit_id not in excluded:
                return unit_id, basis
        return self.routing.unlocated_fallback, "hotline-fallback"

    def _decision(
        self, category: Category, lead: str, basis: RouteBasis, excluded: tuple[str, ...], co_units: tuple[str, ...]
    ) -> RouteDecision:
        co_units = tuple(u for u in co_units if u != lead and u not in excluded)
        disputed = basis in ("district-coordination", "hotline-fallback")
        return RouteDecision(
            category=category.code,
            lead=lead,
            co_units=co_units,
            level=self.unit(lead).level,
            needs_consultation=category.needs_consultation or disputed,
            basis=basis,
            excluded=excluded,
        )

    # ------------------------------------------------------------------ what-if

    def diff(self, other: Catalogue) -> list[str]:
        """Category codes whose routing (lead, co_units, lead_by_area, level) differs between this catalogue
        and ``other``, including codes present in only one of them; sorted."""
        mine = {c.code: c.routing_signature() for c in self.categories}
        theirs = {c.code: c.routing_signature() for c in other.categories}
        return sorted(code for code in mine.keys() | theirs.keys() if mine.get(code) != theirs.get(code))
