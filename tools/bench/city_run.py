"""`cityops bench --cities demo,yantai`: each city in turn on one broker - its lookups, the hub started on it,
a warm-up and the burst - then one side-by-side table and one JSON (see tools/bench/city.py for what is
measured and how a city is chosen)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tools.bench.city import City, city, city_table, format_city_table, lookup_figures, sample_places, working_units
from tools.bench.config import RESULTS_DIR, BenchConfig, log
from tools.bench.hub import BenchHub
from tools.bench.kafka_io import LagWatch, Watcher
from tools.bench.latency import latency_phase
from tools.bench.measure import MemoryWatch, commit_info, library_versions, machine_info, proc_status
from tools.bench.pipeline import pipeline_phase
from tools.bench.report import Result
from tools.bench.workload import Submission, classifier_for_bench, make_submission

PLACES = 200  # places a city's tickets are spread over (their units are the ones given task topics)


def seed_pool(catalogue: Any, classifier: Any, min_confidence: float, seed: int = 7) -> list[tuple[str, str]]:
    """(text, category) pairs of catalogue seed sentences in a wording the model did not train on, that the
    model routes to their own category with confidence: each ticket is dispatched, none waits for an operator."""
    from domain.classifier import seed_examples

    examples = seed_examples(catalogue, per_keyword=1, seed=seed)
    predictions = classifier.predict_many([e.text for e in examples])
    return [(e.text, e.category) for e, p in zip(examples, predictions)
            if p.category == e.category and p.confidence >= min_confidence + 0.02]


def submissions(pool: list[tuple[str, str]], places: list[dict[str, str]], rng: random.Random, n: int) -> list[Submission]:
    return [make_submission(text, None, rng.choice(places), rng) for text, _ in (rng.choice(pool) for _ in range(n))]


def _own_topic_units(catalogue: Any, units: list[str]) -> list[str]:
    """The small catalogue's units with a topic of their own, plus those of `units` (area units share one)."""
    from tools.kafka.acls import deployment_units

    return sorted({*deployment_units(), *(u for u in units if u in catalogue.own_topic_units())})


async def _topics_and_acls(hub: BenchHub, catalogue: Any, units: list[str]) -> int:
    """Task topics (and DLQs) for `units`, and the broker's ACLs for the small catalogue's units plus these;
    the number of unit task topics made (area units share one, already in the catalogue's topics)."""
    from contracts.topics import all_topics
    from services.common.kafka import ensure_topics, kafka_access
    from tools.kafka.acls import derive_acls
    from tools.kafka.security import sync_acls_with

    everyone = _own_topic_units(catalogue, units)
    await ensure_topics(hub.bootstrap, all_topics(everyone))
    await sync_acls_with(kafka_access(hub.bootstrap).options, derive_acls(everyone))
    return len(everyone)


def _start_hub(hub: BenchHub, c: City, env: dict[str, str], http_port: int) -> tuple[list[str], float]:
    """Start every service on the city; seconds until each has logged service_started and intake answers."""
    from tools.hub import intake_answers

    started = time.monotonic()
    names = hub.start_services(env, logs=f"logs/{c.name}")
    assert hub.supervisor is not None, "start_services() made it"
    for name in names:
        hub.supervisor.wait_started(name, timeout=900)
    if "intake" in names:
        hub.supervisor.wait_ready("intake", intake_answers(f"http://127.0.0.1:{http_port}"), 180)
    return names, time.monotonic() - started


async def city_phase(cfg: BenchConfig, hub: BenchHub, c: City, say: Any) -> dict[str, Any]:
    from services.common.settings import ServiceSettings

    out: dict[str, Any] = {}
    say(f"[{c.name}] lookups: catalogue load, {cfg.city_lookups:,} route() and locate calls")
    out["lookups"] = await asyncio.to_thread(lookup_figures, c, cfg.city_lookups)
    catalogue = c.catalogue()
    say(f"[{c.name}] training / loading the catalogue-trained classifier (cached in .cache/bench)")
    classifier, min_confidence = await asyncio.to_thread(classifier_for_bench, hub.service_state, catalogue)
    out["classifier"] = {"train_cpu_s": classifier.metadata.get("train_cpu_seconds"),
                         "train_s": classifier.metadata.get("train_seconds"), "labels": len(classifier.labels)}
    rng = random.Random(2026)
    pool = await asyncio.to_thread(seed_pool, catalogue, classifier, min_confidence)
    del classifier
    places = sample_places(catalogue, PLACES, rng)
    units = working_units(catalogue, sorted({code for _, code in pool}), places)
    out["workload"] = {"texts": len(pool), "categories": len({code for _, code in pool}), "places": len(places)}
    out["hub"] = {"unit_topics": await _topics_and_acls(hub, catalogue, units)}
    say(f"[{c.name}] {len(pool):,} confident texts over {out['workload']['categories']:,} categories; "
        f"{len(units):,} units get tasks; starting the hub")
    names, start_s = await asyncio.to_thread(_start_hub, hub, c, c.service_env(units), cfg.http_port)
    out["hub"].update(start_s=round(start_s, 1), services=names)
    pids = hub.pids()
    out["memory"] = {"started_bytes": {n: proc_status(p).get("VmRSS", 0) for n, p in pids.items()}}
    say(f"[{c.name}] hub started in {start_s:.1f}s")
    linger_ms = int(hub.env().get("CITYOPS_LINGER_MS", ServiceSettings().linger_ms))
    watcher = Watcher(hub.bootstrap)
    await watcher.start()
    lags = LagWatch(hub.bootstrap)
    memory = MemoryWatch(pids)
    memory.reset()
    try:
        warm = submissions(pool, places, rng, cfg.warmup)
        out["warmup"] = await latency_phase(hub, watcher, warm, linger_ms, cfg)
        say(f"[{c.name}] warm-up: {out['warmup']['closed']}/{len(warm)} closed; burst of {cfg.burst}")
        await lags.start()
        with memory:
            out["pipeline"] = await pipeline_phase(hub, watcher, lags, submissions(pool, places, rng, cfg.burst),
                                                   linger_ms, cfg, await _all_topic_names(catalogue, units))
        pl = out["pipeline"]
        say(f"[{c.name}] {pl.get('tickets_per_s')} tickets/s, {pl.get('events_per_s')} events/s; "
            f"{pl['closed']}/{pl['tickets']} closed")
    finally:
        await lags.stop()
        await watcher.stop()
        out["memory"]["peak_bytes"] = memory.peaks()
        out["dead"] = hub.dead()
        hub.stop_services()
    return out


