"""The city's responsibility catalogue (职责清单 / 派单目录): who handles what, where, and by when.

The catalogue is data (``responsibility.v1.yaml`` next to this file); this module is its contract: frozen
pydantic models, a validating loader, and the routing rule every service applies the same way.

Routing rule (``Catalogue.route``), including what happens when a unit returns a task (退单):

* A category with ``lead`` goes to that unit. When it is excluded (it returned the task), the first co-unit
  not excluded is promoted to lead; when all of those are excluded, the district operations centre of the
  ticket's location coordinates (ownership is disputed, so ``needs_consultation`` becomes true). Department
  work is deliberately *not* pushed down to a street office or community.
* A category with ``lead_by_area`` goes to the unit of that area of the ticket's location (the street office,
  the residents' committee, the grid). When the location does not name an area of that level, the nearest
  higher area it does name takes it (a grid-level matter reported with only a street goes to the street
  office). When that unit is excluded, the area above takes it: grid -> community -> street -> district
  ("small matters stay in the building" and escalate upward, never sideways to a neighbouring area).
* Whatever is left - no location at all for an area matter, or every candidate excluded - goes to the
  catalogue's ``routing.unlocated_fallback`` unit (the hotline), which completes the address or convenes the
  parties. The hotline cannot return a task to itself, so it is never excluded.

A location is any object (or mapping) with optional ``district``/``street``/``community``/``grid`` area ids.
The most specific known area wins and its ancestors are derived from the catalogue, so an inconsistent
location (a grid of one street with the id of another) is read by its most specific part; unknown ids are
ignored rather than fatal, because a stale address must not stop a ticket.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

__all__ = [
    "AREA_LEVELS",
    "CATALOGUE_V1_PATH",
    "Area",
    "Catalogue",
    "Category",
    "Limits",
    "Location",
    "RouteDecision",
    "RoutingDefaults",
    "TimeLimit",
    "Unit",
    "UnknownCategoryError",
    "UnknownUnitError",
    "load_catalogue",
    "parse_catalogue",
    "read_catalogue_data",
    "unit_task_topic",
]

CATALOGUE_V1_PATH = Path(__file__).with_name("responsibility.v1.yaml")

AreaLevel = Literal["grid", "community", "street", "district"]
Level = Literal["grid", "community", "street", "district", "city"]
UnitKind = Literal["department", "street-office", "community", "grid", "hotline"]
LimitUnit = Literal["wd", "wh", "h", "m"]
RouteBasis = Literal[
    "catalogue-lead",
    "co-unit-promoted",
    "district-coordination",
    "area",
    "area-fallback",
    "area-escalation",
    "unlocated",
    "hotline-fallback",
]

# Lowest first: the order in which a returned area task escalates.
AREA_LEVELS: tuple[AreaLevel, ...] = ("grid", "community", "street", "district")
_PARENT_LEVEL: dict[str, str] = {"grid": "community", "community": "street", "street": "district"}

# Unit ids end up in Kafka topic names, so they are restricted to what a topic name and a URL both accept.
_ID_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
_CODE_PATTERN = r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$"
_LIMIT_RE = re.compile(r"^\s*(\d+)\s*(wd|wh|h|m)\s*$")

# Nominal minutes per limit unit, only to check that sign_for <= response <= resolution. A working day is
# counted as a full calendar day because the next working day is never sooner than that.
_NOMINAL_MINUTES = {"wd": 24 * 60, "wh": 60, "h": 60, "m": 1}


def unit_task_topic(unit_id: str) -> str:
    """The Kafka topic on which a unit receives its tasks."""
    return f"cityops.unit.{unit_id}.tasks.v1"


class UnknownCategoryError(KeyError):
    """A category code the catalogue does not contain."""


class UnknownUnitError(KeyError):
    """A unit id the catalogue does not contain."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TimeLimit(_Frozen):
    """A time limit such as ``1wd`` (one working day) or ``30m`` (thirty natural minutes)."""

    amount: int = Field(ge=1, description="How many units of time; at least 1.")
    unit: LimitUnit = Field(
        description="wd = working days, wh = working hours, h = natural hours, m = natural minutes."
    )

    @model_validator(mode="before")
    @classmethod
    def _parse_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            return cls._split(value)
        return value

    @staticmethod
    def _split(text: str) -> dict[str, Any]:
        match = _LIMIT_RE.match(text)
        if not match:
            raise ValueError(f"time limit {text!r} is not '<number><wd|wh|h|m>'")
        return {"amount": int(match.group(1)), "unit": match.group(2)}

    @classmethod
    def parse(cls, text: str) -> TimeLimit:
        """Parse ``"<number><wd|wh|h|m>"``, e.g. ``"13wd"``."""
        return cls.model_validate(text)

    def nominal_minutes(self) -> int:
        """A rough length for ordering limits; deadlines themselves need the working-day calendar."""
        return self.amount * _NOMINAL_MINUTES[self.unit]

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"


