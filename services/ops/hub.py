"""`cityops up`: the whole hub on this machine — broker, every service as its own OS process,
simulated units, and a stream of demo complaints — with a live view of tickets moving.

Everything started here is stopped here (Ctrl-C, SIGTERM or --duration), by the pids recorded.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import typer

from services.common.settings import REPO_ROOT

WORKFLOW = ["discover", "triage", "consult", "act", "evaluate"]
OPTIONAL = ["sla", "projections", "archiver"]
NYC_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "nyc311" / "nyc311_2026_merged.csv"

DEMO_COMPLAINTS = [
    ("小区门口的路灯坏了好几天了，晚上很黑", {"district": "district-east", "street": "street-east-1", "community": "community-east-1-a", "grid": "grid-east-1-a-1"}),
    ("楼上装修噪音太大，晚上十点还在施工", {"district": "district-east", "street": "street-east-2", "community": "community-east-2-a", "grid": "grid-east-2-a-1"}),
    ("我们小区停水一整天了，没有任何通知", {"district": "district-west", "street": "street-west-1", "community": "community-west-1-b", "grid": "grid-west-1-b-2"}),
    ("公司拖欠工资三个月了，老板不见人", {"district": "district-west", "street": "street-west-2"}),
    ("路边下水道堵了，污水漫到人行道上", {"district": "district-east", "street": "street-east-1", "community": "community-east-1-b", "grid": "grid-east-1-b-1"}),
    ("超市卖过期食品，要求查处", {"district": "district-west", "street": "street-west-1"}),
    ("The street light outside building 5 has been out for a week", {"district": "district-east", "street": "street-east-2", "community": "community-east-2-b", "grid": "grid-east-2-b-1"}),
    ("Loud music from the bar next door every night after midnight", {"district": "district-west", "street": "street-west-2", "community": "community-west-2-a", "grid": "grid-west-2-a-1"}),
    ("No heating in our apartment building since yesterday", {"district": "district-east", "street": "street-east-1", "community": "community-east-1-a", "grid": "grid-east-1-a-2"}),
    ("Garbage has not been collected on our street for four days", {"district": "district-west", "street": "street-west-1", "community": "community-west-1-a", "grid": "grid-west-1-a-1"}),
    ("物业不维修电梯，老人上下楼很困难", {"district": "district-east", "street": "street-east-2", "community": "community-east-2-a", "grid": "grid-east-2-a-2"}),
    ("工地扬尘严重，附近居民无法开窗", {"district": "district-west", "street": "street-west-2", "community": "community-west-2-b", "grid": "grid-west-2-b-1"}),
]


@dataclass
class Hub:
    kafka_port: int
    http_port: int
    state_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    kafka: Any = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"CITYOPS_KAFKA_BOOTSTRAP": self.bootstrap, "CITYOPS_STATE_DIR": str(self.state_dir),
                    "CITYOPS_LOG_JSON": "true", "CITYOPS_INTAKE_HTTP_PORT": str(self.http_port),
                    "CITYOPS_UNIT_CALLBACKS": "true", "CITYOPS_UNIT_SUPERVISOR": "true", "PYTHONUNBUFFERED": "1",
                    # the simulated callback operators and supervisor post their decisions to intake
                    "CITYOPS_UNIT_HOTLINE_URL": f"http://127.0.0.1:{self.http_port}"})
        return env

    def start_broker(self) -> None:
        from services.ops.kafka_local import KafkaLocalSettings, LocalKafka

        self.kafka = LocalKafka(KafkaLocalSettings(state_dir=self.state_dir / "kafka"), name="hub", port=self.kafka_port)
        if self.kafka.status(probe=True).answering:
            typer.echo(f"broker already running on {self.bootstrap}")
            self.kafka = None  # not ours: leave it running
            return
        started = time.monotonic()
        self.kafka.start()
        typer.echo(f"broker up on {self.bootstrap} in {time.monotonic() - started:.1f}s (Apache Kafka {self.kafka.settings.version}, KRaft)")

    def spawn(self, name: str, argv: list[str]) -> None:
        log_dir = self.state_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        out = open(log_dir / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen([sys.executable, "-m", "services.ops.cli", *argv], env=self.env(),
                                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT, start_new_session=True)

    def start_services(self) -> None:
        from services.ops.run import available_services

        available = set(available_services())
        for name in WORKFLOW + [s for s in OPTIONAL if s in available]:
            self.spawn(name, ["service", "run", name])
        self.spawn("units", ["service", "run", "units"])
        self.spawn("intake", ["intake", "serve"])
        typer.echo(f"started {len(self.processes)} service processes: {', '.join(self.processes)} (logs in {self.state_dir / 'logs'})")

    def stop(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes.clear()
        if self.kafka is not None:
            self.kafka.stop()
            self.kafka = None


def nyc_complaints(limit: int = 2000) -> list[str]:
    """Real NYC 311 requests (NYC Open Data, see shared/data/nyc311/PROVENANCE.md) as English complaint texts."""
    if not NYC_SAMPLE.exists():
        return []
    with NYC_SAMPLE.open(newline="", encoding="utf-8") as f:
        rows = list(itertools.islice(csv.DictReader(f), limit))
    return [f"{r['complaint_type']}: {r['descriptor']} at {r['location_type'] or 'street'}".strip() for r in rows]


async def wait_for_http(base: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(f"{base}/stats", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
    raise TimeoutError(f"intake did not answer at {base} within {timeout_s}s")


async def feed_and_watch(base: str, rate: float, duration: float | None, hub: Hub) -> None:
    rng = random.Random(2026)
    nyc = nyc_complaints()
    sent = 0
    started = time.monotonic()
    next_report = started
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        while duration is None or time.monotonic() - started < duration:
            text, loc = rng.choice(DEMO_COMPLAINTS)
            if nyc and rng.random() < 0.3:
                text, loc = rng.choice(nyc), {}
            body = {"text": text, "location": loc, "caller_phone": f"138{rng.randrange(10**8):08d}", "caller_name": "demo"}
            r = await client.post("/tickets", json=body)
            sent += r.status_code == 202
            if time.monotonic() >= next_report:
                stats = (await client.get("/stats")).json()
                dead = [n for n, p in hub.processes.items() if p.poll() is not None]
                typer.echo(f"[{time.monotonic() - started:5.0f}s] submitted {sent:5d} | " +
                           " | ".join(f"{k} {v}" for k, v in sorted(stats.items())) + (f" | STOPPED: {dead}" if dead else ""))
                next_report += 3
            await asyncio.sleep(1 / rate)


def up(kafka_port: int = typer.Option(9092, help="Broker port."),
       http_port: int = typer.Option(8080, help="Intake HTTP port (OpenAPI docs at /docs)."),
       rate: float = typer.Option(2.0, help="Demo complaints per second (0 = no demo feed)."),
       duration: float = typer.Option(None, help="Stop after this many seconds (default: until Ctrl-C)."),
       state_dir: Path = typer.Option(REPO_ROOT / ".state" / "hub", help="Where the hub keeps its data and logs.")) -> None:
    """Bring the whole hub up: Kafka, every service as its own process, simulated units, demo complaints."""
    hub = Hub(kafka_port, http_port, state_dir)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        hub.start_broker()
        from services.common.kafka import ensure_topics
        from services.ops.topics_cli import hub_topics

        created = asyncio.run(ensure_topics(hub.bootstrap, hub_topics()))
        typer.echo(f"{len(created)} topics created")
        hub.start_services()
        base = f"http://127.0.0.1:{http_port}"
        asyncio.run(wait_for_http(base))
        typer.echo(f"hotline API on {base} (docs: {base}/docs, Open311: {base}/open311/v2/services.json)")
        if rate > 0:
            asyncio.run(feed_and_watch(base, rate, duration, hub))
        else:
            time.sleep(duration or 10**9)
    except KeyboardInterrupt:
        typer.echo("stopping")
    finally:
        hub.stop()
        typer.echo("hub stopped")
