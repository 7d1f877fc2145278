"""A running service's metrics endpoint on the real broker: while a batch is held up its lag shows the records
still to handle, and once they are handled it drops to 0; `cityops status` reads the same numbers."""

from __future__ import annotations

import asyncio
import os
import threading
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from contracts import codec
from contracts import events as ev
from contracts.envelope import Envelope
from contracts.topics import TopicSpec
from services.common.app import build_service_app
from services.common.kafka import ensure_topics, kafka_access
from services.common.metrics import STAGES
from services.common.pipeline import HandlerSpec
from services.common.settings import ServiceSettings
from tests.harness.ports import free_port
from tools.bench import stages
from tools.status_cli import fetch_metrics, hub_status, pid_alive, sums, write_process_table

pytestmark = pytest.mark.kafka



async def _scrape_until(url: str, wanted: Any, timeout: float = 30.0) -> dict[str, float]:
    """The endpoint's sums once `wanted(sums)` holds (or the last ones seen, to fail with)."""
    deadline = asyncio.get_running_loop().time() + timeout
    seen: dict[str, float] = {}
    while asyncio.get_running_loop().time() < deadline:
        text = await asyncio.to_thread(fetch_metrics, url)
        seen = sums(text) if text else {}
        if wanted(seen):
            return seen
        await asyncio.sleep(0.2)
    return seen


async def test_a_running_services_endpoint_reports_its_lag(kafka_bootstrap, unique, tmp_path):
    topic = f"test.metrics.{unique}"
    await ensure_topics(kafka_bootstrap, [TopicSpec(topic, topic, (), partitions=1)])
    release = threading.Event()

    def hold_the_first(ctx: Any, envelope: Envelope[Any]) -> list[Any]:
        if envelope.ticket_id == "T-0":
            release.wait(timeout=60)  # a slow store or a stuck dependency, as the consumer sees it
        return []

    producer = AIOKafkaProducer(**kafka_access(kafka_bootstrap).options, acks="all")
    await producer.start()
    try:
        for i in range(5):
            rec = codec.encode(Envelope.origin(ev.TicketSubmitted(channel="phone", text=f"complaint {i}",
                                                                  submitted_at=datetime.now(UTC)), source="/test", ticket_id=f"T-{i}"))
            await producer.send_and_wait(topic, rec.value, key=rec.key, headers=rec.headers)
    finally:
        await producer.stop()

    port = free_port()
    # The held batch waits in a worker thread, as every batch on PostgreSQL and every larger one does. A small batch
    # on SQLite is applied on the event loop (apply_on_loop_max_records): held there, it would hold this test's own
    # scrapes, and the consumer's heartbeats, until the hold timed out.
    settings = ServiceSettings(kafka_bootstrap=kafka_bootstrap, consumer_group=f"metrics-{unique}", batch_timeout_ms=50,
                               db_url=f"sqlite:///{tmp_path / 'toy.db'}", log_level="WARNING", metrics_port=port,
                               apply_on_loop_max_records=0)
    spec = HandlerSpec(topics=[topic], event_types=[ev.TicketSubmitted.event_type], deps=None, handle=hold_the_first)
    app = build_service_app(settings, spec=spec)
    url = f"http://127.0.0.1:{port}/metrics"
    await app.start()
    try:
        held = await _scrape_until(url, lambda s: s.get("cityops_consumer_lag", 0) > 0)
        assert held.get("cityops_consumer_lag", 0) >= 1, held  # the held batch's records are still to do
        assert held.get("cityops_records_applied_total", 0) == 0
        release.set()
        done = await _scrape_until(url, lambda s: s.get("cityops_records_applied_total") == 5 and s.get("cityops_consumer_lag") == 0)
        assert done.get("cityops_records_applied_total") == 5 and done.get("cityops_consumer_lag") == 0, done
        assert done.get("cityops_outbox_records") == 0 and done.get("cityops_parked_events") == 0
        # Each batch passed every stage, the offset commit included (made in the subscriber, after the batch;
        # the last one's may land just after this scrape).
        by_stage = stages.parse(await asyncio.to_thread(fetch_metrics, url) or "")
        batches = {stage: sum(h["count"] for (_, s), h in by_stage.items() if s == stage) for stage in STAGES}
        assert all(n >= 1 for n in batches.values()) and batches["commit"] <= batches["apply"], batches

        write_process_table(tmp_path, kafka_bootstrap, {"toy": (os.getpid(), port)})
        [toy] = await asyncio.to_thread(hub_status, {"processes": {"toy": {"pid": os.getpid(), "metrics": url}}},
                                        fetch_metrics, pid_alive)
        assert toy.up and toy.lag == 0 and toy.applied == 5 and toy.dead_lettered == 0
    finally:
        release.set()
        await app.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(url, timeout=2)  # the endpoint stops with the service