class Limits(_Frozen):
    """The three clocks of a ticket in one category."""

    sign_for: TimeLimit = Field(description="Time for the lead unit to sign for (签收) the task after dispatch.")
    response: TimeLimit = Field(description="Time to contact the resident / give a first substantive reply.")
    resolution: TimeLimit = Field(description="Time to resolve and report completion.")

    @model_validator(mode="after")
    def _clocks_in_order(self) -> Limits:
        if not (
            self.sign_for.nominal_minutes()
            <= self.response.nominal_minutes()
            <= self.resolution.nominal_minutes()
        ):
            raise ValueError(
                f"limits must satisfy sign_for <= response <= resolution, got "
                f"{self.sign_for} / {self.response} / {self.resolution}"
            )
        return self


class Area(_Frozen):
    """A piece of the city's territory: district > street > community > grid."""

    id: str = Field(pattern=_ID_PATTERN, description="Kebab-case ascii id; also the id of the area's unit.")
    name: str = Field(min_length=1, description="Chinese name, e.g. 滨江街道.")
    name_en: str = Field(min_length=1, description="English name, e.g. Binjiang Street.")
    level: AreaLevel = Field(description="grid, community, street or district.")
    parent: str | None = Field(default=None, description="Id of the enclosing area; None only for a district.")

    @model_validator(mode="after")
    def _parent_matches_level(self) -> Area:
        if (self.level == "district") != (self.parent is None):
            raise ValueError(f"area {self.id}: a district has no parent and every other area has one")
        return self


class Unit(_Frozen):
    """Anything a task can be routed to: a department, a street office, a community, a grid, the hotline."""

    id: str = Field(
        pattern=_ID_PATTERN,
        max_length=100,
        description="Kebab-case ascii id; used in the Kafka topic cityops.unit.<id>.tasks.v1.",
    )
    name: str = Field(min_length=1, description="Chinese name.")
    name_en: str = Field(min_length=1, description="English name.")
    level: Level = Field(description="Administrative level: grid, community, street, district or city.")
    kind: UnitKind = Field(description="department, street-office, community, grid or hotline.")
    area: str | None = Field(default=None, description="The area this unit is the office of, if any.")


class Category(_Frozen):
    """One line of the responsibility catalogue: a kind of request, who leads, who helps, and the limits."""

    code: str = Field(pattern=_CODE_PATTERN, description="Stable ascii code, e.g. city-management.street-light.")
    name: str = Field(min_length=1, description="Chinese name.")
    name_en: str = Field(min_length=1, description="English name.")
    keywords_zh: tuple[str, ...] = Field(min_length=1, description="Chinese seed phrases for the classifier.")
    keywords_en: tuple[str, ...] = Field(min_length=1, description="English seed phrases for the classifier.")
    lead: str | None = Field(default=None, description="Unit id of the lead unit (主办); exclusive with lead_by_area.")
    lead_by_area: AreaLevel | None = Field(
        default=None, description="Route to the unit of this area of the ticket's location; exclusive with lead."
    )
    co_units: tuple[str, ...] = Field(
        default=(), description="Assisting units (协办), in the order they are promoted if the lead returns the task."
    )
    level: Level = Field(description="Level at which the category is handled; equals the lead's level.")
    needs_consultation: bool = Field(
        default=False, description="Genuinely multi-party: convene the parties (协商) before acting."
    )
    limits: Limits = Field(description="Sign-for, response and resolution limits.")

    @model_validator(mode="after")
    def _one_way_to_find_the_lead(self) -> Category:
        if (self.lead is None) == (self.lead_by_area is None):
            raise ValueError(f"category {self.code}: give exactly one of lead / lead_by_area")
        if self.lead_by_area is not None and self.level != self.lead_by_area:
            raise ValueError(f"category {self.code}: level {self.level} differs from lead_by_area {self.lead_by_area}")
        if len(set(self.co_units)) != len(self.co_units):
            raise ValueError(f"category {self.code}: co_units repeat a unit")
        if self.lead is not None and self.lead in self.co_units:
            raise ValueError(f"category {self.code}: the lead {self.lead} is also a co-unit")
        return self

    def routing_signature(self) -> tuple[Any, ...]:
        """What decides routing; two catalogues route a category alike iff these are equal."""
        return (self.lead, self.lead_by_area, self.co_units, self.level)


class RoutingDefaults(_Frozen):
    """Catalogue-wide routing settings."""

    unlocated_fallback: str = Field(
        default="hotline",
        description="Unit that receives area matters without a known location and tasks every candidate returned.",
    )


class Location(_Frozen):
    """A convenience location; ``route`` accepts any object or mapping with these optional attributes."""

    district: str | None = Field(default=None, description="District area id.")
    street: str | None = Field(default=None, description="Street area id.")
    community: str | None = Field(default=None, description="Community area id.")
    grid: str | None = Field(default=None, description="Grid area id.")


