"""The city map: a polygon per area, grids tiling their parents, and the point -> areas lookup."""

from __future__ import annotations

import random

from shapely.geometry import shape
from shapely.ops import unary_union

from domain.catalogue import load_catalogue
from domain.catalogue.geo import CITY_MAP_V1_PATH, DEFAULT_BOX, AreaLocator, features_of, generate_city_map, read_city_map
from tools.city_map import dump

CATALOGUE = load_catalogue()


def test_the_packaged_map_is_what_the_seeded_generator_writes():
    assert CITY_MAP_V1_PATH.read_text(encoding="utf-8") == dump(generate_city_map(CATALOGUE))
    assert generate_city_map(CATALOGUE, seed=7) != generate_city_map(CATALOGUE)


def test_every_area_has_one_polygon_and_the_grids_tile_their_parents():
    city_map = read_city_map()
    ids = [f["properties"]["id"] for f in city_map["features"]]
    assert sorted(ids) == sorted(a.id for a in CATALOGUE.areas) and len(features_of(city_map, "grid")) == 16
    shapes = {f["properties"]["id"]: shape(f["geometry"]) for f in city_map["features"]}
    for f in city_map["features"]:
        kids = [shapes[k["properties"]["id"]] for k in city_map["features"] if k["properties"]["parent"] == f["id"]]
        if kids:
            assert unary_union(kids).symmetric_difference(shapes[f["id"]]).area < 1e-9, f["id"]
            assert sum(k.area for k in kids) - shapes[f["id"]].area < 1e-9  # no overlaps
    grids = [shapes[f["id"]] for f in features_of(city_map, "grid")]
    assert abs(unary_union(grids).area - (DEFAULT_BOX[2] - DEFAULT_BOX[0]) * (DEFAULT_BOX[3] - DEFAULT_BOX[1])) < 1e-9


def test_a_point_is_located_in_its_grid_and_the_grid_s_ancestors():
    city_map = read_city_map()
    locator = AreaLocator(city_map)
    rng = random.Random(3)
    for _ in range(200):
        lon, lat = 120 + rng.random(), 30 + rng.random()
        found = locator.locate(lon, lat)
        inside = [f["id"] for f in features_of(city_map, "grid") if shape(f["geometry"]).contains(_point(lon, lat))]
        assert found["grid"] == inside[0]
        chain = {a.level: a.id for a in CATALOGUE.area_chain({"grid": found["grid"]})}
        assert found == chain
    assert locator.locate(0.0, 0.0) == {}


def test_a_map_without_grids_answers_with_the_smallest_area_it_has():
    city_map = read_city_map()
    streets_only = {**city_map, "features": [f for f in city_map["features"] if f["properties"]["level"] in ("street", "district")]}
    found = AreaLocator(streets_only).locate(120.5, 30.5)
    assert set(found) == {"street", "district"}


def _point(lon, lat):
    from shapely.geometry import Point
    return Point(lon, lat)
