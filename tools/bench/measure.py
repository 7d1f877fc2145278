"""Numbers (percentiles, ratios), the machine and commit a run is recorded with, and per-process
memory and CPU read from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.common.settings import REPO_ROOT
from tools.bench.config import GIB

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


def stat_cpu_seconds(stat: str) -> float:
    """User + system CPU seconds in a /proc .../stat line (its name, in parentheses, may hold spaces)."""
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15 of stat)


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (None if it is gone)."""
    try:
        return stat_cpu_seconds(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, IndexError):
        return None


# HotSpot names its threads and /proc keeps the first 15 characters of each name: enough to tell the JIT
# compilers and the collector from Kafka's own threads. The broker's network and request-handler threads both
# start "data-plane-kafk" and cannot be told apart this way.
JVM_THREAD_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("jit compiler", ("C1 CompilerThre", "C2 CompilerThre")),
    ("garbage collector", ("GC Thread", "G1 ", "VM Thread")),
    ("requests (network and handler threads)", ("data-plane-kafk",)),
    ("group coordinator", ("group-coordinat",)),
)


def jvm_thread_kind(name: str) -> str:
    return next((kind for kind, prefixes in JVM_THREAD_KINDS if name.startswith(prefixes)), "other")


def thread_cpu_by_kind(pid: int) -> dict[str, float]:
    """CPU seconds a JVM's threads have used so far, summed by kind (empty if the process is gone or not Linux)."""
    out: dict[str, float] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # a thread that ended between the listing and the read
        kind = jvm_thread_kind(stat[stat.index("(") + 1:stat.rindex(")")])
        out[kind] = out.get(kind, 0.0) + stat_cpu_seconds(stat)
    return out


class JvmThreadWatch:
    """A JVM's CPU seconds during a phase, by kind of thread: how much of the broker's share is its JIT warming up."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.start: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def __enter__(self) -> JvmThreadWatch:
        self.start = thread_cpu_by_kind(self.pid) if self.pid else {}
        return self

    def __exit__(self, *_: Any) -> None:
        now = thread_cpu_by_kind(self.pid) if self.pid else {}
        self.used = {kind: round(seconds - self.start.get(kind, 0.0), 2) for kind, seconds in now.items()}


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
