"""Placing tickets by coordinates in both shipped cities (domain/city/places.py): a point inside a known grid is
placed in that grid and a grid-level matter there routes to that grid's unit; the demo feed's pins land in grids."""

from __future__ import annotations

import random
from typing import Any

import pytest
import shapely
from shapely.geometry import shape

from domain.catalogue import catalogue_path_for_city, load_catalogue
from domain.city.places import CityPlaces, city_map_for, city_places, grid_features
from tools.hub import Hub, city_grids, random_pin

CITIES = ("demo", "yantai")


@pytest.fixture(scope="module", params=CITIES)
def city(request: Any) -> tuple[str, CityPlaces, list[dict[str, Any]]]:
    catalogue = load_catalogue(catalogue_path_for_city(request.param))
    collection = city_map_for(request.param)
    return request.param, city_places(request.param, catalogue, collection), grid_features(collection)


def _inside(feature: dict[str, Any]) -> tuple[float, float]:
    point = shape(feature["geometry"]).representative_point()
    return point.x, point.y


def test_every_grid_of_the_map_is_a_grid_of_the_catalogue(city):
    _, places, grids = city
    ids = {f["properties"]["id"] for f in grids}
    assert ids == {a.id for a in places.catalogue.areas if a.level == "grid"}
    assert len(places.locator) == len(ids)


def test_a_point_in_a_known_grid_is_placed_in_that_grid_and_its_chain(city):
    _, places, grids = city
    for feature in random.Random(14).sample(grids, min(25, len(grids))):
        lon, lat = _inside(feature)
        place = places.place({"lat": lat, "lon": lon})
        grid = feature["properties"]["id"]
        chain = {a.level: a.id for a in places.catalogue.area_chain({"grid": grid})}
        assert (place.basis, place.grid) == ("coordinates", grid)
        assert (place.community, place.street, place.district) == (chain["community"], chain["street"], chain["district"])


def test_a_grid_level_matter_at_a_point_goes_to_that_grid_s_area_unit(city):
    _, places, grids = city
    catalogue = places.catalogue
    by_level = {c.lead_by_area: c.code for c in catalogue.categories if c.lead_by_area}
    feature = grids[len(grids) // 2]
    lon, lat = _inside(feature)
    place = places.place({"lat": lat, "lon": lon})
    for level, code in by_level.items():
        expected = {"grid": place.grid, "community": place.community, "street": place.street}.get(level, place.district)
        assert catalogue.route(code, place).lead == expected, (code, level)


def test_a_point_outside_the_city_is_nowhere_but_its_address_still_places_it(city):
    _, places, _ = city
    assert places.place({"lat": -45.0, "lon": -170.0}).most_specific is None
    community = next(a for a in places.catalogue.areas if a.level == "community")
    street = places.catalogue.area(community.parent)
    place = places.place({"lat": -45.0, "lon": -170.0, "address": f"{street.name}{community.name}5号楼"})
    assert (place.basis, place.community) == ("address", community.id)


def test_the_demo_feed_s_pins_land_inside_the_city_s_grids(city):
    name, places, _ = city
    grids = city_grids(name)
    rng = random.Random(7)
    for _ in range(50):
        pin = random_pin(grids, rng)
        assert places.place(pin).grid is not None
        assert any(g.contains(shapely.Point(pin["lon"], pin["lat"])) for g in grids)


def test_the_hub_passes_its_city_to_every_child(tmp_path):
    assert Hub(kafka_port=1, http_port=2, state_dir=tmp_path).env()["CITYOPS_CITY"] == "demo"
    assert Hub(kafka_port=1, http_port=2, state_dir=tmp_path, city="yantai").env()["CITYOPS_CITY"] == "yantai"


def test_cityops_up_refuses_an_unknown_city_naming_the_option_and_the_known_ones(tmp_path):
    import typer
    from typer.testing import CliRunner

    from tools.hub import up

    cli = typer.Typer()
    cli.command()(up)
    result = CliRunner().invoke(cli, ["--city", "atlantis", "--state-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "--city" in result.output and "atlantis" in result.output and "demo, yantai" in result.output
    assert not (tmp_path / "kafka").exists()  # refused before anything started
