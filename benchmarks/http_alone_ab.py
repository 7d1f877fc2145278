"""`cityops bench`'s "HTTP intake alone" phase (tools/bench/http_intake.py: intake + broker, the load generator
tools/bench/loadgen.py in its own process, 16 connections) for several trees in ONE run: one broker, intake
started from each tree in turn (its working directory, so `python -m tools.cli` imports that tree's code),
interleaved for `rounds` rounds. One JSON line per run: GET /health (the client's ceiling), POST /tickets
requests/s, p50/p99, CPU µs per request of intake and the broker.

    python benchmarks/http_alone_ab.py /work/main,/work/wt/http --rounds 2 --seconds 8 [--profile DIR]

`--profile DIR` records a py-spy profile of intake during each POST phase (DIR/<tree>-<round>.txt, summarised
by benchmarks/profile_summary.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

from tools.bench.config import BenchConfig
from tools.bench.http_intake import http_alone_phase
from tools.bench.hub import BenchHub
from tools.bench.workload import demo_locations
from tools.supervisor import Supervisor

TEXTS = ["路灯不亮了，晚上很黑", "小区门口垃圾堆积好几天没人清理", "噪音扰民，夜里施工", "下水道堵塞污水外溢",
         "Streetlight out on the corner"]


def complaint_bodies(n: int = 256) -> list[dict[str, Any]]:
    """Complaints like the bench's (no classifier needed here: intake does not classify)."""
    rng, locations = random.Random(12), demo_locations()
    return [{"text": f"{rng.choice(TEXTS)} #{i}", "location": rng.choice(locations), "caller_name": "bench",
             "caller_phone": f"138{rng.randrange(10 ** 8):08d}"} for i in range(n)]


async def profile_intake(hub: BenchHub, seconds: float, out: Path) -> None:
    """py-spy on intake once its GET /health phase is over (startup and that phase take about seconds + 6 s)."""
    assert hub.supervisor is not None
    while "intake" not in hub.supervisor.pids():
        await asyncio.sleep(0.2)
    pid = hub.supervisor.pids()["intake"]
    await asyncio.sleep(seconds + 6)
    spy = await asyncio.create_subprocess_exec(
        shutil.which("py-spy") or "py-spy", "record", "--pid", str(pid), "--duration", str(max(1, int(seconds) - 3)),
        "--rate", "100", "--format", "raw", "--output", str(out), "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await spy.wait()


async def compare(hub: BenchHub, cfg: BenchConfig, trees: list[str], rounds: int, profile_dir: Path | None) -> None:
    from services.common.kafka import ensure_topics
    from tools.topics_cli import hub_topics

    await ensure_topics(hub.bootstrap, hub_topics())
    hub.supervisor = Supervisor(cfg.state_dir / "logs", env=hub.env(), kafka_env=hub.kafka.client_env)
    for round_ in range(rounds):
        for tree in trees:
            hub.supervisor.cwd = Path(tree)
            spy = None
            if profile_dir is not None:
                out = profile_dir / f"{Path(tree).name}-{round_}.txt"
                spy = asyncio.create_task(profile_intake(hub, cfg.http_s, out))
            result = await http_alone_phase(hub, complaint_bodies(), cfg)
            if spy is not None:
                await spy
            post = result["post_tickets"]
            print(json.dumps({"tree": tree, "round": round_, "load_avg": round(os.getloadavg()[0], 1),
                              "get_health_per_s": result["client_ceiling_get_health"]["requests_per_s"],
                              "post_per_s": post["requests_per_s"], "p50_ms": post["latency"]["p50_ms"],
                              "p99_ms": post["latency"]["p99_ms"], "by_status": post.get("by_status"),
                              "cpu_us_per_request": result["cpu"]["cpu_us_per_event"]}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", help="comma-separated checkouts, e.g. /work/main,/work/wt/http")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--kafka-port", type=int, default=int(os.environ.get("CITYOPS_TEST_KAFKA_PORT", 27092)))
    parser.add_argument("--http-port", type=int, default=int(os.environ.get("CITYOPS_TEST_HTTP_PORT", 27080)))
    parser.add_argument("--state-dir", type=Path, default=Path(".state/http-alone-ab"))
    parser.add_argument("--profile", type=Path, default=None, help="write py-spy profiles of intake here")
    args = parser.parse_args()
    cfg = BenchConfig(kafka_port=args.kafka_port, http_port=args.http_port, state_dir=args.state_dir.resolve(),
                      http_s=args.seconds)
    shutil.rmtree(cfg.state_dir, ignore_errors=True)
    cfg.state_dir.mkdir(parents=True)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    hub = BenchHub(cfg)
    try:
        hub.start_broker()
        asyncio.run(compare(hub, cfg, [t.strip() for t in args.trees.split(",")], args.rounds, args.profile))
    finally:
        hub.stop()


if __name__ == "__main__":
    main()
