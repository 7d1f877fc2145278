"""A complaint given as a point or an address gets the areas of the most precise place known from the city map
(services/intake/domain.placed over domain/city/places.CityPlaces)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from contracts.topics import AUDIT
from domain.catalogue import catalogue_path_for_city, load_catalogue
from domain.catalogue.geo import default_locator
from domain.city.places import city_places
from services.common.store import create_tables, make_engine
from services.intake.api import build_api
from services.intake.app import store_tables
from services.intake.domain import LocationIn, placed
from tests.harness.auth import bearer, verifier

CATALOGUE = load_catalogue()
CATALOGUE_PATH_YANTAI = catalogue_path_for_city("yantai")
PLACES = city_places("demo", CATALOGUE)
NOW = datetime(2026, 5, 6, 9, 0, tzinfo=UTC)


@pytest.fixture
def api(tmp_path):
    published: list = []

    async def publish(topic, envelope):
        if topic != AUDIT.name:
            published.append(envelope)

    engine = make_engine(f"sqlite:///{tmp_path / 'intake.db'}")
    create_tables(engine, store_tables())
    client = TestClient(build_api(publish=publish, engine=engine, catalogue=CATALOGUE, now=lambda: NOW,
                                  verifier=verifier()), headers=bearer("operator", "op-7"))
    return client, published


def test_a_pin_alone_is_placed_in_its_grid_and_the_grid_s_ancestors(api):
    client, published = api
    answer = client.post("/tickets", json={"text": "路灯坏了", "location": {"lat": 30.2, "lon": 120.8}})
    assert answer.status_code == 202, answer.text
    location = published[0].data.location
    expected = default_locator().locate(120.8, 30.2)
    assert expected and location.grid == expected["grid"] and location.district == expected["district"]
    assert {a.level: a.id for a in CATALOGUE.area_chain({"grid": location.grid})} == \
        {"grid": location.grid, "community": location.community, "street": location.street, "district": location.district}
    assert (location.lat, location.lon) == (30.2, 120.8)


def test_an_open311_lat_long_is_placed_too(api):
    client, published = api
    code = client.get("/open311/v2/services.json").json()[0]["service_code"]
    answer = client.post("/open311/v2/requests.json", data={"service_code": code, "description": "pothole",
                                                             "lat": "30.9", "long": "120.1"})
    assert answer.status_code in (200, 201), answer.text
    assert published[0].data.location.grid == default_locator().locate(120.1, 30.9)["grid"]


def test_areas_the_caller_names_win_over_a_pin_off_their_chain():
    given = LocationIn(grid="grid-west-1-a-1", lat=30.2, lon=120.8)
    assert placed(given, PLACES.place) == given
    pin_grid = default_locator().locate(120.8, 30.2)
    other_street = next(a.id for a in CATALOGUE.areas if a.level == "street" and a.id != pin_grid["street"])
    elsewhere = LocationIn(street=other_street, lat=30.2, lon=120.8)
    assert placed(elsewhere, PLACES.place) == elsewhere


def test_a_pin_inside_the_street_the_caller_names_narrows_it_to_the_grid():
    pin_grid = default_locator().locate(120.8, 30.2)
    narrowed = placed(LocationIn(street=pin_grid["street"], lat=30.2, lon=120.8), PLACES.place)
    assert (narrowed.grid, narrowed.street) == (pin_grid["grid"], pin_grid["street"])


def test_an_address_alone_is_placed_by_the_gazetteer():
    community = next(a for a in CATALOGUE.areas if a.level == "community")
    found = placed(LocationIn(address=f"{community.name}3号楼门口"), PLACES.place)
    assert (found.community, found.grid) == (community.id, None)
    assert found.street == community.parent


def test_a_point_off_the_map_or_a_map_of_another_city_leaves_the_location_as_it_was():
    far = LocationIn(lat=0.0, lon=0.0)
    assert placed(far, PLACES.place) == far
    pin = LocationIn(lat=30.2, lon=120.8)
    yantai_ids_only = city_places("demo", load_catalogue(CATALOGUE_PATH_YANTAI))
    assert placed(pin, yantai_ids_only.place) == pin  # the small map's grids are not areas of the large catalogue


def test_a_point_off_the_map_with_a_known_address_is_placed_by_the_address():
    community = next(a for a in CATALOGUE.areas if a.level == "community")
    found = placed(LocationIn(lat=0.0, lon=0.0, address=community.name), PLACES.place)
    assert found.community == community.id


@pytest.mark.parametrize(("bad", "field"), [({"lat": 91, "lon": 120.5}, "lat"), ({"lat": 30.5, "lon": -181}, "lon"),
                                            ({"lat": "NaN", "lon": 120.5}, "lat"), ({"lat": 30.5, "lon": "Infinity"}, "lon")])
def test_bad_coordinates_are_refused_naming_the_field(api, bad, field):
    client, published = api
    answer = client.post("/tickets", json={"text": "路灯坏了", "location": bad})
    assert answer.status_code == 422, answer.text
    assert [e["loc"][-1] for e in answer.json()["detail"]] == [field]
    assert not published


def test_a_machine_channel_s_pin_is_placed_as_at_the_http_door():
    import json

    from services.intake.domain import channel_record_to_event

    pin_grid = default_locator().locate(120.8, 30.2)
    body = json.dumps({"text": "路灯坏了", "location": {"lat": 30.2, "lon": 120.8}}).encode()
    placed_event = channel_record_to_event(body, b"msg-1", "cityops.channel.v1", 0, 1, NOW, CATALOGUE, PLACES.place)
    assert placed_event.data.location.grid == pin_grid["grid"]
    unplaced = channel_record_to_event(body, b"msg-1", "cityops.channel.v1", 0, 1, NOW, CATALOGUE)
    assert unplaced.data.location.grid is None
