"""`cityops bench`: the phases in order, the hub always stopped, the table printed and the JSON written."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import shutil
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from services.common.settings import REPO_ROOT
from tools.bench import budget, stages
from tools.bench.ceiling import harvest_records, raw_ceiling
from tools.bench.city import parse_cities
from tools.bench.config import (
    NYC_ATTRIBUTION,
    NYC_SAMPLE,
    RESULTS_DIR,
    BenchConfig,
    log,
)
from tools.bench.http_intake import complaint_bodies, http_alone_phase, http_phase
from tools.bench.hub import BenchHub
from tools.bench.jit_warmup import warm_broker_jit
from tools.bench.kafka_io import LagWatch, Watcher, hop_breakdown
from tools.bench.latency import latency_phase
from tools.bench.measure import (
    CpuWatch,
    JvmThreadWatch,
    MemoryWatch,
    commit_info,
    library_versions,
    machine_info,
    proc_status,
)
from tools.bench.pipeline import pipeline_phase
from tools.bench.probe_hop import HOP_TOPIC, LOADED_HOP_RATE, probe_result, start_probe
from tools.bench.profiling import Profiler
from tools.bench.replay import dump_log, replay_phase
from tools.bench.report import Result, build_table, format_table
from tools.bench.workload import (
    TextPool,
    classifier_for_bench,
    nyc_rows,
    nyc_schedule,
    uniform_schedule,
)
from tools.packed import chosen_groups, parse_groups

if TYPE_CHECKING:
    from tools.kafka import KafkaLocalSettings

# ============================================================================================ the run


def broker_description(settings: KafkaLocalSettings) -> dict[str, Any]:
    """What the run's broker was, for the JSON: a run with other JVM flags or properties is another experiment."""
    return {"version": settings.version, "mode": "KRaft, single node, 127.0.0.1", "heap": settings.heap,
            "jvm_flags": settings.jvm_flags, "properties": settings.properties}


async def settled_hub(lags: LagWatch, cfg: BenchConfig, say: Any, before: str) -> float | None:
    """Wait until every consumer group has read what the phase before wrote, so a latency phase measures the hub at
    its own load and not the read side still working off the overload before it. Seconds waited, None if it never
    caught up within the drain timeout (said, and the phase runs anyway)."""
    started = time.monotonic()
    caught_up, lag = await lags.wait_caught_up(cfg.drain_timeout_s)
    waited = round(time.monotonic() - started, 1)
    if caught_up is None:
        say(f"  the hub had not caught up before {before} after {waited}s (lag {lag}); measuring anyway")
        return None
    say(f"  every service caught up before {before} ({waited}s)")
    return waited


async def stage_breakdown(hub: BenchHub, before: stages.Scrape) -> dict[str, Any]:
    """Where the consumers' batches spent a phase (since the scrape `before`): per stage, and each record's wait until
    its poll, by topic."""
    diff = stages.difference(await stages.scrape(hub.metrics_ports), before)
    return {"stages": stages.summary(diff), "record_waits": stages.record_summary(diff)}


