"""`cityops bench`: its arithmetic, its table, and one `--quick` run end to end.

The run checks only the JSON's shape and that the measured figures are positive: the machine is
shared, so no timing is asserted.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
import typer
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from services.common.settings import REPO_ROOT
from tests.harness.ports import free_port, free_port_pair
from tools import bench
from tools.bench.kafka_io import hub_lag


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
                    "produce_consume_cpu_us_per_record": {"kafka-broker": 100, "client (aiokafka)": 60},
                    "hop_latency": {"offered_per_s": 200.0,
                                    "send_to_seen": {"p50_ms": 5.0, "p95_ms": 10.0, "p99_ms": 20.0},
                                    "send_to_ack": {"p50_ms": 4.0, "p95_ms": 8.0, "p99_ms": 16.0}}},
        "pipeline": {"events_per_s": 4000.0, "tickets_per_s": 250.0, "events_per_ticket": 16.0, "workflow_tickets_per_s": 300.0},
        "latency": {"intake_to_assignment_seen": {"p50_ms": 30.0, "p95_ms": 60.0, "p99_ms": 90.0}},
        "replay": {"events_per_s": 30000.0, "raw_read_same_log": {"per_s": 120000.0}},
        "http": {"requests_per_s": 500.0, "latency": {"p50_ms": 8.0, "p99_ms": 40.0}},
        "http_alone": {"client_ceiling_get_health": {"requests_per_s": 8000.0},
                       "post_tickets": {"requests_per_s": 900.0, "latency": {"p50_ms": 15.0, "p99_ms": 45.0}},
                       "cpu": {"cpu_us_per_event": {"intake": 1000}}},
    }
    res.processes = {"memory_at_fixed_load": {"peak_bytes": {"kafka-broker": 400 * 2 ** 20, "triage": 200 * 2 ** 20},
                                              "sum_of_peaks_bytes": 600 * 2 ** 20}}
    return res


def test_the_table_gives_each_figure_its_ratio_to_the_raw_ceiling():
    rows = {r["figure"]: r for r in bench.build_table(_result())}
    events = rows["pipeline events/s (all topics, every service caught up)"]
    assert events["ratio"] == 0.5 and events["met"] is True  # >= 0.35 x raw
    tickets = rows["pipeline tickets/s (intake -> closed, every service caught up)"]
    assert tickets["ratio"] == 0.5  # 250 tickets/s x 16 events = half of 8,000 records/s
    assert rows["  workflow alone: tickets/s to the last close"]["ratio"] == 1.2  # 300 closing vs 250 caught up
    p99 = rows["intake -> assignment @200/s p99"]
    assert p99["ratio"] == 4.5 and p99["met"] is None  # above capacity: queueing, no target
    rebuild = rows["replay: rebuild of all projections"]
    assert rebuild["ratio"] == 0.25 and rebuild["met"] is False  # against the bare read of the same log, >= 0.3
    assert rows["HTTP intake p99"]["met"] is True  # 40 <= 500 ms inside the loaded hub
    alone = rows["HTTP intake alone POST /tickets"]
    assert alone["met"] is False and round(alone["ratio"], 2) == 0.11  # 900 of the load generator's 8,000/s
    assert rows["HTTP intake alone p99"]["met"] is True
    assert rows["peak RSS whole hub (sum of per-process peaks)"]["met"] is True
    text = bench.format_table(bench.build_table(_result()))
    assert "pipeline events/s" in text and "raw produce+consume" in text


def test_the_cpu_budget_divides_each_process_cpu_by_what_it_read():
    from tools.bench.budget import cpu_budget, records_read

    text = ('# TYPE cityops_records_read_total counter\n'
            'cityops_records_read_total{consumer="act"} 300.0\ncityops_records_read_total{consumer="act-ticks"} 20.0\n')
    assert records_read(text) == 320.0
    cpu = {"kafka-broker": 2.0, "act+evaluate": 3.0, "triage": 1.0, "bench (this process)": 0.5}
    b = cpu_budget(cpu, {"act": 100.0, "evaluate": 0.0, "triage": 50.0},
                   {"act": 1100.0, "evaluate": 1000.0, "triage": 1050.0}, tickets=100, events=1000, cores=2)
    packed = b["processes"]["act+evaluate"]
    assert packed["records_read"] == 2000 and packed["us_per_record_read"] == 1500 and packed["cpu_ms_per_ticket"] == 30.0
    assert b["processes"]["kafka-broker"]["us_per_record_read"] is None  # the broker reads no consumer records
    assert "bench (this process)" not in b["processes"]
    assert b["cpu_ms_per_ticket"] == 60.0 and b["ceiling_tickets_per_s"] == 33.3  # 6 s of hub CPU for 100 tickets
    assert b["records_read_per_event"] == 3.0 and b["broker_us_per_event"] == 2000
    rows = {r["figure"]: r for r in bench.build_table(_with_budget(b))}
    assert round(rows["  CPU ceiling on 2 cores"]["ratio"], 1) == 7.5  # the result's 250 tickets/s against this ceiling
    assert rows["  CPU per event (whole hub)"]["value"] == 6000 and rows["  CPU per event (whole hub)"]["ratio"] == 37.5
    assert rows["  broker CPU per event"]["ratio"] == 20.0  # 2,000 µs per event against 100 µs per record in bulk


def _with_budget(budget):
    res = _result()
    res.phases["pipeline"]["cpu_budget"] = budget
    return res


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
    by_stage = rows["  triage p50 by stage: queue / poll / dispatch / decode / apply / publish / commit"]["value"]
    assert by_stage == "12.5 / - / - / - / 3 / - / -"
    assert rows["  step discover p50 (input -> output record)"]["reference"] == "raw hop p50 (x)"  # no hop meanwhile


def test_below_saturation_the_table_shows_each_steps_record_wait_by_topic_it_reads():
    res = _result()
    res.phases["latency_low"] = {
        "offered_per_s": 20.0, "intake_to_assignment_seen": {"p50_ms": 60.0, "p99_ms": 300.0},
        "record_waits": {"act": {"cityops.triage.v1": {"records": 400, "p50_ms": 31.5, "p99_ms": 90.0},
                                 "cityops.tickets.v1": {"records": 700, "p50_ms": 12.0, "p99_ms": None}},
                         "sla": {"cityops.triage.v1": {"records": 9, "p50_ms": 1.0, "p99_ms": 2.0}}}}
    rows = {r["figure"]: r for r in bench.build_table(res)}
    assert rows["  act p50 record wait to its poll, by topic (records)"]["value"] == "triage 31.5 (400), tickets 12 (700)"
    assert rows["  act p99 record wait to its poll, by topic (records)"]["value"] == "triage 90 (400), tickets - (700)"
    assert not [f for f in rows if f.startswith("  sla") and "by topic" in f]  # the workflow's steps only


def test_each_steps_p50_is_set_against_a_raw_hop_measured_meanwhile_when_there_is_one():
    res = _result()
    res.phases["latency_low"] = {
        "offered_per_s": 20.0, "intake_to_assignment_seen": {"p50_ms": 60.0, "p99_ms": 300.0},
        "steps": {"discover": {"p50_ms": 25.0}},
        "raw_hop_meanwhile": {"offered_per_s": 10.0, "send_to_seen": {"p50_ms": 12.5, "p99_ms": 60.0}}}
    rows = {r["figure"]: r for r in bench.build_table(res)}
    assert rows["  raw hop meanwhile p50 (10/s, a process of its own)"]["ratio"] == 2.5  # against 5 ms on the idle hub
    assert rows["  raw hop meanwhile p99 (10/s, a process of its own)"]["ratio"] == 3.0
    step = rows["  step discover p50 (input -> output record)"]
    assert step["reference"] == "raw hop meanwhile p50 (x)" and step["ratio"] == 2.0


def test_a_hop_probe_that_cannot_reach_its_broker_fails_with_its_error_not_silently():
    from tools.bench.probe_hop import start_probe

    with pytest.raises(RuntimeError, match="hop probe"):
        asyncio.run(start_probe("127.0.0.1:1", "bench.hop.v1", 10, 1, 1, 100, connect_timeout_s=20))


def test_a_missing_phase_leaves_its_figures_empty_not_wrong():
    res = _result()
    del res.phases["replay"]
    rows = {r["figure"]: r for r in bench.build_table(res)}
    assert rows["replay: rebuild of all projections"]["value"] is None
    assert rows["replay: rebuild of all projections"]["met"] is None


@pytest.mark.kafka
@pytest.mark.timeout(420)
class FakeAdmin:
    """The two admin calls hub_lag makes, over fixed committed offsets per group."""

    def __init__(self, committed: dict[str, dict[TopicPartition, int]]) -> None:
        self.committed = committed

    async def list_consumer_groups(self) -> list[tuple[str, str]]:
        return [(group, "consumer") for group in self.committed]

    async def list_consumer_group_offsets(self, group: str) -> dict[TopicPartition, OffsetAndMetadata]:
        return {tp: OffsetAndMetadata(offset, "") for tp, offset in self.committed[group].items()}


class FakeEnds:
    def __init__(self, ends: dict[TopicPartition, int]) -> None:
        self.ends = ends

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[tp] for tp in tps}


async def test_hub_lag_counts_each_hub_group_behind_the_end_of_its_partitions():
    a0, a1, b0 = TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)
    admin = FakeAdmin({"cityops-sla": {a0: 10, a1: 4}, "cityops-act": {b0: 7}, "bench-watcher": {a0: 0},
                       "cityops-new": {a0: -1}})  # -1: nothing committed on that partition yet
    lag = await hub_lag(admin, FakeEnds({a0: 12, a1: 4, b0: 7}))
    assert lag == {"cityops-act": 0, "cityops-new": 0, "cityops-sla": 2}  # not the bench's own group


def test_quick_run_writes_the_figures(tmp_path):
    kafka_port, http_port = free_port_pair(), free_port()
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
    # the whole hub's rate counts until the read side caught up too: never faster than the workflow's
    assert phases["pipeline"]["seconds_to_caught_up"] >= phases["pipeline"]["seconds_to_last_close"]
    assert phases["pipeline"]["tickets_per_s"] <= phases["pipeline"]["workflow_tickets_per_s"]
    assert phases["latency"]["intake_to_assignment_seen"]["p99_ms"] > 0
    assert phases["latency_low"]["intake_to_assignment_seen"]["p99_ms"] > 0
    meanwhile = phases["latency_low"]["raw_hop_meanwhile"]
    assert meanwhile["records"] >= 1 and meanwhile["send_to_seen"]["n"] == meanwhile["records"]  # every probe record seen
    assert phases["http"]["requests_per_s"] > 0 and phases["http"]["latency"]["p99_ms"] > 0
    assert phases["replay"]["events_per_s"] > 0
    peaks = result["processes"]["memory_at_fixed_load"]["peak_bytes"]
    services = {member for process in peaks for member in process.split("+")}  # a packed process names its members
    assert peaks["kafka-broker"] > 0 and all(v > 0 for v in peaks.values()) and {"discover", "triage", "act", "intake"} <= services
    figures = {r["figure"] for r in result["table"]}
    assert {"raw aiokafka produce", "raw aiokafka consume", "pipeline events/s (all topics, every service caught up)",
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


@pytest.mark.parametrize(("url", "said"), [("sqlite:///rebuild.db", "'sqlite'"), ("not a url", "not a database URL")])
def test_a_rebuild_pg_that_is_not_postgresql_is_refused_before_anything_starts(tmp_path, url, said):
    from typer.testing import CliRunner

    from tools.bench.run import app

    state = tmp_path / "state"
    result = CliRunner().invoke(app, ["--quick", "--rebuild-pg", url, "--state-dir", str(state)])
    assert result.exit_code == 2, result.output
    assert "--rebuild-pg" in result.output and said in result.output
    assert not state.exists()  # refused before the run made its scratch directory, let alone a broker


def test_the_result_keeps_the_rebuild_pg_url_without_its_password():
    from tools.bench.config import BenchConfig
    from tools.bench.run import recorded_config

    kept = recorded_config(BenchConfig(rebuild_pg="postgresql+psycopg://bench:s3cret@db.example:5432/postgres"))
    assert "s3cret" not in json.dumps(kept)
    assert kept["rebuild_pg"] == "postgresql+psycopg://bench:***@db.example:5432/postgres"
    assert recorded_config(BenchConfig())["rebuild_pg"] is None


def test_each_service_reads_the_city_catalogue_from_the_env_the_bench_sets(monkeypatch):
    """The bench puts the hub on a city through the one city setting, and the units list parses: a typo would
    leave a service on the small city without a word."""
    from services.act.settings import ActSettings
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
    for settings in (IntakeSettings, TriageSettings, BridgeSettings, SlaSettings, ConsoleSettings, ActSettings, UnitSettings):
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
