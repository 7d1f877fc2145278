"""`cityops bench`: its arithmetic, its table, and one `--quick` run end to end.

The run checks only the JSON's shape and that the measured figures are positive: the machine is
shared, so no timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer

from services.common.settings import REPO_ROOT
from tools import bench
from tools.kafka import find_free_ports


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))
    assert bench.percentile(values, 50) == 50
    assert bench.percentile(values, 99) == 99
    assert bench.percentile(values, 100) == 100
    assert bench.percentile([7.0], 99) == 7.0
    assert bench.percentile([], 50) is None


def test_latency_summary_is_in_milliseconds():
    summary = bench.latency_summary([0.010, 0.020, 0.030])
    assert summary == {"n": 3, "p50_ms": 20.0, "p95_ms": 30.0, "p99_ms": 30.0, "max_ms": 30.0, "mean_ms": 20.0}
    assert bench.latency_summary([])["p99_ms"] is None


def test_ratio_is_none_without_a_reference():
    assert bench.ratio(50, 100) == 0.5
    assert bench.ratio(None, 100) is None
    assert bench.ratio(5, 0) is None


def _result() -> bench.Result:
    res = bench.Result(started_at="2026-01-01T00:00:00+00:00", config={"rate": 200.0, "nyc_speedup": 120.0},
                       machine={}, kafka={}, code={})
    res.phases = {
        "ceiling": {"produce_per_s": 10000.0, "consume_per_s": 40000.0, "produce_consume_per_s": 8000.0,
                    "hop_latency": {"offered_per_s": 200.0,
                                    "send_to_seen": {"p50_ms": 5.0, "p95_ms": 10.0, "p99_ms": 20.0},
                                    "send_to_ack": {"p50_ms": 4.0, "p95_ms": 8.0, "p99_ms": 16.0}}},
        "pipeline": {"events_per_s": 4000.0, "tickets_per_s": 250.0, "events_per_ticket": 16.0},
        "latency": {"intake_to_assignment_seen": {"p50_ms": 30.0, "p95_ms": 60.0, "p99_ms": 90.0}},
        "replay": {"events_per_s": 30000.0},
        "http": {"requests_per_s": 500.0, "latency": {"p50_ms": 8.0, "p99_ms": 40.0}},
    }
    res.processes = {"memory_at_fixed_load": {"peak_bytes": {"kafka-broker": 400 * 2 ** 20, "triage": 200 * 2 ** 20},
                                              "sum_of_peaks_bytes": 600 * 2 ** 20}}
    return res


def test_the_table_gives_each_figure_its_ratio_to_the_raw_ceiling():
    rows = {r["figure"]: r for r in bench.build_table(_result())}
    events = rows["pipeline events/s (all topics)"]
    assert events["ratio"] == 0.5 and events["met"] is True
    tickets = rows["pipeline tickets/s (intake -> closed)"]
    assert tickets["ratio"] == 0.5  # 250 tickets/s x 16 events = half of 8,000 records/s
    p99 = rows["intake -> assignment @200/s p99"]
    assert p99["ratio"] == 4.5 and p99["met"] is True
    assert rows["replay: rebuild of all projections"]["ratio"] == 0.75
    assert rows["peak RSS whole hub (sum of per-process peaks)"]["met"] is True
    text = bench.format_table(bench.build_table(_result()))
    assert "pipeline events/s" in text and "raw produce+consume" in text


def test_below_saturation_the_table_shows_each_steps_p50_and_where_its_batches_spent_the_time():
    res = _result()
    res.phases["latency_low"] = {
        "offered_per_s": 20.0, "fraction_of_capacity": 0.5,
        "intake_to_assignment_seen": {"p50_ms": 60.0, "p95_ms": 120.0, "p99_ms": 300.0},
        "steps": {"discover": {"p50_ms": 25.0}, "triage": {"p50_ms": 40.0}, "act": {"p50_ms": 20.0}},
        "stages": {"triage": {"queue": {"p50_ms": 12.5, "p99_ms": 30.0}, "apply": {"p50_ms": 3.0, "p99_ms": 9.0}}}}
    rows = {r["figure"]: r for r in bench.build_table(res)}
    assert rows["intake -> assignment @20/s (50% of capacity) p99"]["met"] is False  # 300 > 250 ms
    assert rows["  step discover p50 (input -> output record)"]["met"] is True
    assert rows["  step triage p50 (input -> output record)"]["met"] is False
    by_stage = rows["  triage p50 by stage: queue / decode / apply / publish / commit"]["value"]
    assert by_stage == "12.5 / - / 3 / - / -"


def test_a_missing_phase_leaves_its_figures_empty_not_wrong():
    res = _result()
    del res.phases["replay"]
    rows = {r["figure"]: r for r in bench.build_table(res)}
    assert rows["replay: rebuild of all projections"]["value"] is None
    assert rows["replay: rebuild of all projections"]["met"] is None


@pytest.mark.kafka
@pytest.mark.timeout(420)
def test_quick_run_writes_the_figures(tmp_path):
    kafka_port = find_free_ports(2, 59000, 59999)
    http_port = find_free_ports(1, 58000, 58999)
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tools.bench", "--quick", "--kafka-port", str(kafka_port), "--http-port", str(http_port),
         "--state-dir", str(tmp_path / "state"), "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[bench" in proc.stdout and "pipeline events/s" in proc.stdout  # progress lines, then the table
    result = json.loads(out.read_text())
    assert result["errors"] == []
    assert result["machine"]["cores"] >= 1 and result["machine"]["memory_bytes"] > 0
    assert result["kafka"]["version"] and result["code"]["commit"]
    phases = result["phases"]
    assert phases["ceiling"]["produce_per_s"] > 0 and phases["ceiling"]["consume_per_s"] > 0
    assert phases["ceiling"]["produce_consume_per_s"] > 0
    assert phases["pipeline"]["tickets_per_s"] > 0 and phases["pipeline"]["events_per_s"] > 0
    assert phases["latency"]["intake_to_assignment_seen"]["p99_ms"] > 0
    assert phases["latency_low"]["intake_to_assignment_seen"]["p99_ms"] > 0
    assert phases["http"]["requests_per_s"] > 0 and phases["http"]["latency"]["p99_ms"] > 0
    assert phases["replay"]["events_per_s"] > 0
    peaks = result["processes"]["memory_at_fixed_load"]["peak_bytes"]
    assert peaks["kafka-broker"] > 0 and all(v > 0 for v in peaks.values()) and {"discover", "triage", "act", "intake"} <= set(peaks)
    figures = {r["figure"] for r in result["table"]}
    assert {"raw aiokafka produce", "raw aiokafka consume", "pipeline events/s (all topics)",
            "replay: rebuild of all projections"} <= figures
    assert all(r["ratio"] is None or r["ratio"] > 0 for r in result["table"])


# ============================================================================================ the city dimension


def test_cities_are_parsed_and_checked():
    from tools.bench.city import parse_cities

    assert parse_cities("demo, yantai") == ("demo", "yantai")
    assert parse_cities("yantai") == ("yantai",)
    for bad, word in (("demo,atlantis", "atlantis"), ("demo,demo", "twice"), (" , ", "at least one")):
        with pytest.raises(typer.BadParameter, match=word) as caught:
            parse_cities(bad)
        assert "--cities" in str(caught.value)


def test_each_service_reads_the_city_catalogue_from_the_env_the_bench_sets(monkeypatch):
    """The bench puts the hub on a city through the one city setting, and the units list parses: a typo would
    leave a service on the small city without a word."""
    from services.bridge.settings import BridgeSettings
    from services.console.settings import ConsoleSettings
    from services.intake.settings import IntakeSettings
    from services.sla.settings import SlaSettings
    from services.triage.settings import TriageSettings
    from services.units.settings import UnitSettings
    from tools.bench.city import city

    yantai = city("yantai")
    env = yantai.service_env(["hotline", "housing-zhifu"])
    assert env["CITYOPS_CITY"] == "yantai"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for settings in (IntakeSettings, TriageSettings, BridgeSettings, SlaSettings, ConsoleSettings):
        assert settings().catalogue_file() == yantai.catalogue_path, settings.__name__
    assert UnitSettings().units == ["hotline", "housing-zhifu"]
    assert city("demo").service_env([]) == {"CITYOPS_CITY": "demo"}


def test_working_units_are_every_lead_and_co_unit_of_the_workload():
    import random

    from domain.catalogue import load_catalogue
    from tools.bench.city import sample_places, working_units

    cat = load_catalogue()
    places = sample_places(cat, 5, random.Random(3))
    assert all(set(p) == {"district", "street", "community"} for p in places)
    codes = [c.code for c in cat.categories[:20]]
    units = working_units(cat, codes, places)
    for code in codes:
        for place in places:
            decision = cat.route(code, place)
            assert {decision.lead, *decision.co_units} <= set(units)
    assert "hotline" in units and {p["district"] for p in places} <= set(units)
    assert len(units) < len(cat.units)  # not simply every unit


def test_both_maps_give_their_grids():
    from tools.bench.city import city, grid_features

    assert len(grid_features(city("demo").grid_map())) == 16


def test_lookup_rates_count_every_call():
    from tools.bench.city import rate_of

    seen = []
    figures = rate_of(seen.append, list(range(500)))
    assert seen == list(range(500))
    assert figures["calls"] == 500 and figures["per_s"] > 0


def _city_results():
    return {
        "demo": {"lookups": {"categories": 68, "routing": {"per_s": 20000}}, "hub": {"start_s": 12.5},
                 "pipeline": {"tickets": 100, "closed": 100, "tickets_per_s": 40.0},
                 "memory": {"started_bytes": {"triage": 100 * 2 ** 20, "sla": 50 * 2 ** 20},
                            "peak_bytes": {"triage": 120 * 2 ** 20, "sla": 60 * 2 ** 20}}},
        "yantai": {"lookups": {"categories": 1326, "routing": {"per_s": 18000}}, "hub": {"start_s": 40.0},
                   "pipeline": {"tickets": 100, "closed": 98, "tickets_per_s": 30.0},
                   "memory": {"started_bytes": {"triage": 300 * 2 ** 20, "sla": 200 * 2 ** 20}, "peak_bytes": {}}},
    }


def test_the_city_table_puts_the_cities_side_by_side():
    from tools.bench.city import city_table, format_city_table

    rows = {r["figure"]: r["values"] for r in city_table(_city_results())}
    assert rows["categories"] == {"demo": 68, "yantai": 1326}
    assert rows["hub start: every service started"] == {"demo": 12.5, "yantai": 40.0}
    assert rows["pipeline tickets closed"] == {"demo": "100/100", "yantai": "98/100"}
    assert rows["RSS once started: triage"] == {"demo": 100.0, "yantai": 300.0}
    assert rows["RSS once started: whole hub (sum)"] == {"demo": 150.0, "yantai": 500.0}
    # A figure a city did not reach stays empty rather than zero.
    assert rows["peak RSS by the end of the burst: sla"] == {"demo": 60.0, "yantai": None}
    assert rows["peak RSS by the end of the burst: whole hub (sum)"]["yantai"] is None
    text = format_city_table(city_table(_city_results()), ["demo", "yantai"])
    header, _, *lines = text.splitlines()
    assert header.split() == ["figure", "unit", "demo", "yantai"]
    routing = next(line for line in lines if line.startswith("routing"))
    assert routing.split()[-2:] == ["20,000", "18,000"]
