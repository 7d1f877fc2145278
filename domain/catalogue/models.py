"""The catalogue's building blocks: time limits, areas, units, categories and a routing decision.

Frozen pydantic models validated on load; `catalogue.Catalogue` ties them together and routes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

AreaLevel = Literal["grid", "community", "street", "district"]
Level = Literal["grid", "community", "street", "district", "city"]
UnitKind = Literal["department", "street-office", "community", "grid", "hotline"]
LimitUnit = Literal["wd", "wh", "h", "m"]
RouteBasis = Literal[
    "catalogue-lead",
    "co-unit-promoted",
    "district-coordination",
    "district-branch",
    "area",
    "area-fallback",
    "area-escalation",
    "unlocated",
    "hotline-fallback",
]

# Lowest first: the order in which a returned area task escalates.
AREA_LEVELS: tuple[AreaLevel, ...] = ("grid", "community", "street", "district")
PARENT_LEVEL: dict[str, str] = {"grid": "community", "community": "street", "street": "district"}

# Unit ids end up in Kafka topic names, so they are restricted to what a topic name and a URL both accept.
_ID_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
_CODE_PATTERN = r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$"
_LIMIT_RE = re.compile(r"^\s*(\d+)\s*(wd|wh|h|m)\s*$")

# Nominal minutes per limit unit, only to check that sign_for <= response <= resolution. A working day is
# counted as a full calendar day because the next working day is never sooner than that.
_NOMINAL_MINUTES = {"wd": 24 * 60, "wh": 60, "h": 60, "m": 1}


class UnknownCategoryError(KeyError):
    """A category code the catalogue does not contain."""


class UnknownUnitError(KeyError):
    """A unit id the catalogue does not contain."""


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TimeLimit(FrozenModel):
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


class Limits(FrozenModel):
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


class Area(FrozenModel):
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


class Unit(FrozenModel):
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
    branch_of: str | None = Field(
        default=None, description="Unit id of the city bureau this unit is the district branch (分局) of; with branch_area."
    )
    branch_area: str | None = Field(default=None, description="The district area a branch serves; with branch_of.")

    @model_validator(mode="after")
    def _branch_names_both(self) -> Unit:
        if (self.branch_of is None) != (self.branch_area is None):
            raise ValueError(f"unit {self.id}: give both branch_of and branch_area, or neither")
        return self


class Category(FrozenModel):
    """One line of the responsibility catalogue: a kind of request, who leads, who helps, and the limits."""

    code: str = Field(pattern=_CODE_PATTERN, description="Stable ascii code, e.g. city-management.street-light.")
    name: str = Field(min_length=1, description="Chinese name.")
    name_en: str = Field(min_length=1, description="English name.")
    keywords_zh: tuple[str, ...] = Field(min_length=1, description="Chinese seed phrases for the classifier.")
    keywords_en: tuple[str, ...] = Field(min_length=1, description="English seed phrases for the classifier.")
    lead: str | None = Field(
        default=None, description="Unit id of the lead unit (主办); exclusive with lead_by_area and lead_branch_of."
    )
    lead_by_area: AreaLevel | None = Field(
        default=None, description="Route to the unit of this area of the ticket's location; exclusive with lead."
    )
    lead_branch_of: str | None = Field(
        default=None,
        description="Unit id of a city bureau: the lead is its district branch where the ticket is (the bureau itself "
        "when the location names no district or that district has no branch); exclusive with lead and lead_by_area.",
    )
    co_units: tuple[str, ...] = Field(
        default=(), description="Assisting units (协办), in the order they are promoted if the lead returns the task."
    )
    co_branches_of: tuple[str, ...] = Field(
        default=(),
        description="City bureaus whose district branch where the ticket is assists; promoted before co_units.",
    )
    level: Level = Field(description="Level at which the category is handled; equals the lead's level.")
    needs_consultation: bool = Field(
        default=False, description="Genuinely multi-party: convene the parties (协商) before acting."
    )
    limits: Limits = Field(description="Sign-for, response and resolution limits.")

    @model_validator(mode="after")
    def _one_way_to_find_the_lead(self) -> Category:
        if sum(way is not None for way in (self.lead, self.lead_by_area, self.lead_branch_of)) != 1:
            raise ValueError(f"category {self.code}: give exactly one of lead / lead_by_area / lead_branch_of")
        if self.lead_by_area is not None and self.level != self.lead_by_area:
            raise ValueError(f"category {self.code}: level {self.level} differs from lead_by_area {self.lead_by_area}")
        if self.lead_branch_of is not None and self.level != "district":
            raise ValueError(f"category {self.code}: a lead_branch_of category is handled at district level")
        for name, units in (("co_units", self.co_units), ("co_branches_of", self.co_branches_of)):
            if len(set(units)) != len(units):
                raise ValueError(f"category {self.code}: {name} repeat a unit")
        if self.lead is not None and self.lead in self.co_units:
            raise ValueError(f"category {self.code}: the lead {self.lead} is also a co-unit")
        if self.lead_branch_of is not None and self.lead_branch_of in self.co_branches_of:
            raise ValueError(f"category {self.code}: the lead bureau {self.lead_branch_of} is also in co_branches_of")
        return self

    def routing_signature(self) -> tuple[Any, ...]:
        """What decides routing; two catalogues route a category alike iff these are equal."""
        return (self.lead, self.lead_by_area, self.co_units, self.level, self.lead_branch_of, self.co_branches_of)


class RoutingDefaults(FrozenModel):
    """Catalogue-wide routing settings."""

    unlocated_fallback: str = Field(
        default="hotline",
        description="Unit that receives area matters without a known location and tasks every candidate returned.",
    )


class Location(FrozenModel):
    """A convenience location; ``route`` accepts any object or mapping with these optional attributes."""

    district: str | None = Field(default=None, description="District area id.")
    street: str | None = Field(default=None, description="Street area id.")
    community: str | None = Field(default=None, description="Community area id.")
    grid: str | None = Field(default=None, description="Grid area id.")


class RouteDecision(FrozenModel):
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



_AREA_UNIT_STYLE: dict[str, tuple[str, str, UnitKind]] = {
    # level: (Chinese suffix, English suffix, kind)
    "district": ("城市运行管理中心", " City Operations Centre", "department"),
    "street": ("办事处", " Office", "street-office"),
    "community": ("居民委员会", " Residents' Committee", "community"),
    "grid": ("（网格员）", " (grid worker)", "grid"),
}


def field_of(obj: Any, name: str) -> Any:
    """Read ``name`` from a mapping or an object, None when absent."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def unit_for_area(area: Any) -> dict[str, Any]:
    level = field_of(area, "level")
    zh_suffix, en_suffix, kind = _AREA_UNIT_STYLE.get(level, ("", "", "department"))
    return {
        "id": field_of(area, "id"),
        "name": f"{field_of(area, 'name')}{zh_suffix}",
        "name_en": f"{field_of(area, 'name_en')}{en_suffix}",
        "level": level,
        "kind": kind,
        "area": field_of(area, "id"),
    }

