"""The most precise place known for a ticket, from whatever it carries: area ids, coordinates, an address.

Sources, most trusted first: a grid id the caller or an operator chose, the coordinates (point in polygon), the
address (gazetteer), then the community/street/district ids reported. The deepest area any source gives wins (a
ties goes to the more trusted source); its ancestors come from the catalogue, so the result is consistent by
construction. A source that names an area off that chain is reported in ``conflicts`` (an operator may want to look:
the pin is in 莱山 but the address says 芝罘), never fatal: a stale or sloppy address must not stop a ticket.
The result has ``district``/``street``/``community``/``grid`` attributes, so ``Catalogue.route`` takes it as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from domain.catalogue import AREA_LEVELS, Catalogue
from domain.catalogue.models import field_of

from .locate import Gazetteer, GridLocator

PlaceBasis = Literal["grid-id", "coordinates", "address", "reported-area", "none"]


@dataclass(frozen=True)
class Place:
    district: str | None = None
    street: str | None = None
    community: str | None = None
    grid: str | None = None
    basis: PlaceBasis = "none"
    conflicts: tuple[str, ...] = ()  # the sources (as PlaceBasis names) that named an area off the chosen chain

    @property
    def most_specific(self) -> str | None:
        return self.grid or self.community or self.street or self.district


def most_precise_place(
    catalogue: Catalogue,
    reported: Any = None,
    locator: GridLocator | None = None,
    gazetteer: Gazetteer | None = None,
) -> Place:
    """``reported``: a mapping or object with optional district/street/community/grid ids, lat/lon and address."""
    sources = [(basis, area) for basis, area in _sources(catalogue, reported, locator, gazetteer) if area is not None]
    if not sources:
        return Place()
    depth = {level: index for index, level in enumerate(reversed(AREA_LEVELS))}  # district 0 ... grid 3
    # max() keeps the first of equals, and sources come most trusted first.
    basis, chosen = max(sources, key=lambda source: depth[catalogue.area(source[1]).level])
    chain = {a.level: a.id for a in catalogue.area_chain({catalogue.area(chosen).level: chosen})}
    conflicts = tuple(dict.fromkeys(b for b, area in sources if area not in chain.values()))
    return Place(basis=basis, conflicts=conflicts, **chain)


def _sources(
    catalogue: Catalogue, reported: Any, locator: GridLocator | None, gazetteer: Gazetteer | None
) -> list[tuple[PlaceBasis, str | None]]:
    def known(area_id: Any, level: str | None = None) -> str | None:
        try:
            area = catalogue.area(str(area_id)) if area_id else None
        except KeyError:
            return None  # a stale or mistyped id is ignored, like Catalogue.route does
        return area.id if area is not None and (level is None or area.level == level) else None

    found: list[tuple[PlaceBasis, str | None]] = [("grid-id", known(field_of(reported, "grid"), "grid"))]
    lat, lon = field_of(reported, "lat"), field_of(reported, "lon")
    if locator is not None and isinstance(lat, int | float) and isinstance(lon, int | float):
        found.append(("coordinates", known(locator.locate(float(lon), float(lat)))))
    address = field_of(reported, "address")
    if gazetteer is not None and isinstance(address, str) and address.strip():
        match = gazetteer.lookup(address)
        found.append(("address", known(match.area) if match is not None else None))
    for level in ("community", "street", "district"):
        found.append(("reported-area", known(field_of(reported, level), level)))
    return found
