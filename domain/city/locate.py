"""Where is it? Coordinates to a grid (point in polygon over an STRtree), an address to an area (a gazetteer).

Both are built from a GeoJSON FeatureCollection of areas (``kind: area`` features with id, level and parent) and,
for the gazetteer, residential compounds and buildings, so a real city's boundaries can replace the generated ones.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import shapely
from shapely import STRtree
from shapely.geometry import shape

LEVEL_DEPTH = {"district": 1, "street": 2, "community": 3, "grid": 4}


class GridLocator:
    """Point -> the id of the polygon (a grid, by default) that contains it; None outside every polygon.

    A point on a shared edge belongs to both neighbours; the first in the input order wins, so the answer is stable."""

    def __init__(self, polygons: Sequence[tuple[str, Any]]) -> None:
        self._ids = [area_id for area_id, _ in polygons]
        self._tree = STRtree([geometry for _, geometry in polygons])

    @classmethod
    def from_geojson(cls, collection: Mapping[str, Any], level: str = "grid") -> GridLocator:
        areas = [f for f in _areas(collection) if f["properties"]["level"] == level]
        return cls([(f["properties"]["id"], shape(f["geometry"])) for f in areas])

    def __len__(self) -> int:
        return len(self._ids)

    def locate(self, lon: float, lat: float) -> str | None:
        hits = self._tree.query(shapely.Point(lon, lat), predicate="intersects")
        return self._ids[int(hits.min())] if len(hits) else None

    def locate_many(self, points: Sequence[tuple[float, float]]) -> list[str | None]:
        """Many points in one vectorised query (much faster than one by one)."""
        found: list[str | None] = [None] * len(points)
        if not points:
            return found
        point_index, tree_index = self._tree.query(shapely.points(list(points)), predicate="intersects")
        for p, t in sorted(zip(point_index.tolist(), tree_index.tolist()), reverse=True):
            found[p] = self._ids[t]  # descending, so the lowest tree index is written last and wins
        return found


@dataclass(frozen=True)
class AddressMatch:
    """The most specific area an address names, and how sure that is."""

    area: str
    level: str
    matched: tuple[str, ...]  # the names found in the text that support the answer
    ambiguous: bool  # several areas fitted equally well; ``area`` is their most specific common ancestor


class Gazetteer:
    """Place names of the city -> area ids: districts (also without 区/市), streets and towns, communities and villages,
    grids, residential compounds (-> their community) and buildings (-> their grid).

    ``lookup`` finds every known name in a free-text address (a dictionary probe per substring length, so it does
    not slow down with the size of the city) and picks the most specific area that the most names agree on: 阳光花园3号楼
    exists in several communities, and 芝罘区 or 向阳街道 in the same address says which one."""

    def __init__(self, names: Iterable[tuple[str, str]], parents: Mapping[str, str | None], levels: Mapping[str, str]) -> None:
        index: dict[str, set[str]] = defaultdict(set)
        for name, area_id in names:
            if name:
                index[name].add(area_id)
        self._index = {name: frozenset(ids) for name, ids in index.items()}
        self._lengths = sorted({len(name) for name in self._index}, reverse=True)
        self._parents = dict(parents)
        self._levels = dict(levels)

    @classmethod
    def from_geojson(cls, collection: Mapping[str, Any]) -> Gazetteer:
        parents: dict[str, str | None] = {}
        levels: dict[str, str] = {}
        names: list[tuple[str, str]] = []
        for feature in _areas(collection):
            props = feature["properties"]
            parents[props["id"]], levels[props["id"]] = props.get("parent"), props["level"]
            names.append((props["name"], props["id"]))
            if props["level"] == "district":
                names += [(short, props["id"]) for short in district_short_names(props["name"])]
        for feature in collection["features"]:
            props = feature["properties"]
            if props.get("kind") == "compound":
                names.append((props["name"], props["community"]))
            elif props.get("kind") == "building":
                names.append((props["name"], props["grid"]))
        return cls(names, parents, levels)

    def __len__(self) -> int:
        return len(self._index)

    def chain(self, area_id: str) -> list[str]:
        """``area_id`` and its ancestors, most specific first."""
        chain: list[str] = []
        current: str | None = area_id
        while current is not None:
            chain.append(current)
            current = self._parents.get(current)
        return chain

    def lookup(self, text: str) -> AddressMatch | None:
        hits = self._hits(text)
        if not hits:
            return None
        candidates = {area for _, ids in hits for area in ids}
        scored = {area: self._support(area, hits) for area in candidates}
        best = max((len(names), LEVEL_DEPTH.get(self._levels.get(a, ""), 0)) for a, names in scored.items())
        winners = sorted(a for a, names in scored.items() if (len(names), LEVEL_DEPTH.get(self._levels.get(a, ""), 0)) == best)
        area = winners[0] if len(winners) == 1 else self._common_ancestor(winners)
        if area is None:
            return None
        return AddressMatch(area=area, level=self._levels[area], matched=scored[winners[0]], ambiguous=len(winners) > 1)

    def _hits(self, text: str) -> list[tuple[str, frozenset[str]]]:
        found: dict[str, frozenset[str]] = {}
        for start in range(len(text)):
            for length in self._lengths:
                ids = self._index.get(text[start : start + length])
                if ids is not None:
                    found[text[start : start + length]] = ids
        return list(found.items())

    def _support(self, area: str, hits: list[tuple[str, frozenset[str]]]) -> tuple[str, ...]:
        """The names in the address that this area explains (it, or one of its ancestors, is what they name)."""
        chain = set(self.chain(area))
        return tuple(name for name, ids in hits if ids & chain)

    def _common_ancestor(self, areas: list[str]) -> str | None:
        common = self.chain(areas[0])
        for area in areas[1:]:
            others = set(self.chain(area))
            common = [a for a in common if a in others]
        return common[0] if common else None


def district_short_names(name: str) -> list[str]:
    """What people call a district: 芝罘 for 芝罘区, 龙口 for 龙口市, 开发区/高新区 for the zones, 长岛 for Changdao."""
    if "经济技术开发区" in name:
        return ["开发区"]
    if "高新技术产业开发区" in name:
        return ["高新区"]
    if name.endswith("综合试验区"):
        return [name.removeprefix("烟台").removesuffix("综合试验区")]
    short = name.removesuffix("区").removesuffix("市")
    return [short] if short != name and len(short) >= 2 else []


def _areas(collection: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [f for f in collection["features"] if (f.get("properties") or {}).get("kind") == "area"]
