"""A service's metrics after the batches it handled (services/common/metrics.py), through EventPipeline.handle_records
and the capturing broker: lag per partition, batch latency, applied / dead-lettered / parked, parked rows, outbox
depth, sla's timers due; and the endpoint a process serves them on."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts import codec
from contracts import events as ev
from contracts.envelope import Envelope
from services.common.metrics import ServiceMetrics, serve_metrics
from services.common.pipeline import Emit, EventPipeline, HandlerSpec, NotYet
from services.common.settings import ServiceSettings
from services.common.store import create_tables, make_engine
from tests.harness.pipeline import CapturingBroker, Clock, Record, record_of, start
from tests.harness.ports import free_port

SOURCE, OUTPUT = "test.metrics.in", "test.metrics.out"


def _toy(ctx: Any, envelope: Envelope[Any]) -> Any:
    """Registers a submission; 'explode' is a bug (dead-lettered), ticket T-WAIT waits for something (parked)."""
    if "explode" in envelope.data.text:
        raise ValueError("cannot handle this one")
    if envelope.ticket_id == "T-WAIT":
        raise NotYet("waiting for its registration")
    yield Emit(OUTPUT, envelope.caused(ev.TicketRegistered(ticket=ev.RegisteredTicket(
        channel="phone", text=envelope.data.text, caller=ev.CallerRef(anonymous=True), location=envelope.data.location,
        urgency=envelope.data.urgency, submitted_at=envelope.data.submitted_at)), source=ctx.source))


def _submitted(ticket_id: str, text: str = "路灯坏了", partition: int = 0, offset: int = 0) -> Record:
    envelope = Envelope.origin(ev.TicketSubmitted(channel="phone", text=text, submitted_at=datetime(2026, 5, 6, tzinfo=UTC)),
                               source="/test", ticket_id=ticket_id)
    rec = codec.encode(envelope)
    return Record(SOURCE, partition, offset, rec.key, rec.value, list(rec.headers))


def _pipeline(tmp_path: Path) -> tuple[EventPipeline[Any], CapturingBroker]:
    engine = make_engine(f"sqlite:///{tmp_path / 'toy.db'}")
    create_tables(engine, [])
    spec = HandlerSpec(topics=[SOURCE], event_types=[ev.TicketSubmitted.event_type], deps=None, handle=_toy)
    pipeline = EventPipeline(name="toy", settings=ServiceSettings(), engine=engine, spec=spec)
    broker = CapturingBroker()
    pipeline.broker = broker  # type: ignore[assignment]  # only its publish is called
    return pipeline, broker


def value(metrics: ServiceMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"consumer": "toy", **labels})


def _batch() -> list[Record]:
    """Partition 0: three good, one bug, one undecodable; partition 1: one good, one that waits."""
    broken = _submitted("T-BAD", offset=4)
    return [_submitted("T-1", offset=0), _submitted("T-2", offset=1), _submitted("T-3", "please explode", offset=2),
            _submitted("T-4", offset=3), Record(SOURCE, 0, 4, broken.key, b'{"channel": "pho', broken.headers),
            _submitted("T-5", partition=1, offset=7), _submitted("T-WAIT", partition=1, offset=8)]


HIGHWATER = {(SOURCE, 0): 12, (SOURCE, 1): 9}


def test_a_handled_batch_counts_what_it_applied_dead_lettered_and_parked(tmp_path: Path) -> None:
    pipeline, broker = _pipeline(tmp_path)
    asyncio.run(pipeline.handle_records(_batch(), lambda t, p: HIGHWATER.get((t, p))))
    m = pipeline.metrics
    assert value(m, "cityops_records_read_total") == 7  # every record fetched, whatever became of it
    assert value(m, "cityops_records_applied_total") == 4
    assert value(m, "cityops_records_dead_lettered_total") == 2  # the handler's bug and the undecodable record
    assert value(m, "cityops_records_parked_total") == 1
    assert value(m, "cityops_parked_events") == 1  # counted in the store when scraped
    assert value(m, "cityops_batch_seconds_count") == 1 and value(m, "cityops_batches_failed_total") == 0
    # The lag after the batch: high watermark minus the next offset to read, per partition.
    assert value(m, "cityops_consumer_lag", topic=SOURCE, partition="0") == 12 - 5
    assert value(m, "cityops_consumer_lag", topic=SOURCE, partition="1") == 0
    assert len([r for r in broker.published if r.topic == OUTPUT]) == 4


def test_a_batch_reports_the_time_of_each_stage_and_how_long_its_records_waited(tmp_path: Path) -> None:
    pipeline, _ = _pipeline(tmp_path)
    waited_ms = 2_000
    stamp = int(datetime.now(UTC).timestamp() * 1000) - waited_ms
    records = [dataclasses.replace(_submitted(f"T-{i}", offset=i), timestamp=stamp + i) for i in range(3)]
    asyncio.run(pipeline.handle_records(records))
    m = pipeline.metrics
    for stage in ("decode", "apply", "publish"):
        assert value(m, "cityops_stage_seconds_count", stage=stage) == 1, stage
    # The oldest record's wait, from its producer's timestamp to the handler's start.
    queue = value(m, "cityops_stage_seconds_sum", stage="queue")
    assert queue is not None and waited_ms / 1000 <= queue < waited_ms / 1000 + 5
    asyncio.run(pipeline.handle_records([_submitted("T-9", offset=9)]))  # no timestamp (a replay, a test): no queue time
    assert value(m, "cityops_stage_seconds_count", stage="queue") == 1
    assert value(m, "cityops_stage_seconds_count", stage="poll") is None  # not from a poll: the wait is not split


def test_a_polled_batch_splits_its_wait_at_the_poll_that_returned_it(tmp_path: Path) -> None:
    from services.common.kafka import PolledRecords

    pipeline, _ = _pipeline(tmp_path)
    stamp = int(datetime.now(UTC).timestamp() * 1000) - 3_000
    polled = PolledRecords(dataclasses.replace(_submitted(f"T-{i}", offset=i), timestamp=stamp + i) for i in range(2))
    polled.polled_at -= 1.0  # the poll returned them a second before the handler started
    asyncio.run(pipeline.handle_records(polled))
    m = pipeline.metrics
    in_poll, dispatch = (value(m, "cityops_stage_seconds_sum", stage=s) for s in ("poll", "dispatch"))
    assert in_poll is not None and 1.9 <= in_poll < 2.5  # 3 s old at the handler, 1 s of it after the poll
    assert dispatch is not None and 1.0 <= dispatch < 1.5
    assert abs(value(m, "cityops_stage_seconds_sum", stage="queue") - (in_poll + dispatch)) < 0.05


def test_each_record_reports_its_own_wait_until_the_poll_by_topic(tmp_path: Path) -> None:
    from services.common.kafka import PolledRecords

    pipeline, _ = _pipeline(tmp_path)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    old, recent = (dataclasses.replace(_submitted(f"T-{i}", offset=i), timestamp=now_ms - ago) for i, ago in ((0, 4_000), (1, 1_000)))
    other = dataclasses.replace(_submitted("T-2", offset=0), topic="test.metrics.other", timestamp=now_ms - 2_000)
    polled = PolledRecords([recent, other, old])
    polled.polled_at -= 0.5  # the poll returned them half a second before the handler started
    asyncio.run(pipeline.handle_records(polled))
    m = pipeline.metrics

    def waited(topic: str, name: str = "sum") -> float | None:
        return value(m, f"cityops_record_wait_seconds_{name}", topic=topic)

    assert waited(SOURCE, "count") == 2 and waited("test.metrics.other", "count") == 1  # one per record, not per batch
    assert 3.5 + 0.5 <= waited(SOURCE) < 4.0 + 0.6  # 3.5 s and 0.5 s until the poll, not until the handler
    assert 1.5 <= waited("test.metrics.other") < 1.6
    buckets = {le: value(m, "cityops_record_wait_seconds_bucket", topic=SOURCE, le=le) for le in ("1.0", "5.0")}
    assert buckets == {"1.0": 1, "5.0": 2}  # each record in its own bucket: the recent one under a second


def test_a_failing_batch_shows_as_lag_that_stays_and_an_outbox_that_fills(tmp_path: Path) -> None:
    pipeline, broker = _pipeline(tmp_path)
    broker.fail_next = True  # the broker does not confirm: the batch raises and would be redelivered
    records = [_submitted(f"T-{i}", offset=i) for i in range(3)]
    with pytest.raises(ConnectionError):
        asyncio.run(pipeline.handle_records(records, lambda t, p: 10))
    m = pipeline.metrics
    assert value(m, "cityops_batches_failed_total") == 1 and value(m, "cityops_batch_seconds_count") == 1
    assert value(m, "cityops_consumer_lag", topic=SOURCE, partition="0") == 10  # the whole batch still to do
    assert value(m, "cityops_outbox_records") == 3  # stored, not confirmed: re-sent at the next start
    broker.fail_next = False
    asyncio.run(_handle_and_flush(pipeline, records, lambda t, p: 10))
    assert value(m, "cityops_consumer_lag", topic=SOURCE, partition="0") == 7
    assert value(m, "cityops_outbox_records") == 0


async def _handle_and_flush(pipeline: EventPipeline[Any], records: list[Record], highwater: Any) -> None:
    await pipeline.handle_records(records, highwater)
    await pipeline.flush_outbox()


def test_no_lag_is_made_up_when_the_high_watermark_is_unknown(tmp_path: Path) -> None:
    pipeline, _ = _pipeline(tmp_path)
    asyncio.run(pipeline.handle_records([_submitted("T-1")]))  # no consumer (a replay, a test): no lag series
    assert value(pipeline.metrics, "cityops_consumer_lag", topic=SOURCE, partition="0") is None
    asyncio.run(pipeline.handle_records([_submitted("T-2", partition=1)], lambda t, p: None))  # revoked partition
    assert value(pipeline.metrics, "cityops_consumer_lag", topic=SOURCE, partition="1") is None


def test_sla_reports_the_timers_that_are_due(tmp_path: Path) -> None:
    from services.sla.synthetic import TicketStory

    clock = Clock(datetime(2025, 11, 3, 9, 5, tzinfo=UTC))
    sla = start("sla", tmp_path, clock=clock)
    story = TicketStory("T-SLA")
    at = datetime(2025, 11, 3, 9, 0, tzinfo=UTC)
    story.registered(at)
    story.classified(at + timedelta(minutes=1), lead="housing")
    story.assigned(at + timedelta(minutes=2), "housing")
    sla.feed([record_of(envelope, topic=topic) for topic, envelope in story.records()])
    metrics = sla.pipeline.metrics

    def due() -> float | None:
        return metrics.registry.get_sample_value("cityops_timers_due", {"consumer": "sla"})

    assert due() == 0
    clock.advance(days=30)  # every clock of the task is past its reminders and its breach
    assert due() == 3  # sign-for, response, resolution
    sla.tick()
    assert due() == 0



def test_the_metrics_port_serves_the_registry_without_a_token(tmp_path: Path) -> None:
    pipeline, _ = _pipeline(tmp_path)
    asyncio.run(pipeline.handle_records([_submitted("T-1")], lambda t, p: 3))
    assert serve_metrics(pipeline.metrics, ServiceSettings(metrics_port=0)) is None  # 0: no endpoint
    port = free_port()
    server = serve_metrics(pipeline.metrics, ServiceSettings(metrics_port=port))
    assert server is not None
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        server.stop()
    assert f'cityops_consumer_lag{{consumer="toy",partition="0",topic="{SOURCE}"}} 2.0' in text
    assert 'cityops_records_applied_total{consumer="toy"} 1.0' in text
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)  # stopped: the port is closed


def test_a_metrics_port_already_taken_costs_the_endpoint_not_the_service() -> None:

    from services.common.metrics import MetricsServer, ServiceMetrics

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = MetricsServer(ServiceMetrics(), "127.0.0.1", taken.getsockname()[1])
        server.start()  # logs metrics_not_served instead of raising
        server.stop()
