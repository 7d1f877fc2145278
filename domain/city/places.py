"""Placing tickets in one city: its map's grid locator and gazetteer, built once per process at startup.

``city_places(city, catalogue)`` reads the map of a shipped city (the small city's packaged GeoJSON, or the
large city's generated map) and builds an STRtree over its grids and a gazetteer of its place names; ``place``
then gives the most precise place a ticket's ids, coordinates and address agree on (``most_precise_place``).
The small city's map carries no compounds or buildings, so its gazetteer knows the catalogue's area names only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shapely.geometry import shape

from domain.catalogue import Catalogue, catalogue_path_for_city

from .locate import Gazetteer, GridLocator
from .place import Place, most_precise_place


@dataclass(frozen=True)
class CityPlaces:
    """Where things are in one city: ``place`` turns what a ticket carries into areas of ``catalogue``."""

    catalogue: Catalogue
    locator: GridLocator
    gazetteer: Gazetteer

    def place(self, reported: Any) -> Place:
        return most_precise_place(self.catalogue, reported, self.locator, self.gazetteer)


def city_map_for(city: str) -> dict[str, Any]:
    """The GeoJSON map of a shipped city (an unknown name raises, listing the known ones)."""
    catalogue_path_for_city(city)
    if city == "demo":
        from domain.catalogue.geo import read_city_map

        return read_city_map()
    from .mapdata import load_city_map

    return load_city_map()


def city_places(city: str, catalogue: Catalogue, city_map: Mapping[str, Any] | None = None) -> CityPlaces:
    """The locator and gazetteer of ``city``'s map, answering in ``catalogue``'s areas (ids the catalogue lacks
    are ignored by ``most_precise_place``, so a catalogue of one's own with another map degrades to its ids)."""
    collection = city_map if city_map is not None else city_map_for(city)
    locator = GridLocator([(f["properties"]["id"], shape(f["geometry"])) for f in grid_features(collection)])
    gazetteer = Gazetteer.from_geojson(collection)
    if not len(gazetteer):  # a map without `kind: area` features: the catalogue's own area names
        gazetteer = Gazetteer([(a.name, a.id) for a in catalogue.areas],
                              {a.id: a.parent for a in catalogue.areas}, {a.id: a.level for a in catalogue.areas})
    return CityPlaces(catalogue, locator, gazetteer)


def grid_features(collection: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The grid polygons of a map (the small city's map does not mark its features as areas; the large one's do)."""
    return [f for f in collection["features"]
            if (f.get("properties") or {}).get("level") == "grid" and (f["properties"].get("kind") in (None, "area"))]
