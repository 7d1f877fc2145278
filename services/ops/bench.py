"""`cityops bench`: how fast the hub is, measured against the raw Kafka ceiling of the same broker.

One run, one broker started for it (never a broker someone else runs), every service as its own
OS process, exactly as `cityops up` starts them. Phases (each prints a progress line):

1. broker + topics + services; a warm-up of tickets taken all the way to closed (proves every
   service is ready; the triage classifier trains or loads its cached model first);
2. ceiling: raw aiokafka produce, consume and produce+consume rates, and one raw hop's latency at
   the fixed offered load, with the records our events really are (the warm-up's own records, in
   the proportions the workflow produces them);
3. latency: intake -> assignment (TicketSubmitted put on cityops.intake.v1 with aiokafka, its
   TaskAssigned seen on cityops.act.v1) at a fixed offered load, p50/p95/p99; peak resident memory
   of the broker and of every service during that phase (VmHWM, reset before it);
4. the same under the NYC 311 sample's real arrival curve sped up N times
   (NYC Open Data, 311 Service Requests (erm2-nwe9));
5. pipeline: a burst of tickets fed at once, tickets closed per second and events per second
   across every topic while the pipeline is saturated;
6. HTTP intake: POST /tickets from concurrent clients, rate and p50/p99;
7. replay: every projection rebuilt from the log into a fresh SQLite database
   (services.projections.rebuild), in events per second; compared with the raw consume rate.

Simulated units answer at once (sign-for and work delay 0, no returns, extensions or
disagreements, residents satisfied), so a ticket's time is the hub's own time.

Every figure is printed in one table with its ratio to the raw-Kafka figure it is bounded by, and
written as JSON with the machine (cores, memory, load), the Kafka version and the commit. The
machine is shared: compare ratios within one run, not absolute numbers across runs.
Everything started here is stopped here (by recorded pid), failures and Ctrl-C included.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from services.common.settings import REPO_ROOT

NYC_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "nyc311" / "nyc311_2026_merged.csv"
NYC_ATTRIBUTION = "NYC Open Data, 311 Service Requests (erm2-nwe9)"
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
MODEL_CACHE = REPO_ROOT / ".cache" / "bench"
GIB = 1024 ** 3

TASK_ASSIGNED = b"cityops.act.task.assigned.v1"
TICKET_CLOSED = b"cityops.evaluate.ticket.closed.v1"

# Simulated units, callback operators and supervisor that answer at once and never bounce a ticket.
UNIT_ENV = {
    "CITYOPS_UNIT_SIGN_DELAY_S": "0", "CITYOPS_UNIT_WORK_DELAY_S": "0", "CITYOPS_UNIT_CALLBACKS": "true",
    "CITYOPS_UNIT_SUPERVISOR": "true", "CITYOPS_UNIT_P_RETURN": "0", "CITYOPS_UNIT_P_EXTENSION": "0",
    "CITYOPS_UNIT_P_DISAGREE": "0", "CITYOPS_UNIT_P_SATISFIED": "1", "CITYOPS_UNIT_TICK_S": "0.05",
}


# ============================================================================================ settings


@dataclass
class BenchConfig:
    quick: bool = False
    kafka_port: int = 59092
    http_port: int = 58080
    state_dir: Path = REPO_ROOT / ".state" / "bench"
    out: Path | None = None
    rate: float = 200.0                 # fixed offered load of the latency phase, tickets/s
    latency_s: float = 5.0
    low_fraction: float = 0.5           # second latency phase: this share of the measured capacity
    low_rate: float | None = None       # ... or this fixed rate (tickets/s), e.g. to compare two trees at one load
    low_s: float = 20.0
    nyc_speedup: float = 60.0
    nyc_s: float = 40.0
    nyc_day: str = "2026-05-22"         # the sample's busiest day
    nyc_start: str = "12:20"            # the window holds its 39-a-minute peak (12:46)
    burst: int = 1000                   # tickets fed at once for the pipeline rate
    http_s: float = 10.0
    http_concurrency: int = 16
    raw_records: int = 50_000
    hop_s: float = 10.0
    warmup: int = 40
    drain_timeout_s: float = 150.0      # longest wait for a phase's tickets to close (the next phase starts clean)
    services: tuple[str, ...] = ()      # empty: the same set `cityops up` starts
    profile: bool = False
    dump_log: Path | None = None        # write every record of the run (JSON lines) here, for offline profiling
    service_env: tuple[str, ...] = ()   # extra KEY=VALUE settings for every service (experiments; recorded)

    @classmethod
    def quick_mode(cls, **overrides: Any) -> BenchConfig:
        base = dict(quick=True, latency_s=1.0, low_s=4.0, nyc_speedup=300.0, nyc_s=4.0, burst=150, http_s=3.0,
                    raw_records=10_000, hop_s=2.0, warmup=10, drain_timeout_s=30.0)
        base.update(overrides)
        return cls(**base)


def log(msg: str, started: float = 0.0) -> None:
    stamp = f"[bench {time.monotonic() - started:6.1f}s] " if started else "[bench] "
    typer.echo(stamp + msg)


# ============================================================================================ numbers


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted values; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def latency_summary(seconds: Sequence[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in seconds]
    out: dict[str, Any] = {"n": len(ms)}
    for q in (50, 95, 99):
        v = percentile(ms, q)
        out[f"p{q}_ms"] = None if v is None else round(v, 2)
    out["max_ms"] = round(max(ms), 2) if ms else None
    out["mean_ms"] = round(sum(ms) / len(ms), 2) if ms else None
    return out


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return round(value / reference, 3)


# ============================================================================================ machine


def machine_info() -> dict[str, Any]:
    mem_total = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) * 1024
    cpu_model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {"cores": os.cpu_count(), "memory_bytes": mem_total,
            "memory_gib": round(mem_total / GIB, 2) if mem_total else None, "cpu_model": cpu_model,
            "load_avg_at_start": list(os.getloadavg()), "platform": platform.platform(),
            "python": platform.python_version()}


def commit_info() -> dict[str, Any]:
    """The commit and whether the tree differs from it (read-only git: no index refresh)."""
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "--no-optional-locks", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                               env=env, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    changed = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "subject": git("log", "-1", "--format=%s"),
            "dirty": bool(changed), "modified_files": changed.splitlines() if changed else []}


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("aiokafka", "faststream", "sqlalchemy", "sqlmodel", "fastapi", "uvicorn", "scikit-learn"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


# ============================================================================================ memory


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS of a process in bytes (empty if it is gone)."""
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith(("VmHWM:", "VmRSS:")):
            name, value = line.split(":", 1)
            out[name] = int(value.split()[0]) * 1024
    return out


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (None if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15 of stat)


