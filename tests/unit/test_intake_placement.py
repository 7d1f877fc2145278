"""A complaint given only as a point gets the areas it lies in from the city map (services/intake/domain.placed)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from contracts.topics import AUDIT
from domain.catalogue import load_catalogue
from domain.catalogue.geo import default_locator
from services.common.store import create_tables, make_engine
from services.intake.api import build_api
from services.intake.app import store_tables
from services.intake.domain import LocationIn, placed
from tests.harness.auth import bearer, verifier

CATALOGUE = load_catalogue()
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


def test_areas_the_caller_names_win_over_the_pin():
    given = LocationIn(grid="grid-west-1-a-1", lat=30.2, lon=120.8)
    assert placed(given, default_locator().locate, CATALOGUE) == given
    street_only = LocationIn(street="street-east-1", lat=30.2, lon=120.8)
    assert placed(street_only, default_locator().locate, CATALOGUE) == street_only


def test_a_point_off_the_map_or_a_map_of_another_city_leaves_the_location_as_it_was():
    far = LocationIn(lat=0.0, lon=0.0)
    assert placed(far, default_locator().locate, CATALOGUE) == far
    pin = LocationIn(lat=30.2, lon=120.8)
    assert placed(pin, lambda lon, lat: {"grid": "grid-elsewhere", "district": "district-elsewhere"}, CATALOGUE) == pin
