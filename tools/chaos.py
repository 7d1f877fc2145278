"""`cityops chaos`: the whole hub under load while its processes are killed, then an audit of what survived.

It starts the hub (tools/hub.py: broker, every service, simulated units and callback desk), submits tickets
over HTTP as the demo app with an Idempotency-Key each (a client that gets a 5xx, a timeout or no connection
sends the same request again with the same key, as a real app would), and every --kill-every seconds
SIGKILLs one service chosen at random (with --broker: the broker; with --cluster: one of three brokers) and
starts it again. When the load stops it lets the hub drain, then checks (tools/chaos_audit.py): tickets
accepted, closed, lost (accepted but never closed), duplicated effects, dead letters, outbox and parked rows
left, and whether the projections rebuilt from the log equal the live ones. It reports what it finds; the
exit code is 1 on any loss or duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import typer

from services.common.settings import REPO_ROOT
from tools.hub import DEMO_COMPLAINTS, Hub, hub_process_names, intake_answers

DEFAULT_STATE_DIR = REPO_ROOT / ".state" / "chaos"
MARKER = ".cityops-chaos"  # only a directory a chaos run made is wiped by the next one
BROKER = "broker"
# Simulated units and callback desk that answer fast, so tickets close within the run; some residents are
# unsatisfied, so tickets are reopened and closed in a later round too.
FAST_UNITS = {"CITYOPS_UNIT_SIGN_DELAY_S": "0.1", "CITYOPS_UNIT_WORK_DELAY_S": "0.3", "CITYOPS_UNIT_P_RETURN": "0",
              "CITYOPS_UNIT_P_EXTENSION": "0", "CITYOPS_UNIT_P_DISAGREE": "0", "CITYOPS_UNIT_P_SATISFIED": "0.9",
              "CITYOPS_UNIT_TICK_S": "0.1"}


@dataclass
class ChaosConfig:
    duration: float
    rate: float
    kill_every: float
    broker: bool = False
    cluster: bool = False
    seed: int = 12
    kafka_port: int = 29092
    http_port: int = 28080
    bridge_port: int = 28081
    state_dir: Path = DEFAULT_STATE_DIR
    down_s: float = 2.0          # how long a killed process stays down before it is restarted
    drain_s: float = 300.0       # longest wait for the accepted tickets to close after the load stops
    give_up_s: float = 120.0     # a client stops retrying one ticket after this long
    console_port: int = 28090    # the console runs (and is killed) too; never on a running hub's 8090


@dataclass
class Kill:
    at: float
    victim: str
    down_s: float = 0.0
    error: str = ""


@dataclass
class Load:
    accepted: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> ticket id
    retries: int = 0
    refused: dict[int, int] = field(default_factory=dict)   # 4xx status -> count (not retried)
    abandoned: int = 0                                      # gave up after give_up_s of 5xx/timeouts
    mismatched: int = 0                                     # a retry answered with another ticket id
    failures: dict[str, int] = field(default_factory=dict)  # why attempts were retried: HTTP status, timeout, no connection

    def failed(self, why: str) -> None:
        self.failures[why] = self.failures.get(why, 0) + 1


class ChaosHub(Hub):
    """The hub of tools/hub.py, on one broker or on the 3-broker cluster, with fast simulated units."""

    cluster_mode: bool = False
    cluster: Any = None

    def node(self) -> Any:
        if not self.cluster_mode:
            return super().node()
        if self.cluster is None:
            from tools.kafka import KafkaLocalSettings
            from tools.kafka.cluster import LocalKafkaCluster

            self.cluster = LocalKafkaCluster(KafkaLocalSettings(state_dir=self.state_dir / "kafka"), n=3,
                                             base_port=self.kafka_port, name="cluster", fresh=True)
        return self.cluster

    @property
    def bootstrap(self) -> str:
        return str(self.node().bootstrap) if self.cluster_mode else f"127.0.0.1:{self.kafka_port}"

    def env(self) -> dict[str, str]:
        return {**super().env(), **FAST_UNITS}

    def start_brokers(self) -> None:
        self.kafka = self.node()
        if not self.cluster_mode:
            self.kafka.fresh = True
        self.kafka.start()

    def brokers(self) -> list[Any]:
        return list(self.kafka.nodes) if self.cluster_mode else [self.kafka]

    def kill_broker(self, rng: random.Random) -> str:
        node = rng.choice(self.brokers())
        node.kill()
        return f"{BROKER} {node.name}"

    def restart_broker(self, victim: str) -> None:
        name = victim.removeprefix(f"{BROKER} ")
        node = next(n for n in self.brokers() if n.name == name)
        if self.cluster_mode:
            node.bring_up(time.monotonic() + 120)
        else:
            node.start(timeout=120)


# ============================================================================================ the load


async def submit_one(client: httpx.AsyncClient, body: dict[str, Any], key: str, load: Load, give_up_s: float) -> None:
    """POST one ticket until it is accepted or refused, retrying with the same key on 5xx, timeouts, no connection."""
    headers = {"Idempotency-Key": key}
    deadline = time.monotonic() + give_up_s
    pause = 0.5
    while True:
        r: httpx.Response | None
        try:
            r = await client.post("/tickets", json=body, headers=headers)
        except httpx.TimeoutException:
            r, why = None, "timeout"
        except httpx.HTTPError:
            r, why = None, "no connection"
        else:
            why = f"HTTP {r.status_code}" if r is not None else ""
        if r is not None and r.status_code == 202:
            ticket = r.json()["ticket_id"]
            if load.accepted.setdefault(key, ticket) != ticket:
                load.mismatched += 1
            return
        if r is not None and r.status_code < 500 and r.status_code != 429:
            load.refused[r.status_code] = load.refused.get(r.status_code, 0) + 1
            return
        if time.monotonic() > deadline:
            load.abandoned += 1
            return
        load.retries += 1
        load.failed(why)
        retry_after = r.headers.get("Retry-After") if r is not None else None
        await asyncio.sleep(float(retry_after) if retry_after and retry_after.isdigit() else pause)
        pause = min(pause * 2, 5.0)


async def feed(base: str, cfg: ChaosConfig, token: dict[str, str], load: Load, run_id: str) -> None:
    """Offer `rate` tickets a second for `duration` seconds; each ticket is its own client task."""
    rng = random.Random(cfg.seed)
    pending: set[asyncio.Task[None]] = set()
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base, timeout=10, headers=token) as client:
        n = 0
        while time.monotonic() - started < cfg.duration:
            text, location = rng.choice(DEMO_COMPLAINTS)
            body = {"text": f"{text} (#{n})", "location": location, "caller_phone": f"138{rng.randrange(10**8):08d}",
                    "caller_name": "chaos"}
            task = asyncio.create_task(submit_one(client, body, f"chaos-{run_id}-{n}", load, cfg.give_up_s))
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
            await asyncio.sleep(max(0.0, started + n / cfg.rate - time.monotonic()))
        if pending:
            await asyncio.gather(*pending)


# ============================================================================================ the faults


def victims(cfg: ChaosConfig) -> list[str]:
    return [BROKER] if cfg.broker or cfg.cluster else hub_process_names()


async def kill_on_schedule(hub: ChaosHub, cfg: ChaosConfig, stop: asyncio.Event, kills: list[Kill], t0: float) -> None:
    """Every kill_every seconds: SIGKILL one victim, leave it down for down_s, start it again."""
    rng = random.Random(cfg.seed + 1)
    names = victims(cfg)
    n = 0
    while not stop.is_set():
        n += 1  # on a fixed schedule (t0 + n * kill_every), however long the restarts took
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, t0 + n * cfg.kill_every - time.monotonic()))
            return
        name = rng.choice(names)
        kill = Kill(round(time.monotonic() - t0, 1), name)
        began = time.monotonic()
        try:
            if name == BROKER:
                kill.victim = await asyncio.to_thread(hub.kill_broker, rng)
            else:
                await asyncio.to_thread(hub.supervisor.kill, name)
            typer.echo(f"[{kill.at:6.1f}s] SIGKILL {kill.victim}")
            await asyncio.sleep(cfg.down_s)
            if name == BROKER:
                await asyncio.to_thread(hub.restart_broker, kill.victim)
            else:
                await asyncio.to_thread(hub.supervisor.restart, name)
        except Exception as exc:  # noqa: BLE001 - a failed restart is a finding, reported with the run
            kill.error = f"{type(exc).__name__}: {str(exc)[:300]}"
            typer.echo(f"[{kill.at:6.1f}s] restart of {kill.victim} FAILED: {kill.error}")
        kill.down_s = round(time.monotonic() - began, 1)
        kills.append(kill)


# ============================================================================================ the drain


async def wait_closed(hub: ChaosHub, load: Load, drain_s: float, quiet_s: float = 60.0) -> float:
    """Wait until every accepted ticket was closed, nothing closed for quiet_s, or drain_s passed."""
    from tools.chaos_audit import read_log_facts

    started = time.monotonic()
    wanted = set(load.accepted.values())
    last_count, last_change = -1, started
    while time.monotonic() - started < drain_s:
        closed = (await read_log_facts(hub.bootstrap, topics=("cityops.evaluate.v1",))).closed_tickets()
        if wanted <= closed:
            break
        count = len(wanted & closed)
        if count != last_count:
            last_count, last_change = count, time.monotonic()
            typer.echo(f"draining: {count}/{len(wanted)} accepted tickets closed")
        elif time.monotonic() - last_change > quiet_s:
            break
        await asyncio.sleep(3)
    await asyncio.sleep(5)  # the last callbacks' outbox deletes and projections folds
    return time.monotonic() - started


# ============================================================================================ the run


def prepare_state_dir(state_dir: Path) -> None:
    if state_dir.exists():
        if not (state_dir / MARKER).exists():
            raise typer.BadParameter(f"{state_dir} exists and was not made by cityops chaos; choose another --state-dir")
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True)
    (state_dir / MARKER).write_text("made by cityops chaos; wiped by the next run\n")


async def run_load(hub: ChaosHub, cfg: ChaosConfig, base: str) -> tuple[Load, list[Kill], float]:
    load, stop = Load(), asyncio.Event()
    kills: list[Kill] = []
    t0 = time.monotonic()
    killer = asyncio.create_task(kill_on_schedule(hub, cfg, stop, kills, t0))
    await feed(base, cfg, hub.credentials.bearer("app"), load, run_id=f"{cfg.seed}-{int(time.time())}")
    stop.set()
    await killer
    typer.echo(f"load done in {time.monotonic() - t0:.0f}s: {len(load.accepted)} accepted, {load.retries} retries; "
               f"{len(kills)} kills")
    drained = await wait_closed(hub, load, cfg.drain_s)
    return load, kills, drained


def run(cfg: ChaosConfig) -> dict[str, Any]:
    """Start the hub, load it while killing, drain, audit, stop everything; the findings."""
    from services.common.kafka import ensure_topics
    from tools.chaos_report import audit
    from tools.kafka.acls import ADMIN
    from tools.topics_cli import hub_topics

    prepare_state_dir(cfg.state_dir)
    hub = ChaosHub(cfg.kafka_port, cfg.http_port, cfg.state_dir, cfg.bridge_port, console_port=cfg.console_port)
    hub.cluster_mode = cfg.cluster
    hub.supervisor.env = hub.env()  # the cluster's bootstrap, the fast units
    base = f"http://127.0.0.1:{cfg.http_port}"
    try:
        hub.start_brokers()
        admin_env = hub.node().client_env(ADMIN)
        os.environ.update(admin_env)  # this process reads the log and creates the topics as the admin
        asyncio.run(ensure_topics(hub.node().client_settings(), hub_topics(), replication=3 if cfg.cluster else 1))
        hub.start_services()
        hub.supervisor.wait_ready("intake", intake_answers(base), timeout=120)
        typer.echo(f"hub up on {hub.bootstrap}, intake {base}; load {cfg.rate}/s for {cfg.duration:.0f}s, "
                   f"a kill every {cfg.kill_every:.0f}s of: {', '.join(victims(cfg))}")
        load, kills, drained = asyncio.run(run_load(hub, cfg, base))
        return audit(hub, cfg, load, kills, drained, {**hub.env(), **admin_env})
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        hub.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)


def chaos(duration: float = typer.Option(90.0, help="Seconds of load (and of kills)."),
          rate: float = typer.Option(2.0, help="Tickets submitted per second."),
          kill_every: float = typer.Option(20.0, help="Seconds between two kills."),
          broker: bool = typer.Option(False, "--broker", help="Kill the broker instead of a service."),
          cluster: bool = typer.Option(False, "--cluster", help="Run on the 3-broker cluster and kill one of its brokers."),
          seed: int = typer.Option(12, help="Seed of the load and of the choice of victims."),
          kafka_port: int = typer.Option(29092, help="Broker port (the cluster's first node; it uses 6 ports from here)."),
          http_port: int = typer.Option(28080, help="Intake HTTP port."),
          bridge_port: int = typer.Option(28081, help="Unit bridge HTTP port."),
          drain: float = typer.Option(300.0, help="Longest wait for the accepted tickets to close after the load."),
          state_dir: Path = typer.Option(DEFAULT_STATE_DIR, help="Where the run keeps its data and logs (wiped first)."),
          as_json: Path | None = typer.Option(None, "--json", help="Also write the findings to this JSON file.")) -> None:
    """Kill the hub's processes under load, then report tickets lost, effects duplicated, dead letters, rows left."""
    import json

    from tools.chaos_report import print_findings, verdict

    cfg = ChaosConfig(duration, rate, kill_every, broker, cluster, seed, kafka_port, http_port, bridge_port,
                      state_dir, drain_s=drain)
    findings = run(cfg)
    print_findings(findings)
    if as_json is not None:
        as_json.write_text(json.dumps(findings, indent=2, default=str) + "\n")
    failures = verdict(findings)
    if failures:
        typer.echo("FAILED: " + "; ".join(failures))
        raise typer.Exit(1)
    typer.echo("OK: nothing lost, nothing duplicated")
