"""The city's map: a polygon for every area of the catalogue (grid, community, street, district), as GeoJSON.

The small city has no surveyed boundaries, so `generate_city_map` draws them: the city's box is split among
its districts, each district's box among its streets, and so on down to the grids, along alternating axes,
each child's share drawn from a seeded random generator. A parent's polygon is exactly the union of its
children's, so a point lies in one grid and in that grid's community, street and district. The same seed and
catalogue give the same file (`python -m tools.city_map` writes city_map.v1.geojson next to the catalogue).

The format is plain GeoJSON (RFC 7946: lon/lat, WGS 84), one Feature per area with `id`, `name`, `name_en`,
`level` and `parent`: a city with surveyed boundaries (or 15,600 grids) ships its own file of the same shape,
and `AreaLocator` answers which areas a point lies in through an STRtree, whatever the number of polygons.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from .catalogue import Catalogue
from .models import AREA_LEVELS

CITY_MAP_V1_PATH = Path(__file__).with_name("city_map.v1.geojson")
# Where the small city lies (Hangzhou's latitude); the synthetic history draws its points in this box too.
DEFAULT_BOX = (120.0, 30.0, 121.0, 31.0)
DEFAULT_SEED = 2026

Box = tuple[float, float, float, float]  # west, south, east, north


def generate_city_map(catalogue: Catalogue, *, seed: int = DEFAULT_SEED, box: Box = DEFAULT_BOX) -> dict[str, Any]:
    """A FeatureCollection with one polygon per area, districts first, grids last."""
    rng = random.Random(seed)
    children: dict[str | None, list[Any]] = {}
    for area in catalogue.areas:
        children.setdefault(area.parent, []).append(area)
    boxes: dict[str, Box] = {}

    def split(parent: str | None, within: Box, depth: int) -> None:
        # reversed ids put district-west west of district-east (the first strip is the west- or southmost)
        kids = sorted(children.get(parent, []), key=lambda a: a.id, reverse=True)
        for area, part in zip(kids, _shares(within, len(kids), rng, vertical=depth % 2 == 0), strict=True):
            boxes[area.id] = part
            split(area.id, part, depth + 1)

    split(None, box, 0)
    order = {level: i for i, level in enumerate(reversed(AREA_LEVELS))}
    features = [_feature(area, boxes[area.id]) for area in sorted(catalogue.areas, key=lambda a: (order[a.level], a.id))]
    return {"type": "FeatureCollection", "name": "cityops areas", "seed": seed, "features": features}


def _shares(box: Box, n: int, rng: random.Random, *, vertical: bool) -> list[Box]:
    """`box` cut into n strips (vertical cuts: west to east), each's width drawn between 0.7 and 1.3 of equal."""
    if n == 0:
        return []
    weights = [rng.uniform(0.7, 1.3) for _ in range(n)]
    total = sum(weights)
    west, south, east, north = box
    start, span = (west, east - west) if vertical else (south, north - south)
    edges = [start]
    for w in weights:
        edges.append(edges[-1] + span * w / total)
    edges[-1] = start + span  # no rounding gap at the far edge
    edges = [round(e, 6) for e in edges]
    if vertical:
        return [(a, south, b, north) for a, b in zip(edges, edges[1:], strict=False)]
    return [(west, a, east, b) for a, b in zip(edges, edges[1:], strict=False)]


def _feature(area: Any, box: Box) -> dict[str, Any]:
    west, south, east, north = box
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Feature", "id": area.id,
            "properties": {"id": area.id, "name": area.name, "name_en": area.name_en, "level": area.level,
                           "parent": area.parent},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}


def read_city_map(path: Path | None = None) -> dict[str, Any]:
    """The packaged map (or another file of the same shape)."""
    loaded: dict[str, Any] = json.loads((path or CITY_MAP_V1_PATH).read_text(encoding="utf-8"))
    return loaded


def features_of(city_map: Mapping[str, Any], level: str) -> list[dict[str, Any]]:
    """The features of one level (what the console's map of grids draws)."""
    return [f for f in city_map["features"] if f["properties"]["level"] == level]


class AreaLocator:
    """Which areas a point (lon, lat) lies in: the grid's polygon found through an STRtree, its ancestors from the
    map's `parent` links. A point outside every grid gets the smallest enclosing area the map has, or nothing."""

    def __init__(self, city_map: Mapping[str, Any]) -> None:
        from shapely import STRtree
        from shapely.geometry import shape

        self._parent = {f["properties"]["id"]: f["properties"]["parent"] for f in city_map["features"]}
        self._level = {f["properties"]["id"]: f["properties"]["level"] for f in city_map["features"]}
        self._by_level: dict[str, tuple[Any, list[str]]] = {}
        for level in AREA_LEVELS:
            feats = features_of(city_map, level)
            if feats:
                self._by_level[level] = (STRtree([shape(f["geometry"]) for f in feats]), [f["properties"]["id"] for f in feats])

    def locate(self, lon: float, lat: float) -> dict[str, str]:
        """{"grid": ..., "community": ..., "street": ..., "district": ...} for the point; {} outside the city."""
        from shapely.geometry import Point

        point = Point(lon, lat)
        for level in AREA_LEVELS:  # most specific first
            if level not in self._by_level:
                continue
            tree, ids = self._by_level[level]
            hits: Sequence[int] = tree.query(point, predicate="intersects")
            if len(hits):
                return self._chain(min(ids[i] for i in hits))  # a point on a shared edge: the lowest id, stably
        return {}

    def _chain(self, area_id: str) -> dict[str, str]:
        out: dict[str, str] = {}
        current: str | None = area_id
        while current is not None:
            out[self._level[current]] = current
            current = self._parent.get(current)
        return out


@lru_cache(maxsize=1)
def default_locator() -> AreaLocator:
    """The locator of the packaged map (built once: intake or triage may ask it for every ticket)."""
    return AreaLocator(read_city_map())
