"""One process supervisor for everything that runs services as OS processes: the hub (`cityops up`),
the benchmark and the end-to-end test harness.

Each process is started in its own session (so it is its own process group: a signal reaches the
children it may fork, and Ctrl-C in the terminal does not reach it behind our back), with its own
environment and its output appended to `<log_dir>/<name>.log`. It is stopped by the pid recorded
at start: SIGTERM to its group (a FastStream service finishes its current batch), then SIGKILL
after a grace period. Every exit is waited for, so no zombie is left behind. `kill` is the
chaos-test crash (SIGKILL, no grace); `restart` starts a name again with the same command.
`stop_all` stops every process it started, and keeps going when one of them misbehaves; used as a
context manager it runs on the way out, exceptions and Ctrl-C included.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from services.common.settings import REPO_ROOT

Probe = Callable[[], bool]


def cityops_argv(*args: str) -> list[str]:
    """`cityops <args>` with this interpreter, so a child runs the same tree and virtualenv."""
    return [sys.executable, "-m", "tools.cli", *args]


def service_argv(name: str) -> list[str]:
    """The command that runs one service: intake serves HTTP, every other one is a consumer service."""
    return cityops_argv("intake", "serve") if name == "intake" else cityops_argv("service", "run", name)


class ProcessNotReady(RuntimeError):
    """A process exited, or its readiness probe did not pass in time; the message holds its log tail."""


@dataclass
class Managed:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes]
    restarts: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.exit_code() is None

    def exit_code(self) -> int | None:
        """The exit code (negative: killed by that signal), or None while it runs.

        Asked without reaping: an exited child stays a zombie, holding its pid and process group id,
        until stop()/stop_all() reap it, so their clean-up of the group never hits a reused id."""
        if self.process.returncode is not None:
            return self.process.returncode
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped elsewhere (another wait on this pid)
            return self.process.poll()
        if info is None:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


@dataclass
class Supervisor:
    """The processes one owner (hub, benchmark, test) started, by name."""

    log_dir: Path
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path = REPO_ROOT
    stop_timeout: float = 20.0
    processes: dict[str, Managed] = field(default_factory=dict)
    # Each service's own Kafka identity: the environment that makes process `name` its own principal.
    kafka_env: Callable[[str], Mapping[str, str]] | None = None

    # ------------------------------------------------------------------ starting

    def start(self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> int:
        """Start `argv` as process `name` (its own session, output to its log); returns its pid."""
        previous = self.processes.get(name)
        if previous is not None:
            if previous.running():
                raise RuntimeError(f"{name} is already running (pid {previous.pid})")
            _reap(previous.process, 0.1)  # an earlier run that exited on its own: no zombie left
        full_env = {**self.env, **(env or {})}
        log = self.log_path(name)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(list(argv), env=full_env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        restarts = previous.restarts + 1 if previous is not None else 0
        self.processes[name] = Managed(name, list(argv), full_env, log, process, restarts)
        return process.pid

    def start_service(self, name: str, *, env: Mapping[str, str] | None = None) -> int:
        """Start service `name` (as its own Kafka principal when `kafka_env` is set)."""
        own = dict(self.kafka_env(name)) if self.kafka_env is not None else {}
        return self.start(name, service_argv(name), env={**own, **(env or {})})

    def start_packed(self, names: Sequence[str], *, env: Mapping[str, Mapping[str, str]] | None = None) -> int:
        """Start services `names` as ONE process named `a+b` (tools/packed.py). Each member stays its own Kafka
        principal, with its own extra `env` (by service), under its own settings prefix (CITYOPS_TRIAGE_...)."""
        from tools.packed import member_env, process_name

        merged: dict[str, str] = {}
        for name in names:
            own = {**(self.kafka_env(name) if self.kafka_env is not None else {}), **(env or {}).get(name, {})}
            merged.update(member_env(name, own))
        return self.start(process_name(names), cityops_argv("service", "run", *names), env=merged)

    def restart(self, name: str) -> int:
        """Stop `name` if it still runs, then start it again with the same command and environment."""
        managed = self.processes[name]
        self.stop(name)
        return self.start(name, managed.argv, env=managed.env)

    def wait_ready(self, name: str, probe: Probe, timeout: float = 90.0, every: float = 0.3) -> float:
        """Wait until `probe()` is true; seconds waited. Fails at once if the process exits first."""
        started = time.monotonic()
        while True:
            if not self.processes[name].running():
                raise ProcessNotReady(f"{name} exited with code {self.processes[name].exit_code()} before it was "
                                      f"ready; last lines of {self.log_path(name)}:\n{self.log_tail(name)}")
            with contextlib.suppress(Exception):  # a probe that raises means "not yet"
                if probe():
                    return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise ProcessNotReady(f"{name} was not ready within {timeout:.0f}s; last lines of "
                                      f"{self.log_path(name)}:\n{self.log_tail(name)}")
            time.sleep(every)

    # ------------------------------------------------------------------ stopping

    def stop(self, name: str, timeout: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code (None if never started)."""
        managed = self.processes.get(name)
        if managed is None:
            return None
        _signal_group(managed.process, signal.SIGTERM)
        _reap(managed.process, self.stop_timeout if timeout is None else timeout)
        return managed.process.returncode

    def kill(self, name: str) -> int | None:
        """SIGKILL without grace, as a crash would; the name can be restarted afterwards."""
        managed = self.processes[name]
        _signal_group(managed.process, signal.SIGKILL)
        _reap(managed.process, self.stop_timeout)
        return managed.process.returncode

    def stop_all(self, timeout: float | None = None) -> dict[str, int | None]:
        """Stop every process: all get SIGTERM at once, then share one grace period; exit codes by name."""
        deadline = time.monotonic() + (self.stop_timeout if timeout is None else timeout)
        for managed in self.processes.values():
            _signal_group(managed.process, signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name, managed in self.processes.items():
            try:
                _reap(managed.process, max(0.1, deadline - time.monotonic()))
            finally:
                codes[name] = managed.process.returncode
        return codes

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop_all()

    # ------------------------------------------------------------------ looking

    def pids(self) -> dict[str, int]:
        """Pids of the processes that still run."""
        return {name: m.pid for name, m in self.processes.items() if m.running()}

    def running(self, name: str) -> bool:
        return name in self.processes and self.processes[name].running()

    def dead(self) -> dict[str, int | None]:
        """Exit codes of the processes that have exited."""
        return {name: m.exit_code() for name, m in self.processes.items() if not m.running()}

    def exit_codes(self) -> dict[str, int | None]:
        return {name: m.exit_code() for name, m in self.processes.items()}

    def wait_started(self, name: str, timeout: float = 180.0) -> float:
        """Wait until a service has logged `service_started`: its app is built (a model trained or loaded, its
        store opened) and it consumes from then on. Seconds waited."""
        return self.wait_ready(name, lambda: "service_started" in self.log_path(name).read_text(errors="replace"), timeout)

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def log_tail(self, name: str, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path(name).read_text(errors="replace").splitlines()[-lines:])
        return ""

    def __iter__(self) -> Iterator[str]:
        return iter(self.processes)


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    # The child leads its own session, so its pgid is its pid and the group holds what it forked.
    # A reaped pid is never signalled again: by then it may belong to someone else.
    if process.returncode is not None:
        return
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)


def _reap(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait for the exit (reaping it); SIGKILL the group when it outlasts `timeout`."""
    reaped_here = process.returncode is None
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait()
    if reaped_here:
        # A child that ignored SIGTERM must not outlive its leader. Until the leader was reaped just
        # now its pid held the group id, and the id stays taken while any member lives, so it still
        # names only what this process started.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
