"""Warming the broker's JIT before anything is measured.

The broker is a JVM: for its first minute or two under load, HotSpot's compiler threads turn its hot paths into
machine code. Measured here (per-thread CPU of the broker through a whole `cityops bench` run): 16-17 s of its
~50 s of CPU went to the compiler threads, most of it in the first 90 s under load, which is where the ceiling
and the burst used to fall (3 ms of the broker's ~6 ms per closed ticket in the burst was the compiler). That is
a cost a hub pays once after each broker start, not per event; a year's replay runs for hours on a warm broker.

So before the raw ceiling and the burst, the bench feeds bursts of tickets through the hub until the compiler's
share of the broker's CPU in a burst falls to `settled_share` (at most `rounds` bursts), and records what the
warm-up cost. `--jit-warmup-rounds 0` measures a cold broker, as runs before this phase existed did.
"""

from __future__ import annotations

import random
import time
from typing import Any

from tools.bench.config import BenchConfig
from tools.bench.hub import BenchHub
from tools.bench.kafka_io import LagWatch, Watcher
from tools.bench.measure import JvmThreadWatch
from tools.bench.pipeline import pipeline_phase
from tools.bench.workload import TextPool, uniform_schedule

JIT = "jit compiler"


def jit_share(used: dict[str, float]) -> float | None:
    """The compiler threads' share of a JVM's CPU over a phase (None if nothing was measured)."""
    total = sum(used.values())
    return round(used.get(JIT, 0.0) / total, 3) if total > 0 else None


def settled(share: float | None, settled_share: float) -> bool:
    """Whether a burst's compiler share says the broker is warm; unmeasurable (no broker pid, not Linux) counts
    as warm, so that the bench never loops on what it cannot see."""
    return share is None or share <= settled_share


async def warm_broker_jit(hub: BenchHub, watcher: Watcher, lags: LagWatch, pool: TextPool, linger_ms: int,
                          cfg: BenchConfig, all_topics: list[str], say: Any) -> dict[str, Any]:
    """Bursts of `cfg.jit_warmup_burst` tickets until the broker's compiler share settles; what each cost."""
    rng = random.Random(2027)  # its own: the measured phases get the same tickets with or without the warm-up
    rounds: list[dict[str, Any]] = []
    started = time.monotonic()
    for n in range(1, cfg.jit_warmup_rounds + 1):
        subs = uniform_schedule(pool, rng, 0, cfg.jit_warmup_burst)
        with JvmThreadWatch(hub.broker_pid) as threads:
            burst = await pipeline_phase(hub, watcher, lags, subs, linger_ms, cfg, all_topics)
        share = jit_share(threads.used)
        rounds.append({"tickets": len(subs), "closed": burst.get("closed"), "tickets_per_s": burst.get("tickets_per_s"),
                       "broker_cpu_seconds": round(sum(threads.used.values()), 2),
                       "jit_cpu_seconds": threads.used.get(JIT, 0.0), "jit_share": share})
        say(f"  JIT warm-up burst {n}: {len(subs)} tickets at {burst.get('tickets_per_s')} tickets/s; the broker's "
            f"compiler threads {threads.used.get(JIT, 0.0):.1f} s = {share if share is not None else '?'} of its CPU")
        if settled(share, cfg.jit_settled_share):
            break
    last = rounds[-1]["jit_share"] if rounds else None
    return {"rounds": rounds, "seconds": round(time.monotonic() - started, 1),
            "jit_cpu_seconds": round(sum(r["jit_cpu_seconds"] for r in rounds), 2),
            "settled": bool(rounds) and settled(last, cfg.jit_settled_share), "settled_share": cfg.jit_settled_share}
