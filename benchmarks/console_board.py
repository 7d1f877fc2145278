"""The supervisor board's requests with 100,000 tickets in the projection store: p50/p95 per request.

Fills a fresh SQLite projection store (the hub's default store) with `--tickets` tickets, serves the replay
API (and, once the console is merged, the console) over real HTTP on free local ports, then times each request
of `REQUESTS` `--repeat` times and prints p50/p95/max in milliseconds. It prints; it never asserts.

Filling, fast and still realistic: `--base` tickets (default 5,000) are written by the synthetic workflow
history (tools/importers/synthetic.py: every lifecycle, merges, consultations, returns, reminders, breaches,
callbacks, reopenings; units, grids and districts from the catalogue, 14 days of arrivals, the last ones still
in flight) and folded by the projections' own code (`store.apply_facts`). The folded rows of every table are
then copied in SQL until the store holds `--tickets`, each copy with its own ids and its times moved 14 days
further back, so the store spans months. Each copy keeps its in-flight tail (about a quarter of its tickets
open): more open tasks than a real store of that size, so the queue queries are measured pessimistically. The
copies' stored payloads keep their ticket id rewritten but not their deadlines moved: a copied ticket's story
shows its original due dates (the board reads the rows, not the payloads).

    PYTHONPATH=. .venv/bin/python benchmarks/console_board.py                 # 100,000 tickets, ~2 min to fill
    PYTHONPATH=. .venv/bin/python benchmarks/console_board.py --db /tmp/board.db --keep   # fill once, reuse
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SPAN_DAYS = 14
ID_PREFIX = "SYN-"


@dataclass(frozen=True)
class Request:
    """One request the board makes: on which server ("replay" or "console"), what path, which query."""

    name: str
    server: str
    path: str
    params: dict[str, Any] | None = None


def requests_for(sample: dict[str, str]) -> list[Request]:
    """The requests measured, with ids from the filled store (`sample`). The board's own requests go here: one
    line each (C3's replay queries on "replay", the rendered page on "console")."""
    return [
        # the board page (services/console/pages/supervisor.py) and the six queries it makes, concurrently
        Request("board page, rendered (console)", "console", "/console/board/"),
        Request("board: tickets by state", "replay", "/replay/board/states"),
        Request("board: alerts, first page", "replay", "/replay/board/alerts", {"limit": 50}),
        Request("board: arbitration queue", "replay", "/replay/board/arbitration"),
        Request("board: daily trend", "replay", "/replay/board/trend"),
        Request("board: grids", "replay", "/replay/board/grids"),
        Request("rankings by unit", "replay", "/replay/rankings", {"scope": "unit"}),
        Request("rankings by grid", "replay", "/replay/rankings", {"scope": "grid"}),
        Request("rankings by district", "replay", "/replay/rankings", {"scope": "district"}),
        Request("busiest unit's queue", "replay", f"/replay/units/{sample['unit']}/queue"),
        Request("a ticket and its tasks", "replay", f"/replay/tickets/{sample['ticket']}"),
        Request("a ticket's story (store)", "replay", f"/replay/tickets/{sample['ticket']}/story", {"source": "store"}),
        Request("a ticket's timeline", "replay", f"/replay/tickets/{sample['ticket']}/timeline"),
        Request("events of one day, one unit", "replay", "/replay/events",
                {"since": sample["day"], "until": sample["day_end"], "unit": sample["unit"], "limit": 1000}),
        Request("a ticket as of a time", "replay", "/replay/as-of", {"time": sample["day_end"], "ticket": sample["ticket"]}),
        Request("a unit's queue as of a time", "replay", "/replay/as-of", {"time": sample["day_end"], "unit": sample["unit"]}),
        Request("the city as of a time (as-of page)", "replay", "/replay/as-of", {"time": sample["day_end"], "rankings": "true"}),
        Request("story page, rendered (console)", "console", f"/console/tickets/{sample['ticket']}"),
    ]


# ---------------------------------------------------------------------------------------------- filling

def fill(url: str, tickets: int, base: int, seed: int) -> dict[str, float]:
    """A projection store with `tickets` tickets; returns the seconds each step took."""
    from sqlmodel import Session

    from services.common.store import make_engine
    from services.projections.domain import PROJECTED_TYPES
    from services.projections.facts import Fact
    from services.projections.migrate import upgrade
    from services.projections.store import apply_facts
    from tools.importers.synthetic import DEFAULT_START, SyntheticHistory

    took: dict[str, float] = {}
    started = time.perf_counter()
    engine = make_engine(url)
    upgrade(engine)
    history = SyntheticHistory(min(base, tickets), seed=seed, start=DEFAULT_START, span=timedelta(days=SPAN_DAYS))
    facts = [Fact.from_envelope(e) for e in history.envelopes() if e.type in PROJECTED_TYPES]
    took["generate"] = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(0, len(facts), 5000):
        with Session(engine) as session, session.begin():
            apply_facts(session, facts[i:i + 5000])  # folded at commit, as the live service does
    took["fold"] = time.perf_counter() - started
    started = time.perf_counter()
    copies = -(-tickets // base) - 1
    with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
        for copy in range(1, copies + 1):
            _copy_rows(conn, copy, limit=min(base, tickets - copy * base))
        conn.commit()
        conn.execute("ANALYZE")
    took["copy"] = time.perf_counter() - started
    engine.dispose()
    return took


def upgrade_store(url: str) -> None:
    """A store filled by an older checkout gets the migrations since (e.g. the board's indexes)."""
    from services.common.store import make_engine
    from services.projections.migrate import upgrade

    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()


def _copy_rows(conn: sqlite3.Connection, copy: int, limit: int) -> None:
    """One more copy of the folded base tickets (the first `limit` of them), new ids, `copy` spans earlier."""
    prefix = f"C{copy:03d}-"
    shift = f"-{copy * SPAN_DAYS} days"
    keep = f"SELECT ticket_id FROM proj_tickets WHERE ticket_id LIKE '{ID_PREFIX}%' ORDER BY ticket_id LIMIT {limit}"
    for table in ("proj_tickets", "proj_tasks", "proj_timeline", "proj_ticket_metrics"):
        columns = [(row[1], (row[2] or "").upper()) for row in conn.execute(f"PRAGMA table_info({table})")]
        exprs = [_copied(name, kind, prefix, shift, copy) for name, kind in columns]
        names = ", ".join(name for name, _ in columns)
        conn.execute(f"INSERT INTO {table} ({names}) SELECT {', '.join(exprs)} FROM {table} "  # noqa: S608 - our own names
                     f"WHERE ticket_id IN ({keep})")


_ID_COLUMNS = {"ticket_id", "master_ticket_id", "task_id", "summary", "payload"}
_UNIQUE_PER_COPY = {"event_id", "dispatch_id", "correlation_id", "causation_id"}


def _copied(name: str, kind: str, prefix: str, shift: str, copy: int) -> str:
    if name in _ID_COLUMNS:
        return f"replace({name}, '{ID_PREFIX}', '{prefix}')"
    if name in _UNIQUE_PER_COPY:
        return f"CASE WHEN {name} IS NULL THEN NULL ELSE {name} || '~{copy}' END"
    if "DATETIME" in kind or "TIMESTAMP" in kind or name == "time":
        # 'YYYY-MM-DD HH:MM:SS' moved, the microseconds kept as they were
        return f"CASE WHEN {name} IS NULL THEN NULL ELSE strftime('%Y-%m-%d %H:%M:%S', {name}, '{shift}') || substr({name}, 20) END"
    return name


def sample_of(url: str) -> dict[str, str]:
    """Ids to ask about: the unit with most open tasks, a closed ticket of it, a busy day."""
    with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
        (unit,) = conn.execute("SELECT unit FROM proj_tasks WHERE open GROUP BY unit ORDER BY count(*) DESC LIMIT 1").fetchone()
        (ticket,) = conn.execute("SELECT ticket_id FROM proj_tickets WHERE status = 'closed' AND lead_unit = ? "
                                 "ORDER BY events DESC LIMIT 1", (unit,)).fetchone()
        (day,) = conn.execute("SELECT substr(time, 1, 10) FROM proj_timeline GROUP BY 1 ORDER BY count(*) DESC LIMIT 1").fetchone()
        counts = {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 - our own names
                  for table in ("proj_tickets", "proj_tasks", "proj_timeline")}
        open_tasks = conn.execute("SELECT count(*) FROM proj_tasks WHERE open").fetchone()[0]
    print(f"store: {counts['proj_tickets']:,} tickets, {counts['proj_tasks']:,} tasks ({open_tasks:,} open), "
          f"{counts['proj_timeline']:,} timeline events")
    return {"unit": unit, "ticket": ticket, "day": f"{day}T00:00:00+00:00", "day_end": f"{day}T23:59:59+00:00"}


# ---------------------------------------------------------------------------------------------- serving

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    """`app` on a free local port in a thread, for the duration."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextlib.contextmanager
def replay_process(url: str, key: str) -> Iterator[str]:
    """`cityops replay serve` over the store in a process of its own, as the hub runs it; stopped by its pid."""
    import httpx

    port = free_port()
    env = os.environ | {"CITYOPS_AUTH_KEY": key, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "tools.cli", "replay", "serve", "--port", str(port), "--db", url],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            if process.poll() is not None:
                raise RuntimeError(f"replay serve exited with {process.returncode}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def started(url: str, key: str) -> Iterator[dict[str, str]]:
    """The replay API over the store (its own process), and the console calling it (in this one), on free ports."""
    from services.common.auth import AuthSettings, TokenVerifier
    from services.console.app import create_app
    from services.console.live import LiveFeed
    from services.console.settings import ConsoleSettings

    with replay_process(url, key) as replay_url:
        # No broker: the page's requests are measured, not the live stream's.
        console = create_app(ConsoleSettings(mode="demo", replay_url=replay_url), live=LiveFeed(),
                             verifier=TokenVerifier(AuthSettings(key=key)))
        with served(console) as console_url:
            yield {"replay": replay_url, "console": console_url}


def supervisor_token(key: str) -> str:
    from services.common.auth import Principal, Role, mint_token

    return mint_token(key.encode(), Principal("bench-supervisor", frozenset({Role.supervisor})), timedelta(hours=2))


# ---------------------------------------------------------------------------------------------- measuring

def clients(token: str, key: str, timeout_s: float) -> dict[str, Any]:
    """An HTTP client per server: the replay API takes the token as a bearer, the console as its session cookie."""
    import httpx

    from services.console.session import SESSION_COOKIE

    bearer = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s)
    session = httpx.Client(cookies={SESSION_COOKIE: token}, timeout=timeout_s, follow_redirects=False)
    return {"replay": bearer, "console": session}


def measure(base_urls: dict[str, str], token: str, key: str, requests: list[Request], repeat: int,
            budget_s: float = 30.0, timeout_s: float = 120.0) -> list[tuple[str, list[float], int]]:
    """`repeat` timings of each request after a warm-up one; a slow request stops after `budget_s` (at least 3)."""
    import httpx

    results = []
    by_server = clients(token, key, timeout_s)
    with contextlib.ExitStack() as stack:
        for client in by_server.values():
            stack.enter_context(client)
        for request in requests:
            if request.server not in base_urls:
                continue
            client = by_server[request.server]
            url = base_urls[request.server] + request.path
            times: list[float] = []
            try:
                status = client.get(url, params=request.params).status_code  # warm: first use of the engine, caches
                while len(times) < repeat and (len(times) < 3 or sum(times) < budget_s * 1000):
                    started = time.perf_counter()
                    status = client.get(url, params=request.params).status_code
                    times.append((time.perf_counter() - started) * 1000)
            except httpx.TimeoutException:
                status = 0  # printed as a timeout: the row's figures are what was measured before it
            results.append((request.name, times, status))
            print(row(request.name, times, status), flush=True)
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


HEADER = f"{'request':36} {'status':>7} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9} {'n':>4}"


def row(name: str, times: list[float], status: int) -> str:
    shown = "timeout" if status == 0 else str(status)
    if not times:
        return f"{name:36} {shown:>7} {'-':>9} {'-':>9} {'-':>9} {0:>4}"
    return (f"{name:36} {shown:>7} {statistics.median(times):>9.1f} {percentile(times, 0.95):>9.1f} "
            f"{max(times):>9.1f} {len(times):>4}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--base", type=int, default=5_000, help="Tickets generated and folded; the rest are copies.")
    parser.add_argument("--repeat", type=int, default=20, help="Timed requests per row (after one warm-up).")
    parser.add_argument("--budget", type=float, default=30.0, help="Seconds per row: a slow request is timed fewer times (>= 3).")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--only", default="", help="Measure only the requests whose name contains this.")
    parser.add_argument("--db", type=Path, help="SQLite file: filled unless it exists (default: a temporary one).")
    parser.add_argument("--keep", action="store_true", help="Keep the --db file afterwards.")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="console-board-"))
    path = args.db or scratch / "projections.db"
    url = f"sqlite:///{path}"
    if not path.exists():
        took = fill(url, args.tickets, args.base, args.seed)
        print("filled in " + ", ".join(f"{k} {v:.1f} s" for k, v in took.items()))
    else:
        upgrade_store(url)
    sample = sample_of(url)
    print(f"asking about unit {sample['unit']}, ticket {sample['ticket']}, day {sample['day'][:10]}; "
          f"{args.repeat} timed requests each, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    key = secrets.token_hex(32)
    with started(url, key) as base_urls:
        print(HEADER, flush=True)
        measure(base_urls, supervisor_token(key), key, [r for r in requests_for(sample) if args.only in r.name],
                args.repeat, args.budget)
    if not args.keep or args.db is None:
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