async def _run(cfg: BenchConfig, hub: BenchHub, res: Result, started: float) -> None:
    from services.common.kafka import ensure_topics
    from services.common.logs import configure_logging
    from services.common.settings import ServiceSettings
    from tools.hub import intake_answers
    from tools.topics_cli import hub_topics

    say = lambda m: log(m, started)  # noqa: E731
    configure_logging("WARNING", json=False)
    # The raw ceiling and the feeders produce with the services' own linger.
    linger_ms = int(hub.env().get("CITYOPS_LINGER_MS", ServiceSettings().linger_ms))
    specs = hub_topics()
    await ensure_topics(hub.bootstrap, specs)
    all_topics = [s.name for s in specs]
    say(f"{len(all_topics)} topics created")

    say("training / loading the triage classifier (cached in .cache/bench)")
    t = time.monotonic()
    classifier, min_conf = await asyncio.to_thread(classifier_for_bench, hub.service_state)
    rows = await asyncio.to_thread(nyc_rows, cfg.nyc_sample)
    pool = await asyncio.to_thread(TextPool.build, classifier, min_conf, rows)
    res.phases["workload"] = {"confident_texts": len(pool.confident), "classifier_seconds": round(time.monotonic() - t, 1),
                              "nyc_rows": len(rows), "nyc_source": NYC_ATTRIBUTION}
    del classifier

    names = hub.start_services()
    assert hub.supervisor is not None, "start_services() made it"
    say(f"started {len(names)} service processes: {', '.join(names)}")
    if "intake" in names:  # fails at once, with its log, if intake exits instead
        await asyncio.to_thread(hub.supervisor.wait_ready, "intake", intake_answers(f"http://127.0.0.1:{cfg.http_port}"), 180)

    watcher = Watcher(hub.bootstrap)
    await watcher.start()
    lags = LagWatch(hub.bootstrap)
    try:
        rng = random.Random(2026)
        # -- warm-up
        say(f"warm-up: {cfg.warmup} tickets to closed (every service ready)")
        t = time.monotonic()
        subs = uniform_schedule(pool, rng, 50, cfg.warmup)
        warm = await latency_phase(hub, watcher, subs, linger_ms, dataclasses_replace(cfg, drain_timeout_s=240))
        res.phases["warmup"] = {**warm, "seconds": round(time.monotonic() - t, 1)}
        if warm["closed"] < len(subs):
            raise RuntimeError(f"warm-up: only {warm['closed']} of {len(subs)} tickets closed; see {cfg.state_dir / 'logs'}")

        await lags.start()  # after the warm-up: every group of the hub exists and has committed

        # -- the broker's JIT, warmed before anything is measured (jit_warmup.py)
        if cfg.jit_warmup_rounds > 0:
            say(f"JIT warm-up: bursts of {cfg.jit_warmup_burst} tickets until the broker's compiler threads take at most "
                f"{cfg.jit_settled_share:.0%} of its CPU in a burst (at most {cfg.jit_warmup_rounds})")
            res.phases["jit_warmup"] = await warm_broker_jit(hub, watcher, lags, pool, linger_ms, cfg, all_topics, say)
            if not res.phases["jit_warmup"]["settled"]:
                say("  the broker's JIT had not settled; the phases below include some of its compiling")

        # -- ceiling
        mix, sizes = await harvest_records(hub.bootstrap, all_topics)
        res.phases["record_sizes"] = sizes
        say(f"ceiling: {cfg.raw_records:,} records like ours (mean {sizes['mean_bytes']} bytes, "
            f"{len(sizes['by_type'])} event types), raw aiokafka on the same broker")
        res.phases["ceiling"] = await raw_ceiling(hub.bootstrap, mix, cfg.raw_records, cfg.rate, cfg.hop_s, linger_ms, say,
                                                  hub.broker_pid)

        # -- pipeline rate (first: the fixed-load phases are read against the capacity it finds)
        say(f"pipeline: burst of {cfg.burst} tickets, intake -> closed, events on every topic")
        subs = uniform_schedule(pool, rng, 0, cfg.burst)
        prof = Profiler(REPO_ROOT / "benchmarks" / "profiles", hub.pids(), 20) if cfg.profile else contextlib.nullcontext()
        reads_before = await budget.scrape_reads(hub.metrics_ports)
        with prof, CpuWatch(hub.pids()) as cpu, JvmThreadWatch(hub.broker_pid) as broker_threads:
            res.phases["pipeline"] = await pipeline_phase(hub, watcher, lags, subs, linger_ms, cfg, all_topics)
        reads_after = await budget.scrape_reads(hub.metrics_ports)
        if cfg.profile:
            res.phases["pipeline"]["profiles"] = prof.files  # type: ignore[union-attr]  # prof is the Profiler when cfg.profile
        pl = res.phases["pipeline"]
        pl["cpu"] = cpu.report(pl.get("events_total") or 0)
        pl["cpu_budget"] = budget.cpu_budget(cpu.used, reads_before, reads_after, pl.get("closed") or 0,
                                             pl.get("events_total") or 0, os.cpu_count() or 1)
        pl["cpu_budget"]["broker_threads"] = budget.broker_threads(broker_threads.used, pl.get("closed") or 0)
        say(f"  {pl.get('tickets_per_s')} tickets/s, {pl.get('events_per_s')} events/s until every service caught up "
            f"(the workflow alone: {pl.get('workflow_tickets_per_s')} tickets/s to the last close; peak {pl.get('events_per_s_peak')} "
            f"events/s; {pl.get('events_per_ticket')} events per ticket); {pl['closed']}/{pl['tickets']} closed")
        if pl.get("lag_when_given_up"):
            say(f"  the read side did not catch up within {cfg.drain_timeout_s:.0f}s: lag {pl['lag_when_given_up']}")
        busiest = sorted(pl["cpu"]["cpu_seconds"].items(), key=lambda kv: -kv[1])
        say("  CPU seconds in the burst: " + ", ".join(f"{n} {v:.1f}" for n, v in busiest)
            + f" (total {pl['cpu']['cpu_seconds_total']:.1f})")
        if pl["cpu_budget"]["cpu_ms_per_ticket"]:
            say("  " + budget.describe(pl["cpu_budget"]))

        # -- latency at the fixed offered load, with the memory peak of that phase
        pids = hub.pids()
        memory = MemoryWatch(pids)
        res.processes["before_fixed_load_peak_bytes"] = memory.peaks()
        memory.reset()
        say(f"latency: {cfg.rate:.0f} tickets/s for {cfg.latency_s:.0f}s, intake -> assignment")
        subs = uniform_schedule(pool, rng, cfg.rate, int(cfg.rate * cfg.latency_s))
        before = await stages.scrape(hub.metrics_ports)
        with memory:
            res.phases["latency"] = await latency_phase(hub, watcher, subs, linger_ms, cfg)
        res.phases["latency"]["steps"] = await hop_breakdown(hub.bootstrap, subs)
        res.phases["latency"].update(await stage_breakdown(hub, before))
        peaks = memory.peaks()
        res.processes["memory_at_fixed_load"] = {
            "offered_per_s": cfg.rate, "peak_bytes": peaks, "sum_of_peaks_bytes": sum(peaks.values()),
            "peak_sampled_total_rss_bytes": memory.peak_total_rss, "pids": pids}
        lat = res.phases["latency"]["intake_to_assignment_seen"]
        say(f"  p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, p99 {lat['p99_ms']} ms; "
            f"{res.phases['latency']['closed']}/{len(subs)} closed; hub peak {sum(peaks.values()) / 2 ** 20:.0f} MiB")

        # -- latency below saturation: half the capacity the burst measured
        capacity = pl.get("tickets_per_s") or 0
        low = cfg.low_rate or max(2.0, round(capacity * cfg.low_fraction, 1))
        fraction = round(low / capacity, 2) if capacity else None
        waited = await settled_hub(lags, cfg, say, "the half-capacity phase")
        say(f"latency: {low:.1f} tickets/s ({fraction or 0:.0%} of the measured capacity) for {cfg.low_s:.0f}s")
        subs = uniform_schedule(pool, rng, low, max(1, int(low * cfg.low_s)))
        before = await stages.scrape(hub.metrics_ports)
        probe = await start_probe(hub.bootstrap, HOP_TOPIC, LOADED_HOP_RATE, subs[-1].at, linger_ms,
                                  int(res.phases.get("ceiling", {}).get("mean_record_bytes") or 760))
        res.phases["latency_low"] = {"fraction_of_capacity": fraction, "waited_for_caught_up_s": waited,
                                     **await latency_phase(hub, watcher, subs, linger_ms, cfg),
                                     "steps": await hop_breakdown(hub.bootstrap, subs),
                                     "raw_hop_meanwhile": await probe_result(probe)}
        res.phases["latency_low"].update(await stage_breakdown(hub, before))
        lat = res.phases["latency_low"]["intake_to_assignment_seen"]
        steps = res.phases["latency_low"]["steps"]
        say(f"  p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, p99 {lat['p99_ms']} ms; p50 by step: "
            + ", ".join(f"{k} {v['p50_ms']} ms" for k, v in steps.items() if isinstance(v, dict))
            + f" ({steps['consulted_share'] or 0:.0%} of tickets consulted first)")
        hop = res.phases["latency_low"]["raw_hop_meanwhile"].get("send_to_seen") or {}
        say(f"  a raw aiokafka hop meanwhile ({LOADED_HOP_RATE:.0f}/s, a process of its own): p50 {hop.get('p50_ms')} ms, "
            f"p99 {hop.get('p99_ms')} ms")
        for consumer, by_stage in res.phases["latency_low"]["stages"].items():
            say(f"    {consumer}: p50/p99 ms by stage: " + ", ".join(
                f"{stage} {v['p50_ms']}/{v['p99_ms']}" for stage, v in by_stage.items()))

        # -- NYC 311 arrival curve
        if rows:
            waited = await settled_hub(lags, cfg, say, "the NYC 311 curve")
            subs, shape = nyc_schedule(pool, rng, rows, cfg.nyc_day, cfg.nyc_start, cfg.nyc_speedup, cfg.nyc_s,
                                       cfg.nyc_sample)
            say(f"NYC 311 curve: {shape['requests']} requests of {shape['window_start']}..{shape['window_end']} "
                f"x{cfg.nyc_speedup:.0f} (mean {shape['mean_rate_per_s']}/s, peak minute {shape['peak_rate_per_s']}/s)")
            res.phases["nyc_curve"] = {"shape": shape, "waited_for_caught_up_s": waited,
                                       **await latency_phase(hub, watcher, subs, linger_ms, cfg),
                                       "steps": await hop_breakdown(hub.bootstrap, subs)}
            lat = res.phases["nyc_curve"]["intake_to_assignment_seen"]
            say(f"  p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, p99 {lat['p99_ms']} ms")
        else:
            res.notes.append(f"NYC sample not found at {cfg.nyc_sample}: arrival-curve phase skipped")

        # -- HTTP intake
        waited = await settled_hub(lags, cfg, say, "the HTTP phase")
        say(f"HTTP intake: POST /tickets, {cfg.http_concurrency} clients for {cfg.http_s:.0f}s")
        res.phases["http"] = {"waited_for_caught_up_s": waited, **await http_phase(hub, watcher, pool, cfg)}
        h = res.phases["http"]
        say(f"  {h['requests_per_s']} requests/s, p50 {h['latency']['p50_ms']} ms, p99 {h['latency']['p99_ms']} ms")
        if cfg.dump_log:
            n = await dump_log(hub.bootstrap, all_topics, cfg.dump_log)
            say(f"wrote {n} records to {cfg.dump_log}")
    finally:
        await lags.stop()
        await watcher.stop()

    # -- memory over the whole run, then stop the services so the replay has the machine
    pids = hub.pids()
    res.processes["memory_whole_run_peak_bytes"] = {n: proc_status(p).get("VmHWM", 0) for n, p in pids.items()}
    res.processes["dead_before_stop"] = hub.dead()
    say("stopping services for the replay")
    hub.stop_services()
    res.processes["exit_codes"] = hub.exit_codes()

    say("replay: rebuild every projection from the log into a fresh SQLite database"
        + (" and a fresh PostgreSQL database" if cfg.rebuild_pg else ""))
    res.phases["replay"] = await replay_phase(hub, cfg)
    rp = res.phases["replay"]
    say(f"  {rp.get('events_per_s')} events/s ({rp['mode']}); bare read of the same log {rp['raw_read_same_log']['per_s']}/s")
    if "postgresql" in rp:
        pg = rp["postgresql"]
        say(f"  PostgreSQL {pg['server_version']}: {pg['events_per_s']} events/s; "
            f"{'the same' if pg['same_checksum_as_sqlite'] else 'NOT the same'} checksum as SQLite's")

    # Last: its tickets stay on the intake topic with nobody left to read them, so no other phase sees them.
    if "intake" in names:
        say(f"HTTP intake alone (intake + broker): load generator of its own, {cfg.http_concurrency} connections, {cfg.http_s:.0f}s")
        res.phases["http_alone"] = await http_alone_phase(hub, complaint_bodies(pool), cfg)
        ha = res.phases["http_alone"]
        say(f"  client ceiling (GET /health) {ha['client_ceiling_get_health']['requests_per_s']}/s; POST /tickets "
            f"{ha['post_tickets']['requests_per_s']}/s, p50 {ha['post_tickets']['latency']['p50_ms']} ms, "
            f"p99 {ha['post_tickets']['latency']['p99_ms']} ms; intake CPU {ha['cpu']['cpu_us_per_event'].get('intake')} µs/request")


