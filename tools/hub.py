"""`cityops up`: the whole hub on this machine — broker, every service as its own OS process,
simulated units, and a stream of demo complaints — with a live view of tickets moving.

Everything started here is stopped here (Ctrl-C, SIGTERM or --duration), by the pids the
supervisor recorded (tools/supervisor.py).
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import os
import random
import signal
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import typer

from services.common.settings import REPO_ROOT
from tools.credentials import HubCredentials, hub_credentials
from tools.packed import PACK_AT_MOST_CORES, PACKED_GROUPS, chosen_groups, parse_groups, usable_cores
from tools.supervisor import Probe, Supervisor, cityops_argv

WORKFLOW = ["discover", "triage", "consult", "act", "evaluate"]
OPTIONAL = ["sla", "projections", "archiver"]
# Without these no ticket moves; the benchmark stops when one of them dies.
CRITICAL = frozenset([*WORKFLOW, "units", "intake"])
NYC_SAMPLE = REPO_ROOT / "data" / "nyc311" / "nyc311_2026_subset.csv"
DEFAULT_STATE_DIR = REPO_ROOT / ".state" / "hub"
TOPICS_PER_REQUEST = 500

# What residents tell the hotline, with the small city's areas (the chaos run and the bench use them). The demo
# feed uses the texts only and pins each at a random point of a random grid of the city's map, so intake places it
# by its coordinates (most_precise_place) whichever city the hub runs.
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


def hub_service_names() -> list[str]:
    """Every process `cityops up` starts besides the broker, in start order."""
    from tools.run import available_services

    available = set(available_services())
    return WORKFLOW + [s for s in OPTIONAL if s in available] + ["units", "intake"]


def hub_process_names() -> list[str]:
    """What `cityops up` starts: the services above, then the unit HTTP bridge and the console (not in the
    benchmark's set: it measures the workflow, and nobody calls them there)."""
    from tools.run import available_services

    return hub_service_names() + [name for name in ("bridge", "console") if name in available_services()]


def intake_answers(base: str) -> Probe:
    """Readiness of the intake: its /health (no token needed) answers 200 once its broker is started."""
    return lambda: httpx.get(f"{base}/health", timeout=2).status_code == 200


def bridge_answers(base: str) -> Probe:
    """Readiness of the unit bridge: its /health answers 200."""
    return lambda: httpx.get(f"{base}/health", timeout=2).status_code == 200


def replay_answers(base: str) -> Probe:
    """Readiness of the replay API: its /health (no token needed) answers 200."""
    return lambda: httpx.get(f"{base}/health", timeout=2).status_code == 200


# The replay API (`cityops replay serve`): the read side the console asks for projections. An HTTP process with
# no metrics endpoint, so it stays out of hub_process_names (whose metrics ports are consecutive); `cityops status`
# shows it up while its pid lives.
REPLAY = "replay"


def console_answers(base: str) -> Probe:
    """Readiness of the console: its /console/health answers 200."""
    return lambda: httpx.get(f"{base}/console/health", timeout=2).status_code == 200


@dataclass
class Hub:
    kafka_port: int
    http_port: int
    state_dir: Path
    bridge_port: int = 8081
    # The first process's metrics port; the others get the next ones, in start order (0 = no metrics endpoints).
    metrics_port: int = 9400
    console_port: int = 8090
    replay_port: int = 8082
    # Services that share one process (tools/packed.py; `--groups` / `--packed`); every other one runs alone.
    groups: list[tuple[str, ...]] = field(default_factory=list)
    # Which city every service runs (CITYOPS_CITY: demo or yantai, domain/catalogue/loading.py).
    city: str = "demo"
    supervisor: Supervisor = field(init=False)
    credentials: HubCredentials = field(init=False)
    kafka: Any = None

    def __post_init__(self) -> None:
        self.credentials = hub_credentials(self.state_dir)
        self.supervisor = Supervisor(self.state_dir / "logs", env=self.env(), stop_timeout=15,
                                     kafka_env=self.service_kafka_env)

    def node(self) -> Any:
        """The hub's broker (started here or already running): its state dir holds the credentials."""
        from tools.kafka import KafkaLocalSettings, LocalKafka

        return LocalKafka(KafkaLocalSettings(state_dir=self.state_dir / "kafka"), name="hub", port=self.kafka_port)

    def service_kafka_env(self, name: str) -> dict[str, str]:
        """Each service process is its own Kafka principal (named as the service)."""
        return dict(self.node().client_env(name))

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def env(self) -> dict[str, str]:
        # Not this shell's Kafka identity: each process gets its own (service_kafka_env).
        env = {k: v for k, v in os.environ.items() if k not in ("CITYOPS_KAFKA_USERNAME", "CITYOPS_KAFKA_PASSWORD")}
        # A demo: the built-in secrets (pseudonym key) are accepted, which production refuses.
        env.update({"CITYOPS_MODE": "demo", "CITYOPS_CITY": self.city, "CITYOPS_KAFKA_BOOTSTRAP": self.bootstrap, "CITYOPS_STATE_DIR": str(self.state_dir),
                    "CITYOPS_LOG_JSON": "true", "CITYOPS_INTAKE_HTTP_PORT": str(self.http_port),
                    "CITYOPS_BRIDGE_HTTP_PORT": str(self.bridge_port),
                    # the console calls the hub's APIs as the signed-in user
                    "CITYOPS_CONSOLE_HTTP_PORT": str(self.console_port),
                    "CITYOPS_CONSOLE_INTAKE_URL": f"http://127.0.0.1:{self.http_port}",
                    "CITYOPS_CONSOLE_BRIDGE_URL": f"http://127.0.0.1:{self.bridge_port}",
                    "CITYOPS_CONSOLE_REPLAY_URL": f"http://127.0.0.1:{self.replay_port}",
                    "CITYOPS_UNIT_CALLBACKS": "true", "CITYOPS_UNIT_SUPERVISOR": "true", "PYTHONUNBUFFERED": "1",
                    # the simulated callback operators and supervisor post their decisions to intake
                    "CITYOPS_UNIT_HOTLINE_URL": f"http://127.0.0.1:{self.http_port}"})
        env.update(self.credentials.env())  # the key to check tokens; the simulated hotline staff's tokens
        return env

    def start_broker(self) -> None:
        self.kafka = self.node()
        if self.kafka.status(probe=True).answering:
            typer.echo(f"broker already running on {self.bootstrap}")
            self.kafka = None  # not ours: leave it running
            return
        started = time.monotonic()
        self.kafka.start()
        typer.echo(f"broker up on {self.bootstrap} in {time.monotonic() - started:.1f}s (Apache Kafka {self.kafka.settings.version}, KRaft)")

    def metrics_ports(self) -> dict[str, int]:
        """Each process's own metrics port (0 = none)."""
        return {name: self.metrics_port + i if self.metrics_port else 0 for i, name in enumerate(hub_process_names())}

    def start_services(self) -> None:
        from tools.packed import process_plan

        ports = self.metrics_ports()
        for members in process_plan(hub_process_names(), self.groups):
            if len(members) > 1:
                self.supervisor.start_packed(members, env={m: {"CITYOPS_METRICS_PORT": str(ports[m])} for m in members})
            else:
                self.supervisor.start_service(members[0], env={"CITYOPS_METRICS_PORT": str(ports[members[0]])})
        self.start_replay()
        self.write_process_table()
        names = ", ".join(self.supervisor)
        typer.echo(f"started {len(self.supervisor.processes)} service processes: {names} (logs in {self.state_dir / 'logs'})")
        if self.metrics_port:
            typer.echo(f"metrics on http://127.0.0.1:{min(ports.values())}-{max(ports.values())}/metrics "
                       f"({', '.join(f'{n} {p}' for n, p in ports.items())}); `cityops status --state-dir {self.state_dir}` sums them up")

    def start_replay(self) -> None:
        """The replay API reads the projections' store and, for a story from the log, the projected topics: it is
        the projections' read side, so it reads Kafka as the projections principal (whose ACLs cover those topics)."""
        self.supervisor.start(REPLAY, cityops_argv("replay", "serve", "--port", str(self.replay_port)),
                              env=self.service_kafka_env("projections"))

    def write_process_table(self) -> None:
        """What `cityops status` reads: the processes, their pids and metrics ports (again after a restart)."""
        from tools.status_cli import write_process_table

        ports = self.metrics_ports()
        # One row per service, a packed process's members sharing its pid: `cityops status` shows each service.
        rows = {member: (managed.pid, ports.get(member, 0))
                for name, managed in self.supervisor.processes.items() for member in name.split("+")}
        write_process_table(self.state_dir, self.bootstrap, rows)

    def stop(self) -> None:
        try:
            self.supervisor.stop_all()
        finally:
            if self.kafka is not None:
                self.kafka.stop()
                self.kafka = None


async def city_topics_and_acls(hub: Hub) -> list[str]:
    """The city's topics (a task topic per unit of its catalogue), created by the admin: no service may (see
    docs/security-kafka.md). The broker starts with the ACLs of the small city's topics; another city's topics get
    the services' ACLs here, so the simulated units and the services may use their task topics."""
    from domain.catalogue import catalogue_path_for_city, load_catalogue
    from services.common.kafka import ensure_topics, kafka_access
    from tools.kafka.acls import deployment_units, derive_acls
    from tools.kafka.security import sync_acls_with
    from tools.topics_cli import hub_topics

    units = load_catalogue(catalogue_path_for_city(hub.city)).own_topic_units()
    specs = hub_topics(units)
    created: list[str] = []
    # In slices: the KRaft controller refused one request for a whole city's topics when there was a topic per
    # unit (35,200, too many metadata records for one operation); 702 now, but a catalogue may grow.
    for start in range(0, len(specs), TOPICS_PER_REQUEST):
        created += await ensure_topics(hub.node().client_settings(), specs[start:start + TOPICS_PER_REQUEST])
    if hub.city != "demo":
        # The services' ACLs over every topic of the city. Per-unit principals stay the small city's: only they
        # have credentials on this broker (the simulated units run as the units service), and deriving one per
        # unit of the large city compares every task topic with every unit, 17,587 squared, per unit.
        acls = derive_acls(deployment_units(), specs)
        await sync_acls_with(kafka_access(hub.node().client_settings()).options, acls)
    return created


def seed_residents(hub: Hub) -> None:
    """The policy finds the person: the demo residents' base data goes to the register's topic (as the register's
    own principal) and today's proactive scan is requested, so grid workers' tasks appear in the first minute."""
    from contracts.topics import REGISTRY
    from tools.residents_cli import seed_demo_residents

    if hub.city != "demo":
        from tools.residents_cli import seed_city_residents

        folder = hub.state_dir / "residents" / hub.city
        report = seed_city_residents(hub.city, folder, hub.node().client_settings(REGISTRY), date.today())
        typer.echo(f"residents' base data: {report['published']:,} generated residents of {hub.city} imported "
                   f"({folder}), today's proactive scan requested (docs/proactive.md)")
        return
    report = seed_demo_residents(hub.node().client_settings(REGISTRY), date.today())
    typer.echo(f"residents' base data: {report['published']:,} demo residents imported, today's proactive scan requested "
               f"(docs/proactive.md)")


def nyc_complaints(path: Path = NYC_SAMPLE, limit: int = 2000) -> list[str]:
    """Real NYC 311 requests (NYC Open Data, see data/nyc311/PROVENANCE.md) as English complaint texts."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(itertools.islice(csv.DictReader(f), limit))
    return [f"{r['complaint_type']}: {r['descriptor']} at {r['location_type'] or 'street'}".strip() for r in rows]


def city_grids(city: str) -> list[Any]:
    """The grid polygons of the city's map, where the demo feed drops its pins."""
    from shapely.geometry import shape

    from domain.city.places import city_map_for, grid_features

    return [shape(f["geometry"]) for f in grid_features(city_map_for(city))]


def random_pin(grids: list[Any], rng: random.Random) -> dict[str, float]:
    """A point inside a random grid (drawn in its bounding box until inside, so any polygon shape will do)."""
    import shapely

    grid = rng.choice(grids)
    west, south, east, north = grid.bounds
    while True:
        lon, lat = rng.uniform(west, east), rng.uniform(south, north)
        if grid.contains(shapely.Point(lon, lat)):
            return {"lat": round(lat, 6), "lon": round(lon, 6)}


async def feed_and_watch(base: str, rate: float, duration: float | None, hub: Hub, nyc_sample: Path = NYC_SAMPLE) -> None:
    rng = random.Random(2026)
    nyc = nyc_complaints(nyc_sample)
    grids = city_grids(hub.city)
    workers = city_workers(hub.city)
    sent = 0
    started = time.monotonic()
    next_report = started
    # The demo feed submits as the demo app would (its own token); the live view reads as the demo operator.
    submit, watch = hub.credentials.bearer("app"), hub.credentials.bearer("operator")
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        while duration is None or time.monotonic() - started < duration:
            text = rng.choice(nyc) if nyc and rng.random() < 0.3 else rng.choice(DEMO_COMPLAINTS)[0]
            # Only a pin, as a resident's app sends it: intake finds the grid (and so the unit) from it.
            body = {"text": text, "location": random_pin(grids, rng), "caller_phone": f"138{rng.randrange(10**8):08d}",
                    "caller_name": "demo"}
            if rng.random() < PATROL_SHARE:
                body = patrol_report(rng, workers)
            r = await client.post("/tickets", json=body, headers=submit)
            sent += r.status_code == 202
            if time.monotonic() >= next_report:
                stats = (await client.get("/stats", headers=watch)).json()
                dead = list(hub.supervisor.dead())
                typer.echo(f"[{time.monotonic() - started:5.0f}s] submitted {sent:5d} | " +
                           " | ".join(f"{k} {v}" for k, v in sorted(stats.items())) + (f" | STOPPED: {dead}" if dead else ""))
                next_report += 3
            await asyncio.sleep(1 / rate)


# A share of the demo feed is grid workers' patrol reports of small matters of their own grid (the simulated
# workers resolve about half of those on the spot and escalate some: docs/grid-workers.md).
PATROL_SHARE = 0.15
PATROL_TEXTS = ("楼道里堆满了纸箱和旧家具，堵住了安全出口", "有人把电动车推进楼道里充电，电线从窗户拉下来",
                "单元门口消防通道被杂物堵住了")


def city_workers(city: str) -> list[Any]:
    """The grid workers of the city's roster (the small city's packaged one; one generated per grid elsewhere)."""
    from domain.catalogue import catalogue_path_for_city, load_catalogue
    from domain.grid_workers import roster_for

    catalogue = load_catalogue(catalogue_path_for_city(city))
    return list(roster_for([a.id for a in catalogue.areas if a.level == "grid"], catalogue.version).workers)


def patrol_report(rng: random.Random, workers: list[Any]) -> dict[str, Any]:
    """A grid worker's patrol report (channel grid-patrol, reported_by from the roster), placed in their grid."""
    worker = rng.choice(workers)
    return {"text": rng.choice(PATROL_TEXTS), "channel": "grid-patrol", "category": "grid.corridor-safety",
            "location": {"grid": worker.grids[0]}, "reported_by": worker.id}


def up(kafka_port: int = typer.Option(9092, help="Broker port."),
       http_port: int = typer.Option(8080, help="Intake HTTP port (OpenAPI docs at /docs)."),
       bridge_port: int = typer.Option(8081, help="Unit HTTP bridge port (OpenAPI docs at /docs)."),
       replay_port: int = typer.Option(8082, help="Replay API port (supervisors' and auditors' tokens; the console reads it)."),
       rate: float = typer.Option(2.0, help="Demo complaints per second (0 = no demo feed)."),
       duration: float = typer.Option(None, help="Stop after this many seconds (default: until Ctrl-C)."),
       console_port: int = typer.Option(8090, help="Console (web pages for operators, units, supervisors) port."),
       metrics_port: int = typer.Option(9400, help="First Prometheus metrics port: each process gets its own, the next ones in start order (0 = none)."),
       state_dir: Path = typer.Option(DEFAULT_STATE_DIR, help="Where the hub keeps its data and logs."),
       groups: str = typer.Option("", envvar="CITYOPS_UP_GROUPS", help="Services sharing one process, e.g. "
                                  "discover+triage+consult,act+evaluate (`cityops service run a b`); the others run alone."),
       packed: bool = typer.Option(None, "--packed/--separate", show_default=False,
                                   help=f"--packed: the workflow in fewer processes (--groups {PACKED_GROUPS}); --separate: "
                                        f"every service in its own. Default: packed on a machine of {PACK_AT_MOST_CORES} cores or fewer."),
       nyc_sample: Path = typer.Option(NYC_SAMPLE, help="NYC 311 CSV whose requests are part of the demo feed (default: the subset in data/nyc311/)."),
       city: str = typer.Option("demo", "--city", help="The city the hub runs: demo (68 categories, 16 grids) or yantai "
                                "(1,326 matters, 15,600 grids; docs/city-scale.md).")) -> None:
    """Bring the whole hub up: Kafka, the services (packed into fewer processes on a small machine), simulated units,
    demo complaints."""
    from domain.catalogue import catalogue_path_for_city

    try:
        process_groups = parse_groups(chosen_groups(groups, packed))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--groups") from exc
    try:
        catalogue_path_for_city(city)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--city") from exc
    hub = Hub(kafka_port, http_port, state_dir, bridge_port, metrics_port, console_port=console_port,
              replay_port=replay_port, groups=process_groups, city=city.strip().lower())
    if packed is None and not groups and process_groups:
        typer.echo(f"{usable_cores()} cores here: services packed into fewer processes (--separate runs each alone)")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        hub.start_broker()
        created = asyncio.run(city_topics_and_acls(hub))
        typer.echo(f"{len(created)} topics created")
        hub.start_services()
        base = f"http://127.0.0.1:{http_port}"
        hub.supervisor.wait_ready("intake", intake_answers(base), timeout=90)
        typer.echo(f"hotline API on {base} (docs: {base}/docs, Open311: {base}/open311/v2/services.json)")
        typer.echo(f"tokens for the demo users (operator, supervisor, auditor, app, unit, grid-worker) in "
                   f"{hub.credentials.tokens_file} (source it; hub key: {hub.credentials.key_file})")
        if "bridge" in hub.supervisor:
            bridge = f"http://127.0.0.1:{bridge_port}"
            hub.supervisor.wait_ready("bridge", bridge_answers(bridge), timeout=90)
            typer.echo(f"unit bridge on {bridge} (docs: {bridge}/docs)")
        replay = f"http://127.0.0.1:{replay_port}"
        hub.supervisor.wait_ready(REPLAY, replay_answers(replay), timeout=90)
        typer.echo(f"replay API on {replay} (docs: {replay}/docs; supervisor and auditor tokens)")
        if "console" in hub.supervisor:
            console = f"http://127.0.0.1:{console_port}"
            hub.supervisor.wait_ready("console", console_answers(console), timeout=90)
            typer.echo(f"console on {console}/console/ (sign in as a demo user: operator, supervisor, a unit, a grid worker)")
        seed_residents(hub)
        if rate > 0:
            asyncio.run(feed_and_watch(base, rate, duration, hub, nyc_sample))
        else:
            time.sleep(duration or 10**9)
    except KeyboardInterrupt:
        typer.echo("stopping")
    finally:
        # A second Ctrl-C or SIGTERM must not cut the stop short and leave processes behind;
        # the stop itself is bounded (SIGKILL after the grace period).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        hub.stop()
        typer.echo("hub stopped")
