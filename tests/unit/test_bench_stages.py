"""The per-stage breakdown `cityops bench` reads from the services' metrics (tools/bench/stages.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from services.common.metrics import ServiceMetrics
from tools.bench import stages


def _text(metrics: ServiceMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_a_phase_counts_only_what_was_observed_between_its_two_scrapes() -> None:
    metrics = ServiceMetrics(CollectorRegistry())
    for _ in range(50):
        metrics.stage("triage", "queue", 2.0)  # an earlier phase: a queue behind a burst
    before = stages.parse(_text(metrics))
    for seconds in [0.004] * 90 + [0.04] * 10:
        metrics.stage("triage", "queue", seconds)
    metrics.stage("triage", "apply", 0.003)
    got = stages.summary(stages.difference(stages.parse(_text(metrics)), before))
    queue = got["triage"]["queue"]
    assert queue["batches"] == 100
    assert queue["mean_ms"] == round((90 * 4 + 10 * 40) / 100, 2)
    assert queue["p50_ms"] is not None and 2 < queue["p50_ms"] <= 5  # within the bucket (2, 5] ms
    assert queue["p99_ms"] is not None and 30 < queue["p99_ms"] <= 50
    assert list(got["triage"]) == ["queue", "apply"]  # stages in the order a batch passes them, seen ones only


def test_quantiles_of_an_empty_histogram_and_beyond_the_last_bound() -> None:
    assert stages.quantile(0.5, {}) is None
    assert stages.quantile(0.5, {0.01: 0.0, float("inf"): 0.0}) is None
    assert stages.quantile(0.99, {0.01: 1.0, 30.0: 1.0, float("inf"): 5.0}) == 30.0  # all we know: above 30 s


def test_the_records_waits_are_read_per_consumer_and_topic_from_their_own_metric() -> None:
    metrics = ServiceMetrics(CollectorRegistry())
    metrics.record_waits("act", {"cityops.triage.v1": [1_000]}, 2.0)  # an earlier phase: 1 s
    before = stages.parse(_text(metrics), stages.RECORD_METRIC)
    metrics.record_waits("act", {"cityops.triage.v1": [1_000] * 9 + [1_000 - 40], "cityops.tickets.v1": [1_000]}, 1.004)
    metrics.stage("act", "queue", 0.04)  # the per-stage metric is not a record's
    diff = stages.difference(stages.parse(_text(metrics), stages.RECORD_METRIC), before)
    got = stages.record_summary(diff)
    assert set(got) == {"act"} and set(got["act"]) == {"cityops.triage.v1", "cityops.tickets.v1"}
    triage = got["act"]["cityops.triage.v1"]
    assert triage["records"] == 10 and 2 < triage["p50_ms"] <= 5 and 30 < triage["p99_ms"] <= 50  # 4 ms, one of 44
    assert got["act"]["cityops.tickets.v1"]["records"] == 1
    assert stages.summary(diff) == {}  # no per-stage keys in the records' metric's scrape