def dataclasses_replace(obj: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(obj, **changes)


def run_bench(cfg: BenchConfig) -> Result:
    """Run every phase; always stop what was started; return (and write) the result."""
    from tools.kafka import KafkaLocalSettings, port_is_free

    started = time.monotonic()
    for port in (cfg.kafka_port, cfg.kafka_port + 1, cfg.http_port):
        if not port_is_free(port):
            raise typer.BadParameter(f"port {port} is in use; choose other ports (--kafka-port, --http-port)")
    if cfg.state_dir.exists():
        shutil.rmtree(cfg.state_dir)
    cfg.state_dir.mkdir(parents=True)
    res = Result(started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                 config=recorded_config(cfg),
                 machine=machine_info(), kafka=broker_description(KafkaLocalSettings()),
                 code={**commit_info(), "libraries": library_versions()})
    res.notes += [
        "Ratios are measured within this run on this broker; the machine is shared, so compare ratios, not absolute numbers.",
        "Units answer at once (sign/work delay 0, no returns/extensions/disagreement, residents satisfied).",
        "Benchmark tickets carry no grid or coordinate, so none is merged as a repeat; texts are ones the "
        "default classifier routes with confidence (NYC rows it would not route carry the operator's category).",
        f"Arrival curve: {NYC_ATTRIBUTION}.",
    ]
    hub = BenchHub(cfg)
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        log(f"starting a Kafka broker for this run on {hub.bootstrap} (state in {cfg.state_dir})", started)
        res.kafka["start_seconds"] = round(hub.start_broker(), 1)
        res.kafka["broker_pid"] = hub.broker_pid
        log(f"broker up in {res.kafka['start_seconds']}s (Apache Kafka {res.kafka['version']})", started)
        asyncio.run(_run(cfg, hub, res, started))
    except KeyboardInterrupt:
        res.errors.append("interrupted")
        raise
    except Exception as exc:  # recorded in the result; the figures measured so far are kept
        res.errors.append(repr(exc))
        for name in hub.dead():
            res.errors.append(f"{name} exited; last log lines:\n{hub.log_tail(name)}")
        log(f"FAILED: {exc!r} (logs in {cfg.state_dir / 'logs'})", started)
    finally:
        try:
            hub.stop()
        finally:
            signal.signal(signal.SIGTERM, previous)
            res.machine["load_avg_at_end"] = list(os.getloadavg())
            res.config["total_seconds"] = round(time.monotonic() - started, 1)
            res.table = build_table(res)
            res.result_path = str(write_result(res, cfg))
    return res


def write_result(res: Result, cfg: BenchConfig) -> Path:
    out = cfg.out or RESULTS_DIR / f"bench-{res.started_at.replace(':', '').replace('-', '')}{'-quick' if cfg.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res.__dict__, indent=2, default=str) + "\n")
    return out


# ============================================================================================ CLI


T = TypeVar("T")


def recorded_config(cfg: BenchConfig) -> dict[str, Any]:
    """The run's settings as the result JSON keeps them: a `--rebuild-pg` password is not written down."""
    from sqlalchemy.engine import make_url

    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in cfg.__dict__.items()}
    if cfg.rebuild_pg:
        config["rebuild_pg"] = make_url(cfg.rebuild_pg).render_as_string(hide_password=True)
    return config


