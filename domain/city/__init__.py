"""A city of the real size for cityops, and "where is it?".

* ``layout``: the territory, seeded - Yantai's 14 districts, county-level cities and zones, 150 streets and towns,
  1,500 communities and villages, 15,600 grids as nested rectangles, residential compounds and ~70,000 buildings.
* ``matters``: its bureaus, their district branches and a responsibility list of 1,326 matters (domain x object x
  kind of problem), each with lead, assisting units, handling level and time limits.
* ``generate``: writes both as a catalogue YAML (committed: domain/catalogue/responsibility.yantai.v1.yaml) and a
  GeoJSON map; ``mapdata`` makes the map on first use into a cache and checks it against a committed digest.
* ``locate``: coordinates -> grid (shapely STRtree), address -> area (gazetteer); ``place``: the most precise place
  known for a ticket, in the shape ``Catalogue.route`` takes.

The small 16-grid catalogue (responsibility.v1.yaml) stays the hub's default; this city is opt-in (``--path``).
"""

from __future__ import annotations

from .generate import CITY_CATALOGUE_PATH, DEFAULT_SEED, write_city
from .locate import AddressMatch, Gazetteer, GridLocator
from .mapdata import MAP_SHA256, MapChecksumError, city_map_path, load_city_map
from .place import Place, most_precise_place

__all__ = [
    "CITY_CATALOGUE_PATH",
    "DEFAULT_SEED",
    "MAP_SHA256",
    "AddressMatch",
    "Gazetteer",
    "GridLocator",
    "MapChecksumError",
    "Place",
    "city_map_path",
    "load_city_map",
    "most_precise_place",
    "write_city",
]
