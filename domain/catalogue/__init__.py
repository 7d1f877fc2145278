"""The city's responsibility catalogue (职责清单 / 派单目录): who handles what, where, and by when.

The catalogue is data (``responsibility.v1.yaml`` next to this file); this package holds its rules: frozen
pydantic models (`models`), the validated whole with its routing rule (`catalogue`), and the loader
(`loading`). It is domain, not wire format: events carry only what routing decided (`contracts.events`).

Routing rule (``Catalogue.route``), including what happens when a unit returns a task (退单):

* A category with ``lead`` goes to that unit. When it is excluded (it returned the task), the first co-unit
  not excluded is promoted to lead; when all of those are excluded, the district operations centre of the
  ticket's location coordinates (ownership is disputed, so ``needs_consultation`` becomes true). Department
  work is deliberately *not* pushed down to a street office or community.
* A category with ``lead_branch_of: X`` is a department matter whose lead depends on where it is: the district
  branch of bureau X (a unit with ``branch_of: X, branch_area: <district>``) of the ticket's district, or X
  itself when the location names no district or X has no branch there. ``co_branches_of`` resolves assisting
  bureaus the same way. Exclusion then proceeds as for ``lead`` (co-units, district centre, hotline).
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

from contracts.topics import unit_task_topic

from .catalogue import Catalogue
from .loading import (
    CATALOGUE_V1_PATH,
    CITY_CATALOGUES,
    DEFAULT_CITY,
    UnknownCityError,
    catalogue_path_for_city,
    load_catalogue,
    parse_catalogue,
    read_catalogue_data,
)
from .models import (
    AREA_LEVELS,
    Area,
    AreaLevel,
    Category,
    Level,
    Limits,
    LimitUnit,
    Location,
    RouteBasis,
    RouteDecision,
    RoutingDefaults,
    TimeLimit,
    Unit,
    UnitKind,
    UnknownCategoryError,
    UnknownUnitError,
)

__all__ = [
    "AREA_LEVELS",
    "CATALOGUE_V1_PATH",
    "CITY_CATALOGUES",
    "DEFAULT_CITY",
    "Area",
    "AreaLevel",
    "Catalogue",
    "Category",
    "Level",
    "LimitUnit",
    "Limits",
    "Location",
    "RouteBasis",
    "RouteDecision",
    "RoutingDefaults",
    "TimeLimit",
    "Unit",
    "UnitKind",
    "UnknownCategoryError",
    "UnknownCityError",
    "UnknownUnitError",
    "catalogue_path_for_city",
    "load_catalogue",
    "parse_catalogue",
    "read_catalogue_data",
    "unit_task_topic",
]

