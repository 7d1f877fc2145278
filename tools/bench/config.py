"""Settings of one benchmark run, the constants it shares, and its progress line."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from services.common.settings import REPO_ROOT
from tools.hub import NYC_SAMPLE  # the demo feed's sample: the same vendored subset

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
    kafka_port: int = 27092  # below Linux's ephemeral ports (32768-60999): a client socket cannot hold them
    http_port: int = 27080
    state_dir: Path = REPO_ROOT / ".state" / "bench"
    out: Path | None = None
    rate: float = 200.0                 # fixed offered load of the latency phase, tickets/s
    latency_s: float = 5.0
    low_fraction: float = 0.5           # second latency phase: this share of the measured capacity
    low_rate: float | None = None       # ... or this fixed rate (tickets/s), e.g. to compare two trees at one load
    low_s: float = 20.0
    nyc_speedup: float = 60.0
    nyc_s: float = 40.0
    nyc_sample: Path = NYC_SAMPLE       # data/nyc311 holds all of nyc_day; --nyc-sample for another export
    nyc_day: str = "2026-05-22"         # the sample's busiest day
    nyc_start: str = "12:20"            # the window holds its 39-a-minute peak (12:46)
    burst: int = 1000                   # tickets fed at once for the pipeline rate
    http_s: float = 10.0
    http_concurrency: int = 16
    raw_records: int = 50_000
    hop_s: float = 10.0
    warmup: int = 40
    jit_warmup_rounds: int = 4          # bursts before the ceiling until the broker's JIT settles (jit_warmup.py); 0: none
    jit_warmup_burst: int = 500
    jit_settled_share: float = 0.1      # the compiler threads' share of the broker's CPU in a burst that counts as warm
    drain_timeout_s: float = 150.0      # longest wait for a phase's tickets to close (the next phase starts clean)
    services: tuple[str, ...] = ()      # empty: the same set `cityops up` starts
    groups: str = ""                    # services sharing a process, e.g. "discover+triage,act+evaluate" (tools/packed.py)
    profile: bool = False
    rebuild_pg: str | None = None       # a PostgreSQL URL whose user may CREATE DATABASE: the rebuild runs there too
    dump_log: Path | None = None        # write every record of the run (JSON lines) here, for offline profiling
    service_env: tuple[str, ...] = ()   # extra KEY=VALUE settings for every service (experiments; recorded)
    cities: tuple[str, ...] = ()        # the city dimension (tools/bench/city.py): these cities side by side
    city_lookups: int = 20_000          # route() and locate calls timed per city

    @classmethod
    def quick_mode(cls, **overrides: Any) -> BenchConfig:
        quick = cls(quick=True, latency_s=1.0, low_s=4.0, nyc_speedup=300.0, nyc_s=4.0, burst=150, http_s=3.0,
                    raw_records=10_000, hop_s=2.0, warmup=10, drain_timeout_s=30.0,
                    jit_warmup_rounds=1, jit_warmup_burst=100)
        return dataclasses.replace(quick, **overrides)


def log(msg: str, started: float = 0.0) -> None:
    stamp = f"[bench {time.monotonic() - started:6.1f}s] " if started else "[bench] "
    typer.echo(stamp + msg)