class RouteDecision(_Frozen):
    """Where one ticket of one category goes."""

    category: str = Field(description="The category code that was routed.")
    lead: str = Field(description="Unit id of the lead unit (主办).")
    co_units: tuple[str, ...] = Field(description="Unit ids of the assisting units (协办), lead and excluded removed.")
    level: Level = Field(description="Level of the lead unit actually chosen (shows escalation).")
    needs_consultation: bool = Field(
        description="Convene the parties first: the category says so, or ownership became disputed."
    )
    basis: RouteBasis = Field(description="Which step of the routing rule chose the lead.")
    excluded: tuple[str, ...] = Field(default=(), description="Units excluded because they returned the task.")


class Catalogue(_Frozen):
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

    @model_validator(mode="before")
    @classmethod
    def _add_area_units(cls, data: Any) -> Any:
        """Every area is a unit; derive the ones the file does not list explicitly."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        units = list(data.get("units") or [])
        known = {_field(u, "id") for u in units}
        for area in data.get("areas") or []:
            if _field(area, "id") not in known:
                units.append(_unit_for_area(area))
        data["units"] = units
        return data

    def model_post_init(self, __context: Any) -> None:
        self._areas_by_id = {a.id: a for a in self.areas}
        self._units_by_id = {u.id: u for u in self.units}
        self._categories_by_code = {c.code: c for c in self.categories}
        self._unit_of_area = {u.area: u.id for u in self.units if u.area is not None}

    @model_validator(mode="after")
    def _references_resolve(self) -> Catalogue:
        problems = [
            *self._duplicate_problems(),
            *self._area_problems(),
            *self._category_problems(),
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
                elif parent.level != _PARENT_LEVEL[area.level]:
                    problems.append(f"area {area.id}: a {area.level} must sit in a {_PARENT_LEVEL[area.level]}")
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
        """Every unit id that needs a task topic: departments, every area's unit, and the hotline
        (which receives unlocated and fully returned tasks)."""
        return tuple(u.id for u in self.units)

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
            area = self._areas_by_id.get(_field(location, level) or "")
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
        return self._decision(category, lead, basis, excluded)

    def _department_lead(self, category: Category, location: Any, excluded: set[str]) -> tuple[str, RouteBasis]:
        candidates: list[tuple[str, RouteBasis]] = [(category.lead or "", "catalogue-lead")]
        candidates += [(unit_id, "co-unit-promoted") for unit_id in category.co_units]
        district = next((a for a in self.area_chain(location) if a.level == "district"), None)
        if district is not None:
            candidates.append((self._unit_of_area[district.id], "district-coordination"))
        return self._first_not_excluded(candidates, excluded)

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
        self, category: Category, lead: str, basis: RouteBasis, excluded: tuple[str, ...]
    ) -> RouteDecision:
        co_units = tuple(u for u in category.co_units if u != lead and u not in excluded)
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


# ---------------------------------------------------------------------- helpers and loading

_AREA_UNIT_STYLE: dict[str, tuple[str, str, UnitKind]] = {
    # level: (Chinese suffix, English suffix, kind)
    "district": ("城市运行管理中心", " City Operations Centre", "department"),
    "street": ("办事处", " Office", "street-office"),
    "community": ("居民委员会", " Residents' Committee", "community"),
    "grid": ("（网格员）", " (grid worker)", "grid"),
}


def _field(obj: Any, name: str) -> Any:
    """Read ``name`` from a mapping or an object, None when absent."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _unit_for_area(area: Any) -> dict[str, Any]:
    level = _field(area, "level")
    zh_suffix, en_suffix, kind = _AREA_UNIT_STYLE.get(level, ("", "", "department"))
    return {
        "id": _field(area, "id"),
        "name": f"{_field(area, 'name')}{zh_suffix}",
        "name_en": f"{_field(area, 'name_en')}{en_suffix}",
        "level": level,
        "kind": kind,
        "area": _field(area, "id"),
    }


def parse_catalogue(data: Mapping[str, Any]) -> Catalogue:
    """Validate already-parsed catalogue data (e.g. a modified copy for a what-if run)."""
    return Catalogue.model_validate(data)


def read_catalogue_data(path: Path | None = None) -> dict[str, Any]:
    """The raw YAML content of a catalogue file (the packaged v1 file by default)."""
    # The C loader is ~8x faster than the pure-Python one; both are "safe" (no arbitrary objects).
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path or CATALOGUE_V1_PATH, encoding="utf-8") as handle:
        data: dict[str, Any] = yaml.load(handle, Loader=loader)  # noqa: S506 - a safe loader
    return data


def load_catalogue(path: Path | None = None) -> Catalogue:
    """Load and validate a catalogue (default: the packaged v1 file). Cached per file and modification time,
    so repeated calls are free and an edited file is re-read."""
    resolved = Path(path or CATALOGUE_V1_PATH).resolve()
    return _load_cached(str(resolved), resolved.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _load_cached(path: str, _mtime_ns: int) -> Catalogue:
    return parse_catalogue(read_catalogue_data(Path(path)))
