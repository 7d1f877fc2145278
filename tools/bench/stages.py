"""Per-hop breakdown from the services' own metrics: where each consumer's batches spent their time in a
phase (queue wait, decode, apply, publish, commit: `cityops_stage_seconds`, services/common/metrics.py), and
each record's wait by topic (`cityops_record_wait_seconds`).

Each service process of the run serves its metrics on a port of its own (BenchHub); a phase's breakdown is
the difference of two scrapes, one before it and one after, so earlier phases do not count. Quantiles are
interpolated within histogram buckets as Prometheus' histogram_quantile does: good to a bucket's width.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from services.common.metrics import STAGES

METRIC = "cityops_stage_seconds"
RECORD_METRIC = "cityops_record_wait_seconds"
# (consumer, stage) -> {"buckets": {upper bound: cumulative count}, "sum": seconds, "count": batches};
# for RECORD_METRIC the key is (consumer, "record", topic) and the count is records.
Scrape = dict[tuple[str, ...], dict[str, Any]]


def parse(text: str, metric: str = METRIC) -> Scrape:
    """One metric's histograms (the stages', or the records' waits by topic) in one exposition text."""
    out: Scrape = defaultdict(lambda: {"buckets": {}, "sum": 0.0, "count": 0.0})
    for family in text_string_to_metric_families(text):
        if family.name != metric:
            continue
        for sample in family.samples:
            key: tuple[str, ...] = (sample.labels.get("consumer", "?"), sample.labels.get("stage", "record"))
            if "topic" in sample.labels:
                key += (sample.labels["topic"],)
            if sample.name.endswith("_bucket"):
                out[key]["buckets"][float(sample.labels["le"])] = sample.value
            elif sample.name.endswith("_sum"):
                out[key]["sum"] = sample.value
            elif sample.name.endswith("_count"):
                out[key]["count"] = sample.value
    return dict(out)


def difference(after: Scrape, before: Scrape) -> Scrape:
    """What was observed between two scrapes of the same processes."""
    out: Scrape = {}
    for key, a in after.items():
        b = before.get(key, {"buckets": {}, "sum": 0.0, "count": 0.0})
        out[key] = {"buckets": {le: n - b["buckets"].get(le, 0.0) for le, n in a["buckets"].items()},
                    "sum": a["sum"] - b["sum"], "count": a["count"] - b["count"]}
    return out


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The q-quantile (0..1) of a cumulative histogram, linear within its bucket; None when empty."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if le == float("inf"):
                return lower  # beyond the last finite bound: that bound is all we know
            inside = count - below
            return lower + (le - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = le, count
    return lower


Figures = dict[str, float | None]


def _figures(h: dict[str, Any], counted: str = "batches") -> Figures:
    ms = lambda s: None if s is None else round(s * 1000, 2)  # noqa: E731
    return {counted: int(h["count"]), "mean_ms": ms(h["sum"] / h["count"]),
            "p50_ms": ms(quantile(0.5, h["buckets"])), "p99_ms": ms(quantile(0.99, h["buckets"]))}


def summary(diff: Scrape) -> dict[str, dict[str, Figures]]:
    """consumer -> stage -> batches, mean, p50, p99 in ms (stages in the order a batch passes them)."""
    out: dict[str, dict[str, Figures]] = {}
    for consumer in sorted({key[0] for key in diff}):
        stages = {stage: _figures(h) for stage in STAGES if (h := diff.get((consumer, stage))) and h["count"] > 0}
        if stages:
            out[consumer] = stages
    return out


def record_summary(diff: Scrape) -> dict[str, dict[str, Figures]]:
    """consumer -> topic -> records read, mean, p50, p99 of their wait until the poll that returned them, in ms."""
    out: dict[str, dict[str, Figures]] = defaultdict(dict)
    for key, h in sorted(diff.items()):
        if len(key) == 3 and h["count"] > 0:
            out[key[0]][key[2]] = _figures(h, "records")
    return dict(out)


async def scrape(ports: Mapping[str, int]) -> Scrape:
    """The stage histograms and the records' waits of every process (one that does not answer is left out):
    `summary` and `record_summary` each take their own keys from it."""
    import httpx

    merged: Scrape = {}
    async with httpx.AsyncClient(timeout=5) as client:
        async def one(port: int) -> Scrape:
            try:
                text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            except httpx.HTTPError:
                return {}
            return {**parse(text), **parse(text, RECORD_METRIC)}
        for part in await asyncio.gather(*(one(p) for p in ports.values() if p)):
            merged.update(part)  # consumer names are unique across the hub's processes
    return merged
