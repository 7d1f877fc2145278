"""The generated city's territory: districts > streets/towns > communities/villages > grids, their rectangles, and the
residential compounds and buildings inside the grids.

Modelled on Yantai (烟台): the real districts, county-level cities and zones, at roughly their real places and
relative sizes; everything below a district (names, boundaries, counts) is generated from a seed. Boundaries are a
treemap: each area's rectangle is cut into its children's rectangles in proportion to their size, so every child
lies exactly inside its parent and siblings share edges without gaps or overlaps (real boundaries are not open data;
a schematic map that nests exactly is what routing and its tests need).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from . import names

Rect = tuple[float, float, float, float]  # lon_min, lat_min, lon_max, lat_max (WGS84 degrees)
COORD_DECIMALS = 6  # ~0.1 m; cuts are rounded once, when made, so a file and memory hold the same numbers

TOTAL_STREETS = 150
TOTAL_COMMUNITIES = 1_500
TOTAL_GRIDS = 15_600


@dataclass(frozen=True)
class DistrictSpec:
    id: str
    name: str
    name_en: str
    rect: Rect
    streets: int  # streets and towns
    urban_streets: int  # of which street offices (街道); the rest are towns (镇)
    communities: int


# Real names and kinds; rectangles place them roughly where they are (the coast runs along the north).
DISTRICTS: tuple[DistrictSpec, ...] = (
    DistrictSpec("zhifu", "芝罘区", "Zhifu District", (121.30, 37.45, 121.45, 37.58), 12, 12, 150),
    DistrictSpec("fushan", "福山区", "Fushan District", (121.00, 37.25, 121.30, 37.50), 9, 5, 90),
    DistrictSpec("muping", "牟平区", "Muping District", (121.70, 37.10, 122.00, 37.50), 10, 3, 100),
    DistrictSpec("laishan", "莱山区", "Laishan District", (121.45, 37.35, 121.60, 37.52), 8, 5, 80),
    DistrictSpec("penglai", "蓬莱区", "Penglai District", (120.60, 37.50, 121.00, 37.85), 11, 3, 105),
    DistrictSpec("longkou", "龙口市", "Longkou City", (120.20, 37.45, 120.60, 37.75), 13, 5, 130),
    DistrictSpec("laiyang", "莱阳市", "Laiyang City", (120.40, 36.60, 120.90, 37.05), 16, 4, 160),
    DistrictSpec("laizhou", "莱州市", "Laizhou City", (119.70, 36.95, 120.20, 37.45), 17, 6, 175),
    DistrictSpec("zhaoyuan", "招远市", "Zhaoyuan City", (120.20, 37.05, 120.60, 37.45), 14, 5, 140),
    DistrictSpec("qixia", "栖霞市", "Qixia City", (120.60, 37.05, 121.00, 37.50), 15, 3, 150),
    DistrictSpec("haiyang", "海阳市", "Haiyang City", (120.90, 36.60, 121.40, 37.05), 14, 4, 140),
    DistrictSpec("kaifa", "烟台经济技术开发区", "Yantai Economic and Technological Development Zone",
                 (121.10, 37.50, 121.30, 37.62), 6, 4, 50),
    DistrictSpec("gaoxin", "烟台高新技术产业开发区", "Yantai Hi-tech Industrial Development Zone",
                 (121.60, 37.38, 121.70, 37.50), 3, 2, 20),
    DistrictSpec("changdao", "长岛综合试验区", "Changdao Comprehensive Pilot Zone", (120.60, 37.85, 120.90, 38.05), 2, 1, 10),
)


@dataclass(frozen=True)
class GenArea:
    id: str
    name: str
    name_en: str
    level: str
    parent: str | None
    rect: Rect
    rural: bool = False  # a town (镇) or a village (村): houses, not compounds


@dataclass(frozen=True)
class Building:
    name: str  # 阳光花园3号楼, or a village house 王家庄村12号
    grid: str
    lon: float
    lat: float
    compound: str | None  # the residential compound's name, None for a village house


@dataclass(frozen=True)
class Compound:
    name: str
    name_en: str
    community: str


@dataclass
class CityLayout:
    seed: int
    areas: list[GenArea] = field(default_factory=list)
    compounds: list[Compound] = field(default_factory=list)
    buildings: list[Building] = field(default_factory=list)


def largest_remainder(total: int, weights: list[float], minimum: int = 1) -> list[int]:
    """Split ``total`` into integers proportional to ``weights``, each at least ``minimum``, summing to ``total``."""
    spare = total - minimum * len(weights)
    if spare < 0:
        raise ValueError(f"cannot give {len(weights)} parts at least {minimum} out of {total}")
    scale = spare / sum(weights)
    exact = [w * scale for w in weights]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: spare - sum(counts)]:
        counts[i] += 1
    return [c + minimum for c in counts]


def split_rect(rect: Rect, weights: list[float]) -> list[Rect]:
    """Cut ``rect`` into ``len(weights)`` rectangles with areas proportional to ``weights`` (a binary treemap: the
    longer side is cut each time, so the pieces stay roughly square)."""
    if len(weights) == 1:
        return [rect]
    half = len(weights) // 2
    fraction = sum(weights[:half]) / sum(weights)
    x0, y0, x1, y1 = rect
    # A degree of longitude is shorter than one of latitude by cos(latitude).
    wide = (x1 - x0) * math.cos(math.radians((y0 + y1) / 2)) >= (y1 - y0)
    if wide:
        cut = round(x0 + (x1 - x0) * fraction, COORD_DECIMALS)
        first, second = (x0, y0, cut, y1), (cut, y0, x1, y1)
    else:
        cut = round(y0 + (y1 - y0) * fraction, COORD_DECIMALS)
        first, second = (x0, y0, x1, cut), (x0, cut, x1, y1)
    return split_rect(first, weights[:half]) + split_rect(second, weights[half:])


def generate_layout(seed: int) -> CityLayout:
    """The whole territory for ``seed``: same seed, same city (names, rectangles, buildings) on any machine."""
    rng = random.Random(seed)
    city = CityLayout(seed=seed)
    street_names: set[str] = set()
    for spec in DISTRICTS:
        city.areas.append(GenArea(spec.id, spec.name, spec.name_en, "district", None, spec.rect))
        _streets(rng, city, spec, street_names)
    grid_weights = [(2.0 if not a.rural else 1.0) * rng.uniform(0.7, 1.3) for a in city.areas if a.level == "community"]
    grid_counts = iter(largest_remainder(TOTAL_GRIDS, grid_weights, minimum=2))
    # Compound names are unique within a district, as the district's address register would have them.
    compound_names: dict[str, set[str]] = {spec.id: set() for spec in DISTRICTS}
    for community in [a for a in city.areas if a.level == "community"]:
        _grids(rng, city, community, next(grid_counts), compound_names[community.id.split("-")[0]])
    return city


def _streets(rng: random.Random, city: CityLayout, spec: DistrictSpec, taken: set[str]) -> None:
    rural = [i >= spec.urban_streets for i in range(spec.streets)]
    weights = [rng.uniform(0.6, 1.4) * (1.6 if r else 1.0) for r in rural]
    community_counts = largest_remainder(spec.communities, weights, minimum=2)
    rects = split_rect(spec.rect, [float(n) for n in community_counts])
    for index, (is_rural, count, rect) in enumerate(zip(rural, community_counts, rects), start=1):
        name, name_en = names.street_name(rng, taken, is_rural)
        street = GenArea(f"{spec.id}-{index:02d}", name, name_en, "street", spec.id, rect, rural=is_rural)
        city.areas.append(street)
        _communities(rng, city, street, count)


def _communities(rng: random.Random, city: CityLayout, street: GenArea, count: int) -> None:
    taken: set[str] = set()
    # A town has its seat (a residents' committee) and villages; a street office has only communities.
    villages = [street.rural and i > 0 for i in range(count)]
    rects = split_rect(street.rect, [rng.uniform(0.6, 1.4) for _ in range(count)])
    for index, (village, rect) in enumerate(zip(villages, rects), start=1):
        name, name_en = names.community_name(rng, taken, village)
        city.areas.append(GenArea(f"{street.id}-{index:02d}", name, name_en, "community", street.id, rect, rural=village))


def _grids(rng: random.Random, city: CityLayout, community: GenArea, count: int, compound_names: set[str]) -> None:
    rects = split_rect(community.rect, [rng.uniform(0.7, 1.3) for _ in range(count)])
    compounds = [] if community.rural else _compounds(rng, city, community, max(1, min(3, count // 4)), compound_names)
    numbers = dict.fromkeys((c.name for c in compounds), 0)
    houses = 0
    for index, rect in enumerate(rects, start=1):
        grid = GenArea(f"{community.id}-{index:02d}", f"{community.name}第{index}网格",
                       f"{community.name_en} Grid {index}", "grid", community.id, rect, rural=community.rural)
        city.areas.append(grid)
        compound = compounds[(index - 1) % len(compounds)] if compounds else None
        for _ in range(rng.randint(3, 6)):
            lon, lat = _inside(rng, rect)
            if compound is None:
                houses += 1
                city.buildings.append(Building(f"{community.name}{houses}号", grid.id, lon, lat, None))
            else:
                numbers[compound.name] += 1
                name = f"{compound.name}{numbers[compound.name]}号楼"
                city.buildings.append(Building(name, grid.id, lon, lat, compound.name))


def _compounds(rng: random.Random, city: CityLayout, community: GenArea, count: int, taken: set[str]) -> list[Compound]:
    made = [Compound(*names.compound_name(rng, taken), community=community.id) for _ in range(count)]
    city.compounds += made
    return made


def _inside(rng: random.Random, rect: Rect) -> tuple[float, float]:
    """A point well inside ``rect`` (never on an edge, where two grids would both claim it)."""
    x0, y0, x1, y1 = rect
    return (round(rng.uniform(x0 + 0.1 * (x1 - x0), x1 - 0.1 * (x1 - x0)), COORD_DECIMALS),
            round(rng.uniform(y0 + 0.1 * (y1 - y0), y1 - 0.1 * (y1 - y0)), COORD_DECIMALS))