def check_postgres_url(url: str) -> None:
    """Refuse a `--rebuild-pg` that is not a PostgreSQL URL before the run starts, not after its first minutes."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise typer.BadParameter(f"not a database URL: {exc}", param_hint="--rebuild-pg") from exc
    if parsed.get_backend_name() != "postgresql":
        raise typer.BadParameter(f"a PostgreSQL URL (postgresql+psycopg://USER@HOST:PORT/DB), not {parsed.get_backend_name()!r}",
                                 param_hint="--rebuild-pg")


def _given(option: T | None, default: T) -> T:
    return default if option is None else option


def bench(
    quick: bool = typer.Option(False, "--quick", help="A short run (under 2 minutes): fewer records, shorter phases."),
    kafka_port: int = typer.Option(27092, help="Port of the broker started for this run (and port+1 for its controller)."),
    http_port: int = typer.Option(27080, help="Port of the intake HTTP API started for this run."),
    rate: float = typer.Option(200.0, help="Fixed offered load of the latency phase, tickets/s."),
    latency_seconds: float = typer.Option(None, help="Length of the fixed-load phase (default 5, quick 1)."),
    low_seconds: float = typer.Option(None, help="Length of the below-saturation latency phase (default 20, quick 4)."),
    low_rate: float = typer.Option(None, help="Offered load of that phase in tickets/s (default: half the capacity the burst measured)."),
    nyc_speedup: float = typer.Option(None, help="How many times faster than real the NYC 311 arrivals are replayed (default 60, quick 300)."),
    nyc_seconds: float = typer.Option(None, help="Wall seconds of the NYC 311 curve phase (default 40, quick 4)."),
    nyc_sample: Path = typer.Option(NYC_SAMPLE, help="NYC 311 CSV for the arrival curve and complaint texts (default: the subset in data/nyc311/; the curve replays 2026-05-22 from 12:20)."),
    burst: int = typer.Option(None, help="Tickets fed at once for the pipeline rate (default 1000, quick 150)."),
    http_seconds: float = typer.Option(None, help="Length of the HTTP phase (default 10, quick 3)."),
    http_concurrency: int = typer.Option(16, help="Concurrent HTTP clients."),
    raw_records: int = typer.Option(None, help="Records for the raw produce/consume ceiling (default 50000, quick 10000)."),
    jit_warmup_rounds: int = typer.Option(None, help="Bursts fed before anything is measured, until the broker's JIT "
                                          "compiler settles (default at most 4 of 500 tickets, quick 1 of 100; 0: measure a cold broker)."),
    services: str = typer.Option("", help="Comma-separated services to start (default: what `cityops up` starts)."),
    groups: str = typer.Option("", envvar="CITYOPS_UP_GROUPS", help="Services sharing one process, as `cityops up --groups`."),
    packed: bool = typer.Option(None, "--packed/--separate", show_default=False,
                                help="As `cityops up`: the workflow in fewer processes, or every service in its own "
                                     "(default: as `cityops up` decides on this machine)."),
    state_dir: Path = typer.Option(REPO_ROOT / ".state" / "bench", help="Scratch directory (wiped at start)."),
    out: Path = typer.Option(None, help="JSON result file (default benchmarks/results/bench-<time>.json)."),
    profile: bool = typer.Option(False, help="Record py-spy profiles of every service during the pipeline phase (needs py-spy)."),
    rebuild_pg: str = typer.Option(None, "--rebuild-pg", envvar="CITYOPS_BENCH_PG_URL", metavar="URL",
                                   help="Also rebuild every projection into PostgreSQL: the URL of a database whose user "
                                        "may CREATE DATABASE (postgresql+psycopg://...); the bench creates a fresh database "
                                        "there and drops it afterwards."),
    dump_log: Path = typer.Option(None, help="Also write every record of the run here (JSON lines), for offline profiling."),
    env: list[str] = typer.Option([], "--env", help="KEY=VALUE setting for every service, e.g. CITYOPS_LINGER_MS=0 (repeatable; recorded in the JSON)."),
    cities: str = typer.Option("", "--cities", help="Run the city dimension instead: these cities side by side (demo, yantai; "
                               "e.g. demo,yantai): lookups, hub start, memory per service and the burst on each."),
    city_lookups: int = typer.Option(20_000, help="route() and locate calls timed per city (with --cities)."),
) -> None:
    """Measure the hub against the raw Kafka ceiling of a broker started for the run; print one table, write JSON."""
    bad = [e for e in env if "=" not in e or not e.startswith("CITYOPS_")]
    if bad:
        raise typer.BadParameter(f"--env takes CITYOPS_<SETTING>=VALUE, not {bad}")
    if rebuild_pg:
        check_postgres_url(rebuild_pg)
    try:
        groups = chosen_groups(groups, packed)
        parse_groups(groups)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--groups") from exc
    mode = BenchConfig.quick_mode() if quick else BenchConfig()
    # An option left out (None) keeps its mode's default, quick or full.
    cfg = dataclasses.replace(
        mode, kafka_port=kafka_port, http_port=http_port, rate=rate, http_concurrency=http_concurrency,
        services=tuple(s.strip() for s in services.split(",") if s.strip()), state_dir=state_dir, out=out,
        groups=groups,
        profile=profile, dump_log=dump_log, rebuild_pg=rebuild_pg, service_env=tuple(env), nyc_sample=nyc_sample,
        latency_s=_given(latency_seconds, mode.latency_s), low_s=_given(low_seconds, mode.low_s),
        low_rate=_given(low_rate, mode.low_rate), nyc_speedup=_given(nyc_speedup, mode.nyc_speedup),
        nyc_s=_given(nyc_seconds, mode.nyc_s), burst=_given(burst, mode.burst), http_s=_given(http_seconds, mode.http_s),
        raw_records=_given(raw_records, mode.raw_records),
        jit_warmup_rounds=_given(jit_warmup_rounds, mode.jit_warmup_rounds))
    if cities:
        _city_bench(dataclasses.replace(cfg, cities=parse_cities(cities), city_lookups=city_lookups))
        return
    res = run_bench(cfg)
    typer.echo("")
    typer.echo(format_table(res.table))
    typer.echo("")
    m, k, c = res.machine, res.kafka, res.code
    typer.echo(f"machine: {m['cores']} cores, {m['memory_gib']} GiB, load {m['load_avg_at_start'][0]:.1f} -> "
               f"{m['load_avg_at_end'][0]:.1f}; Apache Kafka {k['version']}; commit {(c['commit'] or '?')[:12]}"
               f"{' (+uncommitted changes)' if c['dirty'] else ''}")
    typer.echo(f"result: {res.result_path}")
    if res.errors:
        typer.echo("errors: " + "; ".join(e.splitlines()[0] for e in res.errors), err=True)
        raise typer.Exit(1)


def _city_bench(cfg: BenchConfig) -> None:
    from tools.bench.city_run import city_result_text, run_city_bench

    res = run_city_bench(cfg)
    typer.echo("")
    typer.echo(city_result_text(res, cfg))
    typer.echo(f"\nresult: {res.result_path}")
    if res.errors:
        typer.echo("errors: " + "; ".join(e.splitlines()[0] for e in res.errors), err=True)
        raise typer.Exit(1)


app = typer.Typer(add_completion=False)
app.command()(bench)


if __name__ == "__main__":
    app()
