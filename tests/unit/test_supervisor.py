"""The process supervisor (tools/supervisor.py) with small dummy processes: start with env and log,
readiness, SIGTERM then SIGKILL, a crash and a restart, stop-all on an exception, nothing left behind."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tools.supervisor import ProcessNotReady, Supervisor, cityops_argv, service_argv

pytestmark = pytest.mark.timeout(60)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


# Prints a line the readiness probe looks for, then sleeps until signalled.
READY_THEN_SLEEP = python("""
    import os, time
    print("ready", os.environ.get("DUMMY_GREETING", ""), flush=True)
    time.sleep(600)
""")
# Ignores SIGTERM: only SIGKILL ends it.
DEAF_TO_SIGTERM = python("""
    import signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ready", flush=True)
    time.sleep(600)
""")
# Forks a grandchild that ignores SIGTERM, writes its pid, then the parent waits.
WITH_GRANDCHILD = python("""
    import os, signal, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    print("grandchild", child.pid, flush=True)
    time.sleep(600)
""")


def alive(pid: int) -> bool:
    """True while the pid exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def exists(pid: int) -> bool:
    """True while the pid has any /proc entry, a zombie's included."""
    return Path(f"/proc/{pid}").exists()


def log_says(sup: Supervisor, name: str, text: str):
    return lambda: text in sup.log_path(name).read_text()


@pytest.fixture
def sup(tmp_path: Path):
    supervisor = Supervisor(tmp_path / "logs", env={**os.environ, "DUMMY_GREETING": "hello"}, cwd=tmp_path,
                            stop_timeout=5)
    yield supervisor
    supervisor.stop_all(timeout=2)


def test_a_process_starts_with_its_env_and_log_and_stops_on_sigterm(sup: Supervisor) -> None:
    pid = sup.start("dummy", READY_THEN_SLEEP, env={"DUMMY_GREETING": "from-start"})
    sup.wait_ready("dummy", log_says(sup, "dummy", "ready"), timeout=20)
    assert "ready from-start" in sup.log_path("dummy").read_text()
    assert sup.pids() == {"dummy": pid} and sup.running("dummy") and alive(pid)
    assert sup.stop("dummy") == -signal.SIGTERM
    assert not exists(pid), "stopped but not reaped: a zombie is left"
    assert sup.dead() == {"dummy": -signal.SIGTERM} and sup.pids() == {}


def test_readiness_fails_at_once_when_the_process_exits_and_names_its_log(sup: Supervisor) -> None:
    sup.start("crasher", python("print('cannot start: no config', flush=True); raise SystemExit(3)"))
    started = time.monotonic()
    with pytest.raises(ProcessNotReady, match=r"exited with code 3(.|\n)*cannot start: no config"):
        sup.wait_ready("crasher", lambda: False, timeout=30)
    assert time.monotonic() - started < 15


def test_readiness_times_out_while_the_probe_fails_or_raises(sup: Supervisor) -> None:
    sup.start("slow", READY_THEN_SLEEP)

    def probe() -> bool:
        raise ConnectionRefusedError("not listening yet")

    with pytest.raises(ProcessNotReady, match="not ready within"):
        sup.wait_ready("slow", probe, timeout=0.5, every=0.1)


def test_a_process_deaf_to_sigterm_is_killed_after_the_grace_period(sup: Supervisor) -> None:
    pid = sup.start("deaf", DEAF_TO_SIGTERM)
    sup.wait_ready("deaf", log_says(sup, "deaf", "ready"), timeout=20)
    started = time.monotonic()
    assert sup.stop("deaf", timeout=0.5) == -signal.SIGKILL
    assert time.monotonic() - started < 5 and not exists(pid)


def test_kill_is_a_crash_and_restart_brings_the_same_command_back(sup: Supervisor) -> None:
    first = sup.start("svc", READY_THEN_SLEEP)
    sup.wait_ready("svc", log_says(sup, "svc", "ready"), timeout=20)
    assert sup.kill("svc") == -signal.SIGKILL
    assert not exists(first) and not sup.running("svc")
    second = sup.restart("svc")
    assert second != first and sup.running("svc") and sup.processes["svc"].restarts == 1
    sup.wait_ready("svc", lambda: sup.log_path("svc").read_text().count("ready") == 2, timeout=20)
    # restart of a running process stops it first
    third = sup.restart("svc")
    assert not exists(second) and alive(third)


def test_a_process_that_exits_by_itself_is_reported_dead_and_reaped_on_restart(sup: Supervisor) -> None:
    pid = sup.start("short", python("raise SystemExit(7)"))
    deadline = time.monotonic() + 20
    while sup.running("short") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sup.dead() == {"short": 7}
    sup.restart("short")
    assert not exists(pid)


def test_starting_a_name_that_runs_is_refused(sup: Supervisor) -> None:
    sup.start("once", READY_THEN_SLEEP)
    with pytest.raises(RuntimeError, match="already running"):
        sup.start("once", READY_THEN_SLEEP)


def test_stop_all_runs_on_an_exception_and_leaves_nothing_behind(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "logs", cwd=tmp_path, stop_timeout=1)
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"), sup:
        pids += [sup.start(f"p{i}", READY_THEN_SLEEP) for i in range(3)]
        pids.append(sup.start("deaf", DEAF_TO_SIGTERM))
        sup.start("family", WITH_GRANDCHILD)
        sup.wait_ready("family", log_says(sup, "family", "grandchild"), timeout=20)
        grandchild = int(sup.log_path("family").read_text().split()[1])
        pids.append(sup.processes["family"].pid)
        sup.wait_ready("deaf", log_says(sup, "deaf", "ready"), timeout=20)
        raise RuntimeError("boom")
    assert [pid for pid in pids if exists(pid)] == [], "a child (or its zombie) outlived stop_all"
    # The grandchild is not ours to reap (it is re-parented when its parent dies): it must only be dead.
    deadline = time.monotonic() + 5
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild), "the grandchild, deaf to SIGTERM, outlived stop_all"
    assert set(sup.exit_codes()) == {"p0", "p1", "p2", "deaf", "family"}
    assert sup.exit_codes()["deaf"] == -signal.SIGKILL


def test_commands_run_this_interpreter_and_the_cityops_cli() -> None:
    assert cityops_argv("up")[:3] == [sys.executable, "-m", "tools.cli"]
    assert service_argv("intake")[3:] == ["intake", "serve"]
    assert service_argv("triage")[3:] == ["service", "run", "triage"]


def test_each_service_gets_its_own_kafka_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`kafka_env` names the environment of each service: the hub's processes are each their own principal."""
    import tools.supervisor as supervisor_module

    shows_user = python("""
        import os, time
        print("user", os.environ.get("CITYOPS_KAFKA_USERNAME"), os.environ.get("DUMMY_GREETING"), flush=True)
        time.sleep(600)
    """)
    monkeypatch.setattr(supervisor_module, "service_argv", lambda name: shows_user)
    identities = lambda name: {"CITYOPS_KAFKA_USERNAME": name, "DUMMY_GREETING": "from-kafka-env"}  # noqa: E731
    with Supervisor(tmp_path, env={**os.environ, "CITYOPS_KAFKA_USERNAME": "admin"}, kafka_env=identities) as sup:
        sup.start_service("triage")
        sup.start_service("act", env={"DUMMY_GREETING": "explicit"})
        for name, greeting in (("triage", "from-kafka-env"), ("act", "explicit")):
            sup.wait_ready(name, lambda n=name, g=greeting: f"user {n} {g}" in sup.log_path(n).read_text(), timeout=20)