class CpuWatch:
    """CPU seconds each process (and this benchmark) used during a phase: where a saturated hub's time goes."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {**pids, "bench (this process)": os.getpid()}
        self.start: dict[str, float | None] = {}

    def __enter__(self) -> CpuWatch:
        self.start = {name: proc_cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def __exit__(self, *_: Any) -> None:
        self.used = {}
        for name, pid in self.pids.items():
            now, then = proc_cpu_seconds(pid), self.start.get(name)
            if now is not None and then is not None:
                self.used[name] = round(now - then, 2)

    def report(self, events: int) -> dict[str, Any]:
        total = sum(self.used.values())
        return {"cpu_seconds": self.used, "cpu_seconds_total": round(total, 2),
                "cpu_us_per_event": {n: round(v * 1e6 / events) for n, v in self.used.items()} if events else {}}


def reset_peak(pid: int) -> bool:
    """Reset a process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0, our own processes only)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class MemoryWatch:
    """Peak resident memory per process (VmHWM) and of the whole hub at one instant (sampled RSS)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak_total_rss = 0
        self._task: asyncio.Task[None] | None = None

    def reset(self) -> dict[str, bool]:
        self.peak_total_rss = 0
        return {name: reset_peak(pid) for name, pid in self.pids.items()}

    def peaks(self) -> dict[str, int]:
        return {name: proc_status(pid).get("VmHWM", 0) for name, pid in self.pids.items()}

    def sample(self) -> None:
        total = sum(proc_status(pid).get("VmRSS", 0) for pid in self.pids.values())
        self.peak_total_rss = max(self.peak_total_rss, total)

    async def run(self, every_s: float = 0.5) -> None:
        while True:
            self.sample()
            await asyncio.sleep(every_s)

    def __enter__(self) -> MemoryWatch:
        self._task = asyncio.get_running_loop().create_task(self.run())
        return self

    def __exit__(self, *_: Any) -> None:
        if self._task:
            self._task.cancel()
        self.sample()


# ============================================================================================ the hub


@dataclass
class BenchHub:
    """The broker and every service process this run started; stops them all by their pids."""

    config: BenchConfig
    kafka: Any = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    broker_pid: int | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.config.kafka_port}"

    @property
    def service_state(self) -> Path:
        return self.config.state_dir / "services"

    def start_broker(self) -> float:
        from services.ops.kafka_local import KafkaLocalSettings, LocalKafka

        self.kafka = LocalKafka(KafkaLocalSettings(state_dir=self.config.state_dir / "kafka"), name="bench",
                                port=self.config.kafka_port, fresh=True)
        started = time.monotonic()
        self.kafka.start()
        self.broker_pid = self.kafka.running_pid()
        return time.monotonic() - started

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CITYOPS_")}
        env.update({"CITYOPS_KAFKA_BOOTSTRAP": self.bootstrap, "CITYOPS_STATE_DIR": str(self.service_state),
                    "CITYOPS_LOG_JSON": "true", "CITYOPS_INTAKE_HTTP_PORT": str(self.config.http_port),
                    "PYTHONUNBUFFERED": "1", **UNIT_ENV})
        env.update(dict(item.split("=", 1) for item in self.config.service_env))
        return env

    def service_names(self) -> list[str]:
        if self.config.services:
            return list(self.config.services)
        from services.ops.hub import OPTIONAL, WORKFLOW
        from services.ops.run import available_services

        available = set(available_services())
        return WORKFLOW + [s for s in OPTIONAL if s in available] + ["units", "intake"]

    def start_services(self) -> list[str]:
        logs = self.config.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.service_state.mkdir(parents=True, exist_ok=True)
        for name in self.service_names():
            argv = ["intake", "serve"] if name == "intake" else ["service", "run", name]
            out = open(logs / f"{name}.log", "ab")
            self.processes[name] = subprocess.Popen([sys.executable, "-m", "services.ops.cli", *argv], env=self.env(),
                                                    stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                                    start_new_session=True)
            out.close()
        return list(self.processes)

    def pids(self) -> dict[str, int]:
        out = {"kafka-broker": self.broker_pid} if self.broker_pid else {}
        out.update({name: p.pid for name, p in self.processes.items() if p.poll() is None})
        return out

    def dead(self, critical_only: bool = False) -> dict[str, int]:
        from services.ops.hub import WORKFLOW

        critical = set(WORKFLOW) | {"units", "intake"}
        return {name: p.returncode for name, p in self.processes.items()
                if p.poll() is not None and (not critical_only or name in critical)}

    def stop_services(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        try:
            self.stop_services()
        finally:
            if self.kafka is not None:
                self.kafka.stop()
                self.kafka = None

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.config.state_dir / "logs" / f"{name}.log"
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return ""


# ============================================================================================ workload


Location = dict[str, str]


def demo_locations() -> list[Location]:
    """Area paths of the demo complaints, without the grid: a ticket without a grid or coordinate
    has no place to be merged at, so every benchmark ticket is dispatched on its own."""
    from services.ops.hub import DEMO_COMPLAINTS

    seen: dict[str, Location] = {}
    for _, loc in DEMO_COMPLAINTS:
        trimmed = {k: v for k, v in loc.items() if k != "grid"}
        seen[json.dumps(trimmed, sort_keys=True)] = trimmed
    return list(seen.values())


def classifier_for_bench(service_state: Path) -> tuple[Any, float]:
    """The classifier the triage service will use, loaded (or trained) by triage's own cache
    (`services.triage.app.cached_default`) in the services' state dir, so that the benchmark picks
    texts that model routes with confidence. Trained models are kept in .cache/bench between runs."""
    from contracts.catalogue import load_catalogue
    from services.triage.settings import TriageSettings

    catalogue = load_catalogue()
    settings = TriageSettings(state_dir=service_state)
    min_confidence = settings.min_confidence
    service_state.mkdir(parents=True, exist_ok=True)
    for cached in MODEL_CACHE.glob("triage-default-*.model"):
        shutil.copyfile(cached, service_state / cached.name)
    try:
        from services.triage.app import cached_default
    except ImportError:  # no cache in triage: it trains at start; train the same default here
        from services.triage.classifier import default_classifier

        return default_classifier(catalogue), min_confidence
    classifier = cached_default(settings, catalogue)
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    for model in service_state.glob("triage-default-*.model"):
        if not (MODEL_CACHE / model.name).exists():
            shutil.copyfile(model, MODEL_CACHE / model.name)
    return classifier, min_confidence


def nyc_rows() -> list[dict[str, str]]:
    if not NYC_SAMPLE.exists():
        return []
    with NYC_SAMPLE.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@dataclass
class TextPool:
    """Complaint texts the classifier routes with confidence, so that every benchmark ticket is
    dispatched and none waits for an operator; for other NYC texts, the category an operator would
    pick (the NYC mapping), else a confident text in its place."""

    confident: list[str]
    category_of: dict[str, str | None]   # text -> category an operator would pick (NYC mapping), or None
    confident_set: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.confident_set = set(self.confident)

    @classmethod
    def build(cls, classifier: Any, min_confidence: float, rows: list[dict[str, str]]) -> TextPool:
        from contracts.catalogue import load_catalogue
        from services.ops.hub import DEMO_COMPLAINTS
        from services.triage.nyc311 import load_nyc_mapping, nyc_row_text

        catalogue = load_catalogue()
        mapping = load_nyc_mapping()
        texts: dict[str, str | None] = {t: None for t, _ in DEMO_COMPLAINTS}
        for row in rows:
            texts.setdefault(nyc_row_text(row), mapping.get(row.get("complaint_type", "")))
        ordered = list(texts)
        predictions = classifier.predict_many(ordered)
        confident = [t for t, p in zip(ordered, predictions)
                     if p.confidence >= min_confidence + 0.02 and catalogue.has_category(p.category)]
        return cls(confident, texts)

    def complaint(self, rng: random.Random, locations: list[Location], text: str | None = None) -> tuple[str, str | None, Location]:
        """(text, operator's category or None, location); a given text is kept when it can be routed."""
        location = rng.choice(locations)
        if text is not None and text in self.confident_set:
            return text, None, location
        if text is not None and self.category_of.get(text):
            return text, self.category_of[text], location
        return rng.choice(self.confident), None, location


@dataclass
class Submission:
    event_id: str
    ticket_id: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    at: float = 0.0          # offset in seconds from the start of the feed


def make_submission(text: str, category: str | None, location: Location, rng: random.Random, at: float = 0.0) -> Submission:
    from contracts import codec
    from contracts import events as ev
    from services.intake.domain import ComplaintIn, submission_event

    complaint = ComplaintIn(text=text, category=category, location=ev.Location(**location),
                            caller_name="bench", caller_phone=f"138{rng.randrange(10 ** 8):08d}")
    envelope = submission_event(complaint, now=datetime.now(UTC), idempotency_key=None)
    record = codec.encode(envelope)
    return Submission(envelope.id, envelope.ticket_id, record.key, record.value, record.headers, at)


def uniform_schedule(pool: TextPool, rng: random.Random, rate: float, n: int) -> list[Submission]:
    """n submissions, evenly spaced at `rate` per second (rate 0: all at once)."""
    locations = demo_locations()
    out = []
    for i in range(n):
        text, category, loc = pool.complaint(rng, locations)
        out.append(make_submission(text, category, loc, rng, at=i / rate if rate else 0.0))
    return out


def nyc_schedule(pool: TextPool, rng: random.Random, rows: list[dict[str, str]], day: str, start: str,
                 speedup: float, seconds: float) -> tuple[list[Submission], dict[str, Any]]:
    """The sample's own arrivals from `day` at `start` (HH:MM), `speedup` times faster, for `seconds`."""
    from services.triage.nyc311 import nyc_row_text

    t0 = datetime.fromisoformat(f"{day}T{start}:00")
    window = timedelta(seconds=seconds * speedup)
    chosen = sorted(((datetime.fromisoformat(r["created_date"]), r) for r in rows
                     if t0 <= datetime.fromisoformat(r["created_date"]) < t0 + window), key=lambda x: x[0])
    locations = demo_locations()
    out = []
    kept_text = with_category = 0
    for created, row in chosen:
        original = nyc_row_text(row)
        text, category, loc = pool.complaint(rng, locations, text=original)
        kept_text += text == original
        with_category += category is not None
        out.append(make_submission(text, category, loc, rng, at=(created - t0).total_seconds() / speedup))
    per_minute: dict[datetime, int] = {}
    for created, _ in chosen:
        m = created.replace(second=0, microsecond=0)
        per_minute[m] = per_minute.get(m, 0) + 1
    shape = {"source": NYC_ATTRIBUTION, "file": str(NYC_SAMPLE.relative_to(REPO_ROOT.parent)) if NYC_SAMPLE.exists() else None,
             "window_start": t0.isoformat(), "window_end": (t0 + window).isoformat(), "speedup": speedup,
             "requests": len(out), "mean_rate_per_s": round(len(out) / seconds, 1) if seconds else None,
             "peak_minute_requests": max(per_minute.values()) if per_minute else 0,
             "peak_rate_per_s": round(max(per_minute.values()) * speedup / 60, 1) if per_minute else 0,
             "own_text_classified": kept_text - with_category, "own_text_operator_category": with_category,
             "text_replaced": len(out) - kept_text}
    return out, shape


# ============================================================================================ kafka helpers


def _header(headers: Iterable[tuple[str, bytes]], name: str) -> bytes | None:
    for k, v in headers:
        if k == name:
            return v
    return None


async def _assigned_consumer(bootstrap: str, topics: Sequence[str], *, from_end: bool, **kw: Any) -> Any:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", **kw)
    await consumer.start()
    tps = []
    for topic in topics:
        parts = consumer.partitions_for_topic(topic)
        if parts is None:
            await consumer._client.force_metadata_update()  # noqa: SLF001 (a topic created a moment ago)
            parts = consumer.partitions_for_topic(topic) or set()
        tps += [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    if from_end:
        await consumer.seek_to_end(*tps)
    else:
        await consumer.seek_to_beginning(*tps)
    for tp in tps:
        await consumer.position(tp)  # resolve now, before anything is fed
    return consumer


def _producer(bootstrap: str, linger_ms: int) -> Any:
    from aiokafka import AIOKafkaProducer

    # The same settings the services' FastStream producer runs with (services.common.kafka.make_broker).
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=linger_ms)


async def total_end_offsets(consumer: Any, tps: list[Any]) -> int:
    ends = await consumer.end_offsets(tps)
    return sum(ends.values())


# ============================================================================================ watching the workflow


class Watcher:
    """Reads cityops.act.v1 and cityops.evaluate.v1 from their end: when each submission's first
    TaskAssigned (same correlation id) arrived, and when each ticket's TicketClosed did."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.sent: dict[str, float] = {}          # submitted event id -> wall time it was handed to the producer
        self.assigned: dict[str, tuple[float, float]] = {}  # event id -> (seen here, record timestamp)
        self.closed: dict[str, float] = {}        # ticket id -> seen here
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from contracts.topics import ACT, EVALUATE

        self._consumer = await _assigned_consumer(self.bootstrap, [ACT.name, EVALUATE.name], from_end=True,
                                                  fetch_max_wait_ms=50)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            now = time.time()
            for records in batch.values():
                for r in records:
                    ce_type = _header(r.headers, "ce_type")
                    if ce_type == TASK_ASSIGNED:
                        corr = (_header(r.headers, "ce_correlationid") or b"").decode()
                        if corr not in self.assigned:
                            self.assigned[corr] = (now, r.timestamp / 1000)
                    elif ce_type == TICKET_CLOSED:
                        tid = (r.key or b"").decode()
                        self.closed.setdefault(tid, now)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer:
            await self._consumer.stop()

    async def wait_closed(self, ticket_ids: Iterable[str], timeout_s: float, hub: BenchHub | None = None) -> int:
        ids = set(ticket_ids)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ids <= self.closed.keys():
                break
            if hub is not None and hub.dead(critical_only=True):
                raise RuntimeError(f"service(s) stopped: {hub.dead(critical_only=True)}")
            await asyncio.sleep(0.1)
        return len(ids & self.closed.keys())

    def latencies(self, subs: Sequence[Submission]) -> tuple[list[float], list[float], int]:
        seen, published, missing = [], [], 0
        for s in subs:
            got = self.assigned.get(s.event_id)
            if got is None or s.event_id not in self.sent:
                missing += 1
                continue
            seen.append(got[0] - self.sent[s.event_id])
            published.append(got[1] - self.sent[s.event_id])
        return seen, published, missing


def _types() -> dict[str, bytes]:
    from contracts import events as ev

    return {name: model.event_type.encode() for name, model in (
        ("submitted", ev.TicketSubmitted), ("registered", ev.TicketRegistered), ("classified", ev.TicketClassified),
        ("consultation", ev.ConsultationRequested), ("assigned", ev.TaskAssigned))}


async def hop_breakdown(bootstrap: str, subs: Sequence[Submission]) -> dict[str, Any]:
    """Where intake -> assignment time goes: for each step, the time from its input record to its
    output record (record timestamps, set by their producers), for the tickets given. A ticket
    whose category needs a consultation is assigned only after the parties answered (consult ->
    simulated units -> consult -> act): that step is reported apart from the direct one."""
    from contracts.topics import ACT, CONSULT, INTAKE, TICKETS, TRIAGE

    keys = {s.key for s in subs}
    t = _types()
    first: dict[tuple[bytes, bytes], int] = {}
    consumer = await _assigned_consumer(bootstrap, [INTAKE.name, TICKETS.name, TRIAGE.name, CONSULT.name, ACT.name],
                                        from_end=False)
    try:
        ends = await consumer.end_offsets(list(consumer.assignment()))
        want, got = sum(ends.values()), 0
        while got < want:
            batch = await consumer.getmany(timeout_ms=1000)
            if not batch:
                break
            for records in batch.values():
                got += len(records)
                for r in records:
                    if r.key in keys:
                        first.setdefault((r.key, _header(r.headers, "ce_type") or b""), r.timestamp)
    finally:
        await consumer.stop()

    def gaps(before: str, after: str, consulted: bool | None = None) -> dict[str, Any]:
        out = []
        for k in keys:
            if (k, t[before]) in first and (k, t[after]) in first:
                if consulted is not None and ((k, t["consultation"]) in first) != consulted:
                    continue
                out.append((first[(k, t[after])] - first[(k, t[before])]) / 1000)
        return latency_summary(out)

    consulted = sum(1 for k in keys if (k, t["consultation"]) in first)
    return {"discover": gaps("submitted", "registered"), "triage": gaps("registered", "classified"),
            "act": gaps("classified", "assigned", consulted=False),
            "consult+act": gaps("classified", "assigned", consulted=True),
            "consulted_share": round(consulted / len(keys), 3) if keys else None}


async def unclosed_report(http_port: int, watcher: Watcher, ticket_ids: Sequence[str], limit: int = 50) -> dict[str, Any]:
    """Where the tickets that did not close in time are, by the intake's status view (a sample)."""
    import httpx

    open_ids = [t for t in ticket_ids if t not in watcher.closed]
    statuses: dict[str, int] = {}
    if not open_ids:
        return {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=5) as client:
        for tid in open_ids[:limit]:
            try:
                r = await client.get(f"/tickets/{tid}")
                status = r.json().get("status", "?") if r.status_code == 200 else f"http {r.status_code}"
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            statuses[status] = statuses.get(status, 0) + 1
    return {"unclosed": len(open_ids), "sampled": min(limit, len(open_ids)), "status_of_sample": statuses}


async def feed(producer: Any, subs: Sequence[Submission], watcher: Watcher | None, topic: str) -> float:
    """Hand each submission to the producer at its offset from now; return the seconds it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    futures = []
    for s in subs:
        delay = start + s.at - loop.time()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        if watcher is not None:
            watcher.sent[s.event_id] = time.time()
        futures.append(await producer.send(topic, s.value, key=s.key, headers=s.headers))
    await asyncio.gather(*futures)
    return loop.time() - start


# ============================================================================================ phases


@dataclass
class Result:
    started_at: str
    config: dict[str, Any]
    machine: dict[str, Any]
    kafka: dict[str, Any]
    code: dict[str, Any]
    phases: dict[str, Any] = field(default_factory=dict)
    processes: dict[str, Any] = field(default_factory=dict)
    table: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    result_path: str | None = None


async def harvest_records(bootstrap: str, topics: Sequence[str]) -> tuple[list[tuple[bytes, bytes, list[tuple[str, bytes]]]], dict[str, Any]]:
    """Every record the warm-up wrote (all topics), as the raw benchmark's record mix."""
    consumer = await _assigned_consumer(bootstrap, topics, from_end=False)
    try:
        tps = list(consumer.assignment())
        ends = await consumer.end_offsets(tps)
        want = sum(ends.values())
        got: list[Any] = []
        deadline = time.monotonic() + 30
        while len(got) < want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                got += records
    finally:
        await consumer.stop()
    mix = [(r.key or b"", r.value or b"", list(r.headers)) for r in got if not r.topic.endswith(".dlq")]
    sizes: dict[str, list[int]] = {}
    for key, value, headers in mix:
        t = (_header(headers, "ce_type") or b"?").decode()
        sizes.setdefault(t, []).append(len(key) + len(value) + sum(len(k) + len(v) for k, v in headers))
    every = [s for v in sizes.values() for s in v]
    summary = {"records": len(mix), "mean_bytes": round(sum(every) / len(every), 1) if every else 0,
               "min_bytes": min(every, default=0), "max_bytes": max(every, default=0),
               "by_type": {t: {"count": len(v), "mean_bytes": round(sum(v) / len(v))} for t, v in sorted(sizes.items())}}
    return mix, summary


async def raw_ceiling(bootstrap: str, mix: list[tuple[bytes, bytes, list[tuple[str, bytes]]]], n: int, hop_rate: float,
                      hop_s: float, linger_ms: int, progress: Callable[[str], None]) -> dict[str, Any]:
    from contracts.topics import TopicSpec
    from services.common.kafka import ensure_topics

    topics = {"produce": "bench.raw.v1", "pipe": "bench.pipe.v1", "hop": "bench.hop.v1"}
    await ensure_topics(bootstrap, [TopicSpec(t, "benchmark scratch", ()) for t in topics.values()])
    out: dict[str, Any] = {"records": n, "linger_ms": linger_ms, "partitions": 3,
                           "producer": "aiokafka, acks=all, idempotent (as the services)"}
    rng = random.Random(7)
    records = mix * max(1, (n // max(len(mix), 1)) + 1)
    rng.shuffle(records)
    records = records[:n]
    total_bytes = sum(len(k) + len(v) + sum(len(a) + len(b) for a, b in h) for k, v, h in records)
    out["mean_record_bytes"] = round(total_bytes / n, 1)

    # produce
    producer = _producer(bootstrap, linger_ms)
    await producer.start()
    try:
        started = time.perf_counter()
        futures = []
        for key, value, headers in records:
            futures.append(await producer.send(topics["produce"], value, key=key, headers=headers))
            if len(futures) >= 20_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    out["produce_per_s"] = round(n / elapsed, 1)
    out["produce_mb_per_s"] = round(total_bytes / elapsed / 1e6, 2)
    progress(f"raw produce: {out['produce_per_s']:,.0f} records/s")

    # consume
    consumer = await _assigned_consumer(bootstrap, [topics["produce"]], from_end=False)
    try:
        started = time.perf_counter()
        count = 0
        while count < n:
            batch = await consumer.getmany(timeout_ms=1000)
            count += sum(len(v) for v in batch.values())
            if not batch and time.perf_counter() - started > 120:
                break
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
    out["consume_per_s"] = round(count / elapsed, 1)
    progress(f"raw consume: {out['consume_per_s']:,.0f} records/s")

    # produce + consume at once, one process (a record's whole trip through the broker)
    consumer = await _assigned_consumer(bootstrap, [topics["pipe"]], from_end=True)
    producer = _producer(bootstrap, linger_ms)
    await producer.start()
    try:
        received = 0

        async def drain() -> None:
            nonlocal received
            while received < n:
                batch = await consumer.getmany(timeout_ms=1000)
                received += sum(len(v) for v in batch.values())

        started = time.perf_counter()
        reader = asyncio.create_task(drain())
        futures = []
        for key, value, headers in records:
            futures.append(await producer.send(topics["pipe"], value, key=key, headers=headers))
            if len(futures) >= 20_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
        await asyncio.wait_for(reader, timeout=180)
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
        await consumer.stop()
    out["produce_consume_per_s"] = round(n / elapsed, 1)
    progress(f"raw produce+consume: {out['produce_consume_per_s']:,.0f} records/s")

    # one hop's latency at the fixed offered load: send -> ack, send -> seen by a consumer
    consumer = await _assigned_consumer(bootstrap, [topics["hop"]], from_end=True, fetch_max_wait_ms=50)
    producer = _producer(bootstrap, linger_ms)
    await producer.start()
    try:
        sent: dict[bytes, float] = {}
        seen: list[float] = []
        acks: list[float] = []
        hop_n = max(1, int(hop_rate * hop_s))

        async def watch() -> None:
            while len(seen) < hop_n:
                batch = await consumer.getmany(timeout_ms=500)
                now = time.time()
                for recs in batch.values():
                    for r in recs:
                        seen.append(now - sent[r.key])

        reader = asyncio.create_task(watch())
        loop = asyncio.get_running_loop()
        start = loop.time()
        pending = []
        for i in range(hop_n):
            delay = start + i / hop_rate - loop.time()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            key, value, headers = records[i % len(records)]
            k = f"hop-{i}".encode()
            t = time.time()
            sent[k] = t
            fut = await producer.send(topics["hop"], value, key=k, headers=headers)
            fut.add_done_callback(lambda _f, t=t: acks.append(time.time() - t))
            pending.append(fut)
        await asyncio.gather(*pending)
        await asyncio.wait_for(reader, timeout=60)
    finally:
        await producer.stop()
        await consumer.stop()
    out["hop_latency"] = {"offered_per_s": hop_rate, "send_to_seen": latency_summary(seen), "send_to_ack": latency_summary(acks)}
    progress(f"raw hop at {hop_rate:.0f}/s: p50 {out['hop_latency']['send_to_seen']['p50_ms']} ms, "
             f"p99 {out['hop_latency']['send_to_seen']['p99_ms']} ms (ack p99 {out['hop_latency']['send_to_ack']['p99_ms']} ms)")
    return out


async def latency_phase(hub: BenchHub, watcher: Watcher, subs: list[Submission], linger_ms: int,
                        cfg: BenchConfig) -> dict[str, Any]:
    from contracts.topics import INTAKE

    producer = _producer(hub.bootstrap, linger_ms)
    await producer.start()
    try:
        fed_s = await feed(producer, subs, watcher, INTAKE.name)
    finally:
        await producer.stop()
    closed = await watcher.wait_closed([s.ticket_id for s in subs], cfg.drain_timeout_s, hub)
    seen, published, missing = watcher.latencies(subs)
    duration = subs[-1].at if subs else 0.0
    return {"tickets": len(subs), "offered_per_s": round(len(subs) / duration, 1) if duration else None,
            "feed_seconds": round(fed_s, 2), "assigned": len(seen), "missing_assignment": missing, "closed": closed,
            "not_closed": await unclosed_report(cfg.http_port, watcher, [s.ticket_id for s in subs]),
            "intake_to_assignment_seen": latency_summary(seen),
            "intake_to_assignment_published": latency_summary(published)}


async def pipeline_phase(hub: BenchHub, watcher: Watcher, subs: list[Submission], linger_ms: int, cfg: BenchConfig,
                         all_topics: list[str]) -> dict[str, Any]:
    """A burst of tickets fed at once; tickets closed/s and events/s on every topic while saturated."""
    from contracts.topics import INTAKE

    offsets = await _assigned_consumer(hub.bootstrap, all_topics, from_end=True)
    tps = list(offsets.assignment())
    samples: list[tuple[float, int]] = []

    async def sample() -> None:
        while True:
            samples.append((time.time(), await total_end_offsets(offsets, tps)))
            await asyncio.sleep(0.5)

    producer = _producer(hub.bootstrap, linger_ms)
    await producer.start()
    sampler = asyncio.create_task(sample())
    try:
        await asyncio.sleep(0.6)
        first_sent = time.time()
        fed_s = await feed(producer, subs, watcher, INTAKE.name)
        closed = await watcher.wait_closed([s.ticket_id for s in subs], cfg.drain_timeout_s * 1.5, hub)
        await asyncio.sleep(1.0)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        await producer.stop()
        await offsets.stop()
    close_times = sorted(watcher.closed[s.ticket_id] for s in subs if s.ticket_id in watcher.closed)
    n = len(subs)
    out: dict[str, Any] = {"tickets": n, "closed": closed, "feed_seconds": round(fed_s, 2),
                           "not_closed": await unclosed_report(cfg.http_port, watcher, [s.ticket_id for s in subs])}
    if not close_times:
        return out
    last = close_times[-1]
    out["seconds_to_last_close"] = round(last - first_sent, 2)
    # The burst's tickets closed over the time from the first submit to the last close: every stage
    # works on the backlog at once, so this is the hub's capacity (fill and drain included).
    out["tickets_per_s"] = round(len(close_times) / (last - first_sent), 1)
    # For reference: the rate between the 10th and 90th percent of closures (the last stage's pace).
    lo, hi = close_times[int(0.1 * (len(close_times) - 1))], close_times[int(0.9 * (len(close_times) - 1))]
    span = hi - lo
    out["closing_window_tickets_per_s"] = round((int(0.9 * (len(close_times) - 1)) - int(0.1 * (len(close_times) - 1))) / span, 1) if span > 0 else None

    def events_at(t: float) -> float:
        before = [s for s in samples if s[0] <= t]
        after = [s for s in samples if s[0] >= t]
        if not before:
            return samples[0][1]
        if not after:
            return samples[-1][1]
        (t0, e0), (t1, e1) = before[-1], after[0]
        return e0 if t1 == t0 else e0 + (e1 - e0) * (t - t0) / (t1 - t0)

    base = samples[0][1]
    total_events = events_at(last) - base
    out["events_total"] = int(total_events)
    out["events_per_ticket"] = round(total_events / n, 2)
    out["events_per_s"] = round(total_events / (last - first_sent), 1)
    # Busiest second-long stretch of the run, from the samples: how fast the log grows at the peak.
    rates = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(samples, samples[2:]) if b[0] > a[0]]
    out["events_per_s_peak"] = round(max(rates), 1) if rates else None
    return out


async def http_phase(hub: BenchHub, watcher: Watcher, pool: TextPool, cfg: BenchConfig) -> dict[str, Any]:
    import httpx

    rng = random.Random(11)
    locations = demo_locations()
    base = f"http://127.0.0.1:{cfg.http_port}"
    latencies: list[float] = []
    ticket_ids: list[str] = []
    errors = 0
    stop_at = time.monotonic() + cfg.http_s
    limits = httpx.Limits(max_connections=cfg.http_concurrency, max_keepalive_connections=cfg.http_concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.monotonic() < stop_at:
            text, category, loc = pool.complaint(rng, locations)
            body = {"text": text, "location": loc, "caller_phone": f"138{rng.randrange(10 ** 8):08d}", "caller_name": "bench"}
            t = time.perf_counter()
            try:
                r = await client.post("/tickets", json=body)
            except httpx.HTTPError:
                errors += 1
                continue
            if r.status_code == 202:
                latencies.append(time.perf_counter() - t)
                ticket_ids.append(r.json()["ticket_id"])
            else:
                errors += 1

    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(cfg.http_concurrency)))
        elapsed = time.perf_counter() - started
    closed = await watcher.wait_closed(ticket_ids, cfg.drain_timeout_s, hub)
    return {"seconds": round(elapsed, 2), "concurrency": cfg.http_concurrency, "accepted": len(latencies), "errors": errors,
            "requests_per_s": round(len(latencies) / elapsed, 1), "latency": latency_summary(latencies), "closed": closed,
            "client": "httpx in the benchmark process (its CPU counts against the same 2 cores)"}


async def dump_log(bootstrap: str, topics: Sequence[str], path: Path) -> int:
    """Every record of the given topics as JSON lines (key, value and header values base64)."""
    import base64

    consumer = await _assigned_consumer(bootstrap, topics, from_end=False)
    b64 = lambda b: base64.b64encode(b or b"").decode()  # noqa: E731
    try:
        want = sum((await consumer.end_offsets(list(consumer.assignment()))).values())
        count = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as f:
            while count < want:
                batch = await consumer.getmany(timeout_ms=1000)
                if not batch:
                    break
                for records in batch.values():
                    for r in records:
                        f.write(json.dumps({"topic": r.topic, "partition": r.partition, "offset": r.offset, "ts": r.timestamp,
                                            "key": b64(r.key), "value": b64(r.value),
                                            "headers": [[k, b64(v)] for k, v in r.headers]}) + "\n")
                    count += len(records)
    finally:
        await consumer.stop()
    return count


async def raw_log_read(bootstrap: str, topics: Sequence[str]) -> dict[str, Any]:
    """A bare consumer reading the same log a rebuild reads: the replay's own ceiling."""
    consumer = await _assigned_consumer(bootstrap, topics, from_end=False)
    try:
        tps = list(consumer.assignment())
        want = sum((await consumer.end_offsets(tps)).values())
        count = 0
        started = time.perf_counter()
        while count < want:
            batch = await consumer.getmany(timeout_ms=1000)
            if not batch and time.perf_counter() - started > 120:
                break
            count += sum(len(v) for v in batch.values())
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
    return {"records": count, "seconds": round(elapsed, 3), "per_s": round(count / elapsed, 1) if elapsed else None}


async def replay_phase(hub: BenchHub, cfg: BenchConfig) -> dict[str, Any]:
    from services.common.store import make_engine

    target = cfg.state_dir / "replay"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    try:
        from services.projections.logsource import KafkaLog
        from services.projections.rebuild import rebuild
        from services.projections.settings import ProjectionsSettings
    except ImportError as exc:
        return await fallback_replay(hub, target, f"services.projections.rebuild not importable ({exc})")
    settings = ProjectionsSettings(kafka_bootstrap=hub.bootstrap, state_dir=target)
    topics = settings.projected_topics()
    ceiling = await raw_log_read(hub.bootstrap, topics)
    attempts = 0
    while True:
        attempts += 1
        db = target / f"projections-rebuild-{attempts}.db"
        engine = make_engine(f"sqlite:///{db}")
        source = KafkaLog(hub.bootstrap, topics)
        try:
            report = await rebuild(engine, source, batch=settings.rebuild_batch, fold_batch=settings.fold_batch)
        except Exception as exc:  # the projections service is new: fall back rather than lose the run
            log(f"  projections rebuild failed ({exc!r}); replaying through the shared pipeline instead")
            return await fallback_replay(hub, target, f"services.projections.rebuild failed: {exc!r}")
        finally:
            with contextlib.suppress(Exception):
                await source.close()
            engine.dispose()
        # KafkaLog lists partitions from the consumer's cluster metadata right after start; on a busy
        # machine that metadata can still be empty and the rebuild reads nothing: try again.
        if report.records_read or not ceiling["records"] or attempts >= 3:
            break
        log(f"  rebuild read 0 of {ceiling['records']} records (attempt {attempts}); trying again")
    r = report.as_dict() if hasattr(report, "as_dict") else dict(report.__dict__)
    return {"mode": "services.projections.rebuild (every projection, fresh SQLite)", "topics": topics,
            "events_per_s": r.get("events_per_second"), "report": r, "attempts": attempts, "raw_read_same_log": ceiling}


async def fallback_replay(hub: BenchHub, target: Path, why: str) -> dict[str, Any]:
    """The whole log through a projection-like consumer on the shared pipeline, into a fresh SQLite DB."""
    from sqlmodel import Field as SqlField, Session, SQLModel, select

    from contracts.topics import WORKFLOW_TOPICS
    from services.common.pipeline import EventPipeline, HandlerSpec, NoDeps
    from services.common.settings import ServiceSettings
    from services.common.store import create_tables, make_engine

    class BenchTicketView(SQLModel, table=True):
        __tablename__ = "bench_ticket_view"
        __table_args__ = {"extend_existing": True}
        ticket_id: str = SqlField(primary_key=True)
        last_type: str
        events: int = 0

    def handle(ctx: Any, envelope: Any) -> list[Any]:
        row = ctx.session.get(BenchTicketView, envelope.ticket_id) or BenchTicketView(ticket_id=envelope.ticket_id, last_type="")
        row.last_type, row.events = envelope.type, row.events + 1
        ctx.session.add(row)
        return []

    topics = [s.name for s in WORKFLOW_TOPICS if s.events]
    types = [t for s in WORKFLOW_TOPICS for t in s.event_types]
    ceiling = await raw_log_read(hub.bootstrap, topics)
    engine = make_engine(f"sqlite:///{target / 'replay-fallback.db'}")
    await asyncio.to_thread(create_tables, engine, [BenchTicketView.__table__])
    settings = ServiceSettings(kafka_bootstrap=hub.bootstrap, state_dir=target)
    spec = HandlerSpec(topics=topics, event_types=types, deps=NoDeps(), handle=handle)
    pipeline = EventPipeline(name="bench-replay", settings=settings, engine=engine, spec=spec)
    pipeline.broker = object()  # nothing is published: _publish only checks it is set
    consumer = await _assigned_consumer(hub.bootstrap, topics, from_end=False)
    try:
        want = sum((await consumer.end_offsets(list(consumer.assignment()))).values())
        count = 0
        started = time.perf_counter()
        while count < want:
            batch = await consumer.getmany(timeout_ms=1000, max_records=settings.batch_max_records)
            records = [r for v in batch.values() for r in v]
            if not records and time.perf_counter() - started > 120:
                break
            await pipeline.handle_records(records)
            count += len(records)
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
        engine.dispose()
    with Session(make_engine(f"sqlite:///{target / 'replay-fallback.db'}")) as session:
        rows = len(session.exec(select(BenchTicketView)).all())
    return {"mode": "fallback: whole log through the shared pipeline into a fresh SQLite ticket view", "why": why,
            "topics": topics, "events_per_s": round(count / elapsed, 1) if elapsed else None, "records": count,
            "seconds": round(elapsed, 3), "tickets": rows, "raw_read_same_log": ceiling}


# ============================================================================================ profiling (optional)


class Profiler:
    """py-spy on every service process during one phase, if py-spy is installed (`--profile`)."""

    def __init__(self, out_dir: Path, pids: dict[str, int], seconds: float) -> None:
        self.out_dir, self.pids, self.seconds = out_dir, pids, seconds
        self.procs: list[subprocess.Popen[bytes]] = []
        self.files: dict[str, str] = {}

    def __enter__(self) -> Profiler:
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(exe).exists():
            return self
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            if name == "kafka-broker":
                continue
            path = self.out_dir / f"{name}.collapsed.txt"
            self.files[name] = str(path)
            self.procs.append(subprocess.Popen([exe, "record", "--pid", str(pid), "--duration", str(int(self.seconds)),
                                                "--rate", "50", "--format", "raw", "--output", str(path), "--nonblocking"],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return self

    def __exit__(self, *_: Any) -> None:
        for p in self.procs:
            try:
                p.wait(timeout=self.seconds + 30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# ============================================================================================ the table


def build_table(res: Result) -> list[dict[str, Any]]:
    p = res.phases
    raw = p.get("ceiling", {})
    hop = raw.get("hop_latency", {})
    hop_seen, hop_ack = hop.get("send_to_seen", {}), hop.get("send_to_ack", {})
    pipe = raw.get("produce_consume_per_s")
    rows: list[dict[str, Any]] = []

    def row(figure: str, value: Any, unit: str, reference: str, r: float | None, target: str = "", met: bool | None = None) -> None:
        rows.append({"figure": figure, "value": value, "unit": unit, "reference": reference, "ratio": r,
                     "target": target, "met": met})

    row("raw aiokafka produce", raw.get("produce_per_s"), "records/s", "itself", 1.0 if raw.get("produce_per_s") else None)
    row("raw aiokafka consume", raw.get("consume_per_s"), "records/s", "itself", 1.0 if raw.get("consume_per_s") else None)
    row("raw aiokafka produce+consume", pipe, "records/s", "itself", 1.0 if pipe else None)
    row(f"raw hop latency p99 @{hop.get('offered_per_s', 0):.0f}/s", hop_seen.get("p99_ms"), "ms", "itself",
        1.0 if hop_seen.get("p99_ms") else None)

    pl = p.get("pipeline", {})
    ept = pl.get("events_per_ticket")
    ev_s = pl.get("events_per_s")
    r = ratio(ev_s, pipe)
    row("pipeline events/s (all topics)", ev_s, "events/s", "raw produce+consume", r, ">= 0.5 x raw",
        None if r is None else r >= 0.5)
    t_s = pl.get("tickets_per_s")
    row("pipeline tickets/s (intake -> closed)", t_s, "tickets/s",
        f"raw produce+consume / {ept} events per ticket", ratio(t_s, pipe / ept if pipe and ept else None))

    low = p.get("latency_low", {})
    for key, label in (("latency", f"intake -> assignment @{res.config.get('rate', 0):.0f}/s"),
                       ("latency_low", f"intake -> assignment @{low.get('offered_per_s') or 0:.0f}/s "
                                       f"({low.get('fraction_of_capacity') or 0:.0%} of capacity)"),
                       ("nyc_curve", f"intake -> assignment, NYC 311 curve x{res.config.get('nyc_speedup', 0):.0f}")):
        if key not in p:
            continue
        lat = p.get(key, {}).get("intake_to_assignment_seen", {})
        for q in (50, 95, 99):
            v = lat.get(f"p{q}_ms")
            target, met = ("<= 100 ms", None if v is None else v <= 100) if (q == 99 and key == "latency") else ("", None)
            row(f"{label} p{q}", v, "ms", f"raw hop p{q} (x)", ratio(v, hop_seen.get(f"p{q}_ms")), target, met)

    h = p.get("http", {})
    row("HTTP intake POST /tickets", h.get("requests_per_s"), "requests/s", "raw produce", ratio(h.get("requests_per_s"), raw.get("produce_per_s")))
    hl = h.get("latency", {})
    row("HTTP intake p50", hl.get("p50_ms"), "ms", "raw produce ack p50 (x)", ratio(hl.get("p50_ms"), hop_ack.get("p50_ms")))
    row("HTTP intake p99", hl.get("p99_ms"), "ms", "raw produce ack p99 (x)", ratio(hl.get("p99_ms"), hop_ack.get("p99_ms")))

    rp = p.get("replay", {})
    r = ratio(rp.get("events_per_s"), raw.get("consume_per_s"))
    row("replay: rebuild of all projections", rp.get("events_per_s"), "events/s", "raw consume", r, ">= 0.5 x raw",
        None if r is None else r >= 0.5)

    mem = res.processes.get("memory_at_fixed_load", {})
    for name, peak in mem.get("peak_bytes", {}).items():
        row(f"peak RSS {name} @{res.config.get('rate', 0):.0f}/s", round(peak / 2 ** 20, 1), "MiB", "share of 2 GiB", ratio(peak, 2 * GIB))
    total = mem.get("sum_of_peaks_bytes")
    if total:
        row("peak RSS whole hub (sum of per-process peaks)", round(total / 2 ** 20, 1), "MiB", "share of 2 GiB",
            ratio(total, 2 * GIB), "< 2048 MiB", total < 2 * GIB)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) >= 100 else f"{v:,.2f}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    header = ("figure", "value", "unit", "ratio", "vs", "target", "met")
    lines = [[r["figure"], fmt(r["value"]), r["unit"], fmt(r["ratio"]), r["reference"], r["target"],
              "" if r["met"] is None else ("yes" if r["met"] else "NO")] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    for line in lines:
        out.append("  ".join((c.rjust(w) if i in (1, 3) else c.ljust(w)) for i, (c, w) in enumerate(zip(line, widths))))
    return "\n".join(out)


# ============================================================================================ the run


async def _run(cfg: BenchConfig, hub: BenchHub, res: Result, started: float) -> None:
    from services.common.kafka import ensure_topics
    from services.common.logs import configure_logging
    from services.common.settings import ServiceSettings
    from services.ops.hub import wait_for_http
    from services.ops.topics_cli import hub_topics

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
    rows = await asyncio.to_thread(nyc_rows)
    pool = await asyncio.to_thread(TextPool.build, classifier, min_conf, rows)
    res.phases["workload"] = {"confident_texts": len(pool.confident), "classifier_seconds": round(time.monotonic() - t, 1),
                              "nyc_rows": len(rows), "nyc_source": NYC_ATTRIBUTION}
    del classifier

    names = hub.start_services()
    say(f"started {len(names)} service processes: {', '.join(names)}")
    await wait_for_http(f"http://127.0.0.1:{cfg.http_port}", timeout_s=180)

    watcher = Watcher(hub.bootstrap)
    await watcher.start()
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

        # -- ceiling
        mix, sizes = await harvest_records(hub.bootstrap, all_topics)
        res.phases["record_sizes"] = sizes
        say(f"ceiling: {cfg.raw_records:,} records like ours (mean {sizes['mean_bytes']} bytes, "
            f"{len(sizes['by_type'])} event types), raw aiokafka on the same broker")
        res.phases["ceiling"] = await raw_ceiling(hub.bootstrap, mix, cfg.raw_records, cfg.rate, cfg.hop_s, linger_ms, say)

        # -- pipeline rate (first: the fixed-load phases are read against the capacity it finds)
        say(f"pipeline: burst of {cfg.burst} tickets, intake -> closed, events on every topic")
        subs = uniform_schedule(pool, rng, 0, cfg.burst)
        prof = Profiler(REPO_ROOT / "benchmarks" / "profiles", hub.pids(), 20) if cfg.profile else contextlib.nullcontext()
        with prof, CpuWatch(hub.pids()) as cpu:
            res.phases["pipeline"] = await pipeline_phase(hub, watcher, subs, linger_ms, cfg, all_topics)
        if cfg.profile:
            res.phases["pipeline"]["profiles"] = prof.files  # type: ignore[union-attr]  # prof is the Profiler when cfg.profile
        pl = res.phases["pipeline"]
        pl["cpu"] = cpu.report(pl.get("events_total") or 0)
        say(f"  {pl.get('tickets_per_s')} tickets/s, {pl.get('events_per_s')} events/s (peak {pl.get('events_per_s_peak')}/s; "
            f"{pl.get('events_per_ticket')} events per ticket); {pl['closed']}/{pl['tickets']} closed")
        busiest = sorted(pl["cpu"]["cpu_seconds"].items(), key=lambda kv: -kv[1])
        say("  CPU seconds in the burst: " + ", ".join(f"{n} {v:.1f}" for n, v in busiest)
            + f" (total {pl['cpu']['cpu_seconds_total']:.1f})")

        # -- latency at the fixed offered load, with the memory peak of that phase
        pids = hub.pids()
        memory = MemoryWatch(pids)
        res.processes["before_fixed_load_peak_bytes"] = memory.peaks()
        memory.reset()
        say(f"latency: {cfg.rate:.0f} tickets/s for {cfg.latency_s:.0f}s, intake -> assignment")
        subs = uniform_schedule(pool, rng, cfg.rate, int(cfg.rate * cfg.latency_s))
        with memory:
            res.phases["latency"] = await latency_phase(hub, watcher, subs, linger_ms, cfg)
        res.phases["latency"]["steps"] = await hop_breakdown(hub.bootstrap, subs)
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
        say(f"latency: {low:.1f} tickets/s ({fraction or 0:.0%} of the measured capacity) for {cfg.low_s:.0f}s")
        subs = uniform_schedule(pool, rng, low, max(1, int(low * cfg.low_s)))
        res.phases["latency_low"] = {"fraction_of_capacity": fraction,
                                     **await latency_phase(hub, watcher, subs, linger_ms, cfg),
                                     "steps": await hop_breakdown(hub.bootstrap, subs)}
        lat = res.phases["latency_low"]["intake_to_assignment_seen"]
        steps = res.phases["latency_low"]["steps"]
        say(f"  p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, p99 {lat['p99_ms']} ms; p50 by step: "
            + ", ".join(f"{k} {v['p50_ms']} ms" for k, v in steps.items() if isinstance(v, dict))
            + f" ({steps['consulted_share'] or 0:.0%} of tickets consulted first)")

        # -- NYC 311 arrival curve
        if rows:
            subs, shape = nyc_schedule(pool, rng, rows, cfg.nyc_day, cfg.nyc_start, cfg.nyc_speedup, cfg.nyc_s)
            say(f"NYC 311 curve: {shape['requests']} requests of {shape['window_start']}..{shape['window_end']} "
                f"x{cfg.nyc_speedup:.0f} (mean {shape['mean_rate_per_s']}/s, peak minute {shape['peak_rate_per_s']}/s)")
            res.phases["nyc_curve"] = {"shape": shape, **await latency_phase(hub, watcher, subs, linger_ms, cfg),
                                       "steps": await hop_breakdown(hub.bootstrap, subs)}
            lat = res.phases["nyc_curve"]["intake_to_assignment_seen"]
            say(f"  p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, p99 {lat['p99_ms']} ms")
        else:
            res.notes.append(f"NYC sample not found at {NYC_SAMPLE}: arrival-curve phase skipped")

        # -- HTTP intake
        say(f"HTTP intake: POST /tickets, {cfg.http_concurrency} clients for {cfg.http_s:.0f}s")
        res.phases["http"] = await http_phase(hub, watcher, pool, cfg)
        h = res.phases["http"]
        say(f"  {h['requests_per_s']} requests/s, p50 {h['latency']['p50_ms']} ms, p99 {h['latency']['p99_ms']} ms")
        if cfg.dump_log:
            n = await dump_log(hub.bootstrap, all_topics, cfg.dump_log)
            say(f"wrote {n} records to {cfg.dump_log}")
    finally:
        await watcher.stop()

    # -- memory over the whole run, then stop the services so the replay has the machine
    pids = hub.pids()
    res.processes["memory_whole_run_peak_bytes"] = {n: proc_status(p).get("VmHWM", 0) for n, p in pids.items()}
    res.processes["dead_before_stop"] = hub.dead()
    say("stopping services for the replay")
    hub.stop_services()
    res.processes["exit_codes"] = {n: p.returncode for n, p in hub.processes.items()}

    say("replay: rebuild every projection from the log into a fresh SQLite database")
    res.phases["replay"] = await replay_phase(hub, cfg)
    rp = res.phases["replay"]
    say(f"  {rp.get('events_per_s')} events/s ({rp['mode']}); bare read of the same log {rp['raw_read_same_log']['per_s']}/s")


def dataclasses_replace(obj: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(obj, **changes)


def run_bench(cfg: BenchConfig) -> Result:
    """Run every phase; always stop what was started; return (and write) the result."""
    from services.ops.kafka_local import KafkaLocalSettings, port_is_free

    started = time.monotonic()
    for port in (cfg.kafka_port, cfg.kafka_port + 1, cfg.http_port):
        if not port_is_free(port):
            raise typer.BadParameter(f"port {port} is in use; choose other ports (--kafka-port, --http-port)")
    if cfg.state_dir.exists():
        shutil.rmtree(cfg.state_dir)
    cfg.state_dir.mkdir(parents=True)
    res = Result(started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                 config={k: (str(v) if isinstance(v, Path) else v) for k, v in cfg.__dict__.items()},
                 machine=machine_info(), kafka={"version": KafkaLocalSettings().version, "mode": "KRaft, single node, 127.0.0.1",
                                                "heap": KafkaLocalSettings().heap},
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


def bench(
    quick: bool = typer.Option(False, "--quick", help="A short run (under 2 minutes): fewer records, shorter phases."),
    kafka_port: int = typer.Option(59092, help="Port of the broker started for this run (and port+1 for its controller)."),
    http_port: int = typer.Option(58080, help="Port of the intake HTTP API started for this run."),
    rate: float = typer.Option(200.0, help="Fixed offered load of the latency phase, tickets/s."),
    latency_seconds: float = typer.Option(None, help="Length of the fixed-load phase (default 5, quick 1)."),
    low_seconds: float = typer.Option(None, help="Length of the below-saturation latency phase (default 20, quick 4)."),
    low_rate: float = typer.Option(None, help="Offered load of that phase in tickets/s (default: half the capacity the burst measured)."),
    nyc_speedup: float = typer.Option(None, help="How many times faster than real the NYC 311 arrivals are replayed (default 60, quick 300)."),
    nyc_seconds: float = typer.Option(None, help="Wall seconds of the NYC 311 curve phase (default 40, quick 4)."),
    burst: int = typer.Option(None, help="Tickets fed at once for the pipeline rate (default 1000, quick 150)."),
    http_seconds: float = typer.Option(None, help="Length of the HTTP phase (default 10, quick 3)."),
    http_concurrency: int = typer.Option(16, help="Concurrent HTTP clients."),
    raw_records: int = typer.Option(None, help="Records for the raw produce/consume ceiling (default 50000, quick 10000)."),
    services: str = typer.Option("", help="Comma-separated services to start (default: what `cityops up` starts)."),
    state_dir: Path = typer.Option(REPO_ROOT / ".state" / "bench", help="Scratch directory (wiped at start)."),
    out: Path = typer.Option(None, help="JSON result file (default benchmarks/results/bench-<time>.json)."),
    profile: bool = typer.Option(False, help="Record py-spy profiles of every service during the pipeline phase (needs py-spy)."),
    dump_log: Path = typer.Option(None, help="Also write every record of the run here (JSON lines), for offline profiling."),
    env: list[str] = typer.Option([], "--env", help="KEY=VALUE setting for every service, e.g. CITYOPS_LINGER_MS=0 (repeatable; recorded in the JSON)."),
) -> None:
    """Measure the hub against the raw Kafka ceiling of a broker started for the run; print one table, write JSON."""
    overrides = {k: v for k, v in {"latency_s": latency_seconds, "low_s": low_seconds, "low_rate": low_rate, "nyc_speedup": nyc_speedup, "nyc_s": nyc_seconds,
                                   "burst": burst, "http_s": http_seconds, "raw_records": raw_records}.items() if v is not None}
    common = dict(kafka_port=kafka_port, http_port=http_port, rate=rate, http_concurrency=http_concurrency,
                  services=tuple(s.strip() for s in services.split(",") if s.strip()), state_dir=state_dir, out=out,
                  profile=profile, dump_log=dump_log, service_env=tuple(env))
    bad = [e for e in env if "=" not in e or not e.startswith("CITYOPS_")]
    if bad:
        raise typer.BadParameter(f"--env takes CITYOPS_<SETTING>=VALUE, not {bad}")
    cfg = BenchConfig.quick_mode(**common, **overrides) if quick else BenchConfig(**common, **overrides)
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


app = typer.Typer(add_completion=False)
app.command()(bench)


if __name__ == "__main__":
    app()
