"""What-if on the real broker: a changed catalogue names exactly the tickets whose routing changed, and
nothing is published (every topic keeps its end offsets, no topic is created)."""

from __future__ import annotations

import copy
import dataclasses
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from contracts import events as ev
from contracts.topics import INTAKE, topic_for_event
from domain.catalogue import parse_catalogue, read_catalogue_data
from services.common.kafka import kafka_access
from services.common.store import make_engine
from services.projections.logsource import KafkaLog
from services.projections.settings import projected_specs
from services.projections.whatif import WHATIF_TOPICS, what_if
from tools.importers.publish import ImportReport, publish
from tools.importers.synthetic import SyntheticHistory

pytestmark = [pytest.mark.kafka]


async def _topics_and_ends(bootstrap: str, prefix: str) -> dict[tuple[str, int], int]:
    admin = AIOKafkaAdminClient(**kafka_access(bootstrap).options)
    await admin.start()
    try:
        names = sorted(t for t in await admin.list_topics() if t.startswith(prefix))
    finally:
        await admin.close()
    log = KafkaLog(bootstrap, names)
    try:
        _, end = await log.bounds()
    finally:
        await log.close()
    return end


async def test_a_changed_catalogue_over_the_log_moves_exactly_the_affected_tickets_and_publishes_nothing(kafka_bootstrap, tmp_path):
    prefix = f"whatif{uuid.uuid4().hex[:8]}."
    history = SyntheticHistory(1500, seed=77).envelopes()
    # The whole log, intake's topic included; the what-if reads the registrations, not intake's records (issue 11).
    specs = [dataclasses.replace(s, name=prefix + s.name) for s in (INTAKE, *projected_specs())]
    await publish(kafka_bootstrap, specs, history, ImportReport("synthetic", "workflow"),
                  topic_for=lambda e: prefix + topic_for_event(e.type))

    data = copy.deepcopy(read_catalogue_data())
    for category in data["categories"]:
        if category["code"] == "public-security.social-noise":  # a department's whole category moves
            category["lead"] = "environment"
        if category["code"] == "community.square-dance":  # an area matter goes one level up
            category["lead_by_area"], category["level"] = "street", "street"
    trial = parse_catalogue(data)

    first: dict[str, ev.TicketClassified] = {}
    for env in sorted(history, key=lambda e: (e.time, e.id)):
        if isinstance(env.data, ev.TicketClassified) and env.data.method != "reroute":
            first.setdefault(env.ticket_id, env.data)
    expected = {t for t, c in first.items() if c.category == "public-security.social-noise"} | \
               {t for t, c in first.items() if c.category == "community.square-dance" and c.ticket.location.grid}
    assert len(expected) > 20

    before = await _topics_and_ends(kafka_bootstrap, prefix)
    scratch = make_engine(f"sqlite:///{tmp_path / 'whatif.db'}")
    report = await what_if(KafkaLog(kafka_bootstrap, [prefix + t for t in WHATIF_TOPICS]), trial, scratch=scratch)
    assert {d.ticket_id for d in report.changed} == expected
    assert all(d.lead_after == "environment" for d in report.changed if d.category_before == "public-security.social-noise")
    assert all(d.lead_after.startswith("street-") for d in report.changed if d.category_before == "community.square-dance")
    assert await _topics_and_ends(kafka_bootstrap, prefix) == before
