"""`cityops status`: the whole hub at a glance. Each process up or not, its lag, what it dead-lettered, what waits
parked or in its outbox, and (sla) the timers due, read from each process's metrics endpoint.

`cityops up` writes which processes it started, their pids and metrics ports to `<state-dir>/processes.json`
(`write_process_table`); this command reads that table, asks each endpoint (services/common/metrics.py) and
whether each pid still lives. A process is up when its endpoint answers (or, without one, when its pid lives);
the exit code is 1 when any process or the broker is down, so a script or a cron job can alert on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import typer
from prometheus_client.parser import text_string_to_metric_families

from services.common.settings import REPO_ROOT

DEFAULT_STATE_DIR = REPO_ROOT / ".state" / "hub"
TABLE_FILE = "processes.json"

Fetch = Callable[[str], str | None]  # metrics URL -> exposition text, or None when nothing answers


# ---------------------------------------------------------------------------------------------- the table


def write_process_table(state_dir: Path, bootstrap: str, processes: Mapping[str, tuple[int, int]]) -> Path:
    """Record the hub's processes: name -> (pid, metrics port; 0 = none). Written again after a restart."""
    table = {"bootstrap": bootstrap, "processes": {
        name: {"pid": pid, "metrics": f"http://127.0.0.1:{port}/metrics" if port else None}
        for name, (pid, port) in processes.items()}}
    path = state_dir / TABLE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(table, indent=2), encoding="utf-8")
    tmp.replace(path)  # a reader never sees half a table
    return path


def read_process_table(state_dir: Path) -> dict[str, Any] | None:
    path = state_dir / TABLE_FILE
    if not path.exists():
        return None
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


# ---------------------------------------------------------------------------------------------- one process


@dataclass
class ProcessStatus:
    name: str
    up: bool
    pid: int | None
    pid_alive: bool
    metrics: str | None
    lag: float | None = None
    applied: float | None = None
    dead_lettered: float | None = None
    parked: float | None = None
    outbox: float | None = None
    timers_due: float | None = None
    failed_batches: float | None = None
    batch_ms: float | None = None  # mean time per batch since the process started


def sums(text: str) -> dict[str, float]:
    """Every sample of the exposition text summed by sample name (over consumers, topics and partitions)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + float(sample.value)
    return out


def process_status(name: str, entry: Mapping[str, Any], fetch: Fetch, alive: Callable[[int], bool]) -> ProcessStatus:
    pid, url = entry.get("pid"), entry.get("metrics")
    pid_alive = pid is not None and alive(int(pid))
    text = fetch(url) if url else None
    if text is None:
        return ProcessStatus(name, up=pid_alive and not url, pid=pid, pid_alive=pid_alive, metrics=url)
    s = sums(text)
    count = s.get("cityops_batch_seconds_count", 0.0)
    return ProcessStatus(
        name, up=True, pid=pid, pid_alive=pid_alive, metrics=url, lag=s.get("cityops_consumer_lag", 0.0),
        applied=s.get("cityops_records_applied_total", 0.0), dead_lettered=s.get("cityops_records_dead_lettered_total", 0.0),
        parked=s.get("cityops_parked_events"), outbox=s.get("cityops_outbox_records"), timers_due=s.get("cityops_timers_due"),
        failed_batches=s.get("cityops_batches_failed_total", 0.0),
        batch_ms=round(1000 * s.get("cityops_batch_seconds_sum", 0.0) / count, 1) if count else None)


def hub_status(table: Mapping[str, Any], fetch: Fetch, alive: Callable[[int], bool]) -> list[ProcessStatus]:
    return [process_status(name, entry, fetch, alive) for name, entry in table.get("processes", {}).items()]


# ---------------------------------------------------------------------------------------------- rendering

COLUMNS = [("service", 12), ("state", 6), ("pid", 8), ("lag", 7), ("applied", 9), ("dead-lettered", 14), ("parked", 7),
           ("outbox", 7), ("timers due", 11), ("failed batches", 15), ("ms/batch", 9)]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if value == int(value) else f"{value:.1f}"
    return str(value)


def render(statuses: list[ProcessStatus], broker: str | None = None, broker_up: bool | None = None) -> str:
    """The table `cityops status` prints, with a totals line: what is down is named at the end."""
    lines = []
    if broker is not None:
        lines.append(f"broker {broker}: {'up' if broker_up else 'DOWN'}")
    lines.append("  ".join(title.ljust(width) for title, width in COLUMNS).rstrip())
    for s in statuses:
        state = "up" if s.up else "DOWN"
        row = [s.name, state, s.pid, s.lag, s.applied, s.dead_lettered, s.parked, s.outbox, s.timers_due, s.failed_batches, s.batch_ms]
        lines.append("  ".join(_cell(v).ljust(width) for v, (_, width) in zip(row, COLUMNS)).rstrip())
    down = [s.name for s in statuses if not s.up]
    total = {k: sum(getattr(s, k) or 0 for s in statuses) for k in ("lag", "dead_lettered", "parked", "outbox")}
    lines.append(f"{len(statuses) - len(down)}/{len(statuses)} up | lag {_cell(float(total['lag']))} | "
                 f"dead-lettered {_cell(float(total['dead_lettered']))} | parked {_cell(float(total['parked']))} | "
                 f"outbox {_cell(float(total['outbox']))}" + (f" | DOWN: {', '.join(down)}" if down else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- probing


def fetch_metrics(url: str, timeout: float = 2.0) -> str | None:
    try:
        answer = httpx.get(url, timeout=timeout)
    except httpx.HTTPError:
        return None
    return answer.text if answer.status_code == 200 else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process by that pid: it lives
    return True


def broker_answers(bootstrap: str, timeout: float = 1.0) -> bool:
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        with contextlib.suppress(OSError, ValueError), socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    return False


def status(state_dir: Path = typer.Option(DEFAULT_STATE_DIR, help="The hub's state directory (`cityops up --state-dir`)."),
           as_json: bool = typer.Option(False, "--json", help="Print JSON instead of the table."),
           timeout: float = typer.Option(2.0, help="Seconds to wait for each metrics endpoint.")) -> None:
    """Each process of the hub up or not, its lag, dead letters, parked events, outbox and timers due."""
    table = read_process_table(state_dir)
    if table is None:
        typer.echo(f"no hub has run with state dir {state_dir} ({TABLE_FILE} missing): start one with `cityops up`", err=True)
        raise typer.Exit(1)
    statuses = hub_status(table, lambda url: fetch_metrics(url, timeout), pid_alive)
    bootstrap = table.get("bootstrap")
    broker_up = broker_answers(bootstrap) if bootstrap else None
    if as_json:
        typer.echo(json.dumps({"broker": {"bootstrap": bootstrap, "up": broker_up},
                               "processes": [asdict(s) for s in statuses]}, indent=2))
    else:
        typer.echo(render(statuses, bootstrap, broker_up))
    if broker_up is False or not all(s.up for s in statuses):
        raise typer.Exit(1)
