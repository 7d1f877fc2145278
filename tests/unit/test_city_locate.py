"""Where is it? Coordinates -> grid (point in polygon), address -> area (gazetteer), and the most precise place known."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import shapely
from typer.testing import CliRunner

from domain.catalogue import Catalogue, load_catalogue
from domain.city import CITY_CATALOGUE_PATH, Gazetteer, GridLocator, load_city_map, most_precise_place
from domain.city.locate import district_short_names
from tools.city_cli import app as city_app


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("city-cache"))


@pytest.fixture(scope="module")
def city_map(cache_dir: Path) -> dict[str, Any]:
    return load_city_map(cache_dir)


@pytest.fixture(scope="module")
def locator(city_map: dict[str, Any]) -> GridLocator:
    return GridLocator.from_geojson(city_map)


@pytest.fixture(scope="module")
def gazetteer(city_map: dict[str, Any]) -> Gazetteer:
    return Gazetteer.from_geojson(city_map)


@pytest.fixture(scope="module")
def big() -> Catalogue:
    return load_catalogue(CITY_CATALOGUE_PATH)


def _grids(city_map: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in city_map["features"] if f["properties"].get("level") == "grid"]


def _buildings(city_map: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in city_map["features"] if f["properties"].get("kind") == "building"]


def test_a_grids_representative_point_maps_back_to_it(city_map: dict[str, Any], locator: GridLocator) -> None:
    grids = _grids(city_map)
    assert len(locator) == len(grids) >= 15_000
    sample = random.Random(14).sample(grids, 500)
    points = []
    for feature in sample:
        point = shapely.geometry.shape(feature["geometry"]).representative_point()
        points.append((point.x, point.y))
        assert locator.locate(point.x, point.y) == feature["properties"]["id"]
    assert locator.locate_many(points) == [f["properties"]["id"] for f in sample]


def test_buildings_are_located_in_their_grid_and_the_sea_nowhere(city_map: dict[str, Any], locator: GridLocator) -> None:
    for feature in random.Random(15).sample(_buildings(city_map), 300):
        lon, lat = feature["geometry"]["coordinates"]
        assert locator.locate(lon, lat) == feature["properties"]["grid"]
    assert locator.locate(122.5, 38.5) is None  # the Bohai Sea
    assert locator.locate_many([(122.5, 38.5), (0.0, 0.0)]) == [None, None]
    assert locator.locate_many([]) == []


def test_a_point_on_a_shared_edge_goes_to_one_grid_always(city_map: dict[str, Any], locator: GridLocator) -> None:
    first = _grids(city_map)[0]
    x0, y0, x1, y1 = shapely.geometry.shape(first["geometry"]).bounds
    on_edge = (x1, (y0 + y1) / 2)
    assert locator.locate(*on_edge) is not None
    assert locator.locate(*on_edge) == locator.locate_many([on_edge])[0]


def test_a_building_name_with_its_district_resolves_to_its_grid(city_map: dict[str, Any], gazetteer: Gazetteer, big: Catalogue) -> None:
    for feature in random.Random(16).sample([b for b in _buildings(city_map) if b["properties"]["compound"]], 200):
        grid = feature["properties"]["grid"]
        district, street, *_ = [a.name for a in reversed(big.area_chain({"grid": grid}))]
        match = gazetteer.lookup(f"山东省烟台市{district}{street}{feature['properties']['name']}2单元501室")
        assert match is not None and match.area == grid and not match.ambiguous, (feature, match)


def test_compounds_communities_streets_and_short_district_names(gazetteer: Gazetteer, big: Catalogue, city_map: dict[str, Any]) -> None:
    compound = next(f["properties"] for f in city_map["features"] if f["properties"].get("kind") == "compound")
    street = big.area(big.area(compound["community"]).parent or "")
    match = gazetteer.lookup(f"{street.name}{compound['name']}门口")
    assert match is not None and (match.area, match.level) == (compound["community"], "community")
    street_only = gazetteer.lookup(f"{street.name}附近")
    assert street_only is not None and (street_only.area, street_only.level) == (street.id, "street")
    assert district_short_names("芝罘区") == ["芝罘"] and district_short_names("烟台经济技术开发区") == ["开发区"]
    short = gazetteer.lookup("龙口这边路灯坏了")
    assert short is not None and (short.area, short.level) == ("longkou", "district")
    assert gazetteer.lookup("no place I know") is None


def test_an_ambiguous_name_falls_back_to_what_its_candidates_share() -> None:
    parents = {"d": None, "s": "d", "c1": "s", "c2": "s", "d2": None, "s2": "d2", "c3": "s2"}
    levels = {"d": "district", "s": "street", "c1": "community", "c2": "community", "d2": "district", "s2": "street",
              "c3": "community"}
    gazetteer = Gazetteer([("阳光社区", "c1"), ("阳光社区", "c2"), ("海景社区", "c3"), ("海景社区", "c1")], parents, levels)
    both_in_s = gazetteer.lookup("阳光社区")
    assert both_in_s is not None and (both_in_s.area, both_in_s.ambiguous) == ("s", True)
    assert gazetteer.lookup("海景社区") is None  # c1 and c3 share nothing: better no answer than a wrong one


def test_the_most_precise_place_prefers_deeper_and_more_trusted_sources(
    big: Catalogue, locator: GridLocator, gazetteer: Gazetteer, city_map: dict[str, Any]
) -> None:
    building = next(b for b in _buildings(city_map) if b["properties"]["grid"].startswith("laishan-"))
    lon, lat = building["geometry"]["coordinates"]
    grid = building["properties"]["grid"]
    chain = {a.level: a.id for a in big.area_chain({"grid": grid})}

    by_point = most_precise_place(big, {"lon": lon, "lat": lat, "district": "zhifu"}, locator, gazetteer)
    assert (by_point.grid, by_point.street, by_point.district, by_point.basis) == (grid, chain["street"], "laishan", "coordinates")
    assert by_point.conflicts == ("reported-area",)  # the caller said 芝罘, the pin is in 莱山

    by_street = most_precise_place(big, {"street": chain["street"], "grid": "no-such-grid"}, locator, gazetteer)
    assert (by_street.street, by_street.grid, by_street.basis) == (chain["street"], None, "reported-area")

    other_grid = next(a.id for a in big.areas if a.level == "grid" and a.id != grid)
    chosen = most_precise_place(big, {"grid": other_grid, "lon": lon, "lat": lat}, locator, gazetteer)
    assert (chosen.grid, chosen.basis, chosen.conflicts) == (other_grid, "grid-id", ("coordinates",))

    assert most_precise_place(big, None, locator, gazetteer).most_specific is None
    # The place routes as it is: a branch matter goes to the branch of the district the pin is in.
    assert big.route("housing.lift-broken", by_point).lead == "housing-laishan"


def test_cityops_city_where_answers_as_json(cache_dir: Path, city_map: dict[str, Any]) -> None:
    building = next(b for b in _buildings(city_map) if b["properties"]["grid"].startswith("haiyang-"))
    lon, lat = building["geometry"]["coordinates"]
    args = ["where", "--cache-dir", str(cache_dir), "--lon", str(lon), "--lat", str(lat)]
    result = CliRunner().invoke(city_app, args)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert (answer["grid"], answer["district"], answer["basis"]) == (building["properties"]["grid"], "haiyang", "coordinates")
    half = CliRunner().invoke(city_app, ["where", "--cache-dir", str(cache_dir), "--lon", "121.4"])
    assert half.exit_code == 2 and "--lon/--lat" in half.output