async def _all_topic_names(catalogue: Any, units: list[str]) -> list[str]:
    from contracts.topics import all_topics

    return [s.name for s in all_topics(_own_topic_units(catalogue, units))]


def run_city_bench(cfg: BenchConfig) -> Result:
    """Every city of `cfg.cities` in turn on one broker started for the run; always stops what it started."""
    from tools.kafka import KafkaLocalSettings, port_is_free

    started = time.monotonic()
    for port in (cfg.kafka_port, cfg.kafka_port + 1, cfg.http_port):
        if not port_is_free(port):
            raise ValueError(f"port {port} is in use; choose other ports (--kafka-port, --http-port)")
    if cfg.state_dir.exists():
        shutil.rmtree(cfg.state_dir)
    cfg.state_dir.mkdir(parents=True)
    res = Result(started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                 config={k: (str(v) if not isinstance(v, int | float | bool | tuple) else v) for k, v in cfg.__dict__.items()},
                 machine=machine_info(), kafka={"version": KafkaLocalSettings().version}, code={**commit_info(), "libraries": library_versions()})
    res.notes += [
        "Services read the city's catalogue through CITYOPS_<SERVICE>_CATALOGUE_PATH (intake, triage, bridge, sla, console, "
        "act, units); discover and projections keep the packaged small catalogue.",
        "Only the units the workload routes to are simulated; of them, departments, branches, district centres and "
        "the hotline get their own task topic, area units share cityops.area.tasks.v1 (keyed by unit id).",
        "Tickets are catalogue seed sentences in a wording the model did not train on, routed with confidence; "
        "each names a district, street and community (no grid, so none is merged as a repeat).",
    ]
    hub = BenchHub(cfg)
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    say = lambda m: log(m, started)  # noqa: E731
    try:
        say(f"starting a Kafka broker for this run on {hub.bootstrap}")
        res.kafka["start_seconds"] = round(hub.start_broker(), 1)
        asyncio.run(_cities(cfg, hub, res, say))
    except KeyboardInterrupt:
        res.errors.append("interrupted")
        raise
    except Exception as exc:  # recorded; the cities measured so far are kept
        res.errors.append(repr(exc))
        for name in hub.dead():
            res.errors.append(f"{name} exited; last log lines:\n{hub.log_tail(name)}")
        say(f"FAILED: {exc!r} (logs in {cfg.state_dir / 'logs'})")
    finally:
        try:
            hub.stop()
        finally:
            signal.signal(signal.SIGTERM, previous)
            res.machine["load_avg_at_end"] = list(os.getloadavg())
            res.config["total_seconds"] = round(time.monotonic() - started, 1)
            res.table = city_table(res.phases.get("cities", {}))
            res.result_path = str(write_city_result(res, cfg))
    return res


async def _cities(cfg: BenchConfig, hub: BenchHub, res: Result, say: Any) -> None:
    from services.common.kafka import ensure_topics
    from services.common.logs import configure_logging
    from tools.topics_cli import hub_topics

    configure_logging("WARNING", json=False)
    await ensure_topics(hub.bootstrap, hub_topics())
    res.phases["cities"] = {}
    for name in cfg.cities:
        res.phases["cities"][name] = await city_phase(cfg, hub, city(name), say)


def write_city_result(res: Result, cfg: BenchConfig) -> Path:
    stamp = res.started_at.replace(":", "").replace("-", "")
    out = cfg.out or RESULTS_DIR / f"bench-cities-{stamp}{'-quick' if cfg.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res.__dict__, indent=2, default=str) + "\n")
    return out


def city_result_text(res: Result, cfg: BenchConfig) -> str:
    """The side-by-side table of a run, cities in run order."""
    return format_city_table(res.table, list(res.phases.get("cities", {})) or list(cfg.cities))
