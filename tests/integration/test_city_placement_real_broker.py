"""A coordinate-only complaint on the real broker, in either city (CITYOPS_CITY): intake's app, built for the city,
places the pin in the grid it lies in, and the record on cityops.intake carries that grid's whole chain, so a
community matter routes to the community of that grid."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from fastapi.testclient import TestClient
from shapely.geometry import shape

from contracts import codec
from contracts.topics import AUDIT, COMMANDS, INTAKE, RESIDENTS, TICKETS, TRIAGE
from domain.catalogue import load_catalogue
from domain.city.places import city_map_for, grid_features
from services.common.kafka import ensure_topics, kafka_access
from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from tests.harness.auth import bearer, verifier

pytestmark = pytest.mark.kafka


async def _submitted(bootstrap: str, ticket_id: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    consumer = AIOKafkaConsumer(INTAKE.name, **kafka_access(bootstrap).options, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for record in (r for rs in batch.values() for r in rs):
                if record.key == ticket_id.encode():
                    return codec.decode(record.key, record.value, record.headers)
        raise AssertionError(f"{ticket_id} not on {INTAKE.name} within {timeout}s")
    finally:
        await consumer.stop()


@pytest.mark.parametrize("city", ["demo", "yantai"])
def test_a_pin_alone_is_placed_in_the_grid_it_lies_in(kafka_bootstrap, unique, tmp_path, monkeypatch, city):
    asyncio.run(ensure_topics(kafka_bootstrap, [INTAKE, COMMANDS, RESIDENTS, TICKETS, TRIAGE, AUDIT]))
    monkeypatch.setenv("CITYOPS_CITY", city)  # as `cityops up --city` sets it for every child
    settings = IntakeSettings(kafka_bootstrap=kafka_bootstrap, state_dir=tmp_path, consumer_group=f"intake-{unique}")
    catalogue = load_catalogue(settings.catalogue_file())
    grids = grid_features(city_map_for(city))
    feature = grids[len(grids) // 3]
    pin = shape(feature["geometry"]).representative_point()
    with TestClient(create_app(settings, verifier=verifier())) as client:
        answer = client.post("/tickets", json={"text": f"路灯坏了 {unique}", "location": {"lat": pin.y, "lon": pin.x}},
                             headers=bearer("app", f"app-{unique}"))
        off_map = client.post("/tickets", json={"text": f"路灯坏了 {unique}", "location": {"lat": -45.0, "lon": -170.0}},
                              headers=bearer("app", f"app-{unique}"))
    assert answer.status_code == 202, answer.text
    assert off_map.status_code == 202, off_map.text
    location = asyncio.run(_submitted(kafka_bootstrap, answer.json()["ticket_id"])).data.location
    grid = feature["properties"]["id"]
    chain = {a.level: a.id for a in catalogue.area_chain({"grid": grid})}
    assert (location.grid, location.community, location.street, location.district) == \
        (grid, chain["community"], chain["street"], chain["district"])
    assert (location.lat, location.lon) == (pin.y, pin.x)
    community_matter = next(c.code for c in catalogue.categories if c.lead_by_area == "community")
    assert catalogue.route(community_matter, location).lead == chain["community"]
    # outside the city: no area is made up; triage sends it to the hotline to be placed by hand ("unlocated")
    nowhere = asyncio.run(_submitted(kafka_bootstrap, off_map.json()["ticket_id"])).data.location
    assert (nowhere.grid, nowhere.community, nowhere.street, nowhere.district) == (None, None, None, None)
    decision = catalogue.route(community_matter, nowhere)
    assert (decision.lead, decision.basis) == (catalogue.routing.unlocated_fallback, "unlocated")
