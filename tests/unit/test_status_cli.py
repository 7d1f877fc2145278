"""`cityops status` (tools/status_cli.py): the process table `cityops up` writes, what each metrics endpoint says,
the table and the JSON it prints, and its exit code."""

from __future__ import annotations

import json
import os
from pathlib import Path

from typer.testing import CliRunner

from services.common.metrics import BatchCounts, ServiceMetrics, serve_metrics
from services.common.settings import ServiceSettings
from tests.harness.ports import free_port
from tools.status_cli import ProcessStatus, hub_status, read_process_table, render, status, write_process_table

DEAD_PID = 2**22 + 12345  # above the kernel's pid_max default: no process has it


class _R:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset


def _metrics_text(consumer: str, *, lag_end: int, applied: int, dead: int) -> str:
    """What a service's endpoint answers after one batch of 5 records on partitions 0 and 1."""
    metrics = ServiceMetrics()
    records = [_R("cityops.tickets.v1", p, o) for p in (0, 1) for o in range(5)]
    metrics.batch_handled(consumer, records, lambda t, p: lag_end, 0.25, BatchCounts(applied=applied, dead_lettered=dead))
    return metrics.text().decode()


def _table(tmp_path: Path) -> dict[str, object]:
    write_process_table(tmp_path, "", {"discover": (os.getpid(), 9400), "triage": (DEAD_PID, 9401), "units": (os.getpid(), 0)})
    table = read_process_table(tmp_path)
    assert table is not None
    return table


def test_each_process_is_read_from_its_endpoint_and_a_silent_one_is_down(tmp_path: Path) -> None:
    texts = {"http://127.0.0.1:9400/metrics": _metrics_text("discover", lag_end=8, applied=9, dead=1)}
    statuses = {s.name: s for s in hub_status(_table(tmp_path), texts.get, lambda pid: pid != DEAD_PID)}
    discover = statuses["discover"]
    assert discover.up and discover.lag == 2 * (8 - 5) and discover.applied == 9 and discover.dead_lettered == 1
    assert discover.batch_ms == 250.0 and discover.failed_batches == 0
    assert not statuses["triage"].up and not statuses["triage"].pid_alive  # no endpoint, no process
    assert statuses["units"].up and statuses["units"].lag is None  # no metrics port: up while its pid lives


def test_a_live_pid_whose_endpoint_does_not_answer_is_down(tmp_path: Path) -> None:
    """Its consumer loop may be wedged: the endpoint is part of being up."""
    [discover] = [s for s in hub_status(_table(tmp_path), lambda url: None, lambda pid: True) if s.name == "discover"]
    assert discover.pid_alive and not discover.up


def test_the_table_names_what_is_down_and_sums_the_hub() -> None:
    statuses = [ProcessStatus("discover", True, 11, True, "u", lag=6.0, applied=9.0, dead_lettered=1.0, parked=2.0, outbox=0.0),
                ProcessStatus("sla", True, 12, True, "u", lag=1.0, applied=3.0, dead_lettered=0.0, parked=0.0, outbox=4.0, timers_due=7.0),
                ProcessStatus("triage", False, 13, False, "u")]
    text = render(statuses, "127.0.0.1:9092", True)
    lines = text.splitlines()
    assert lines[0] == "broker 127.0.0.1:9092: up"
    assert lines[1].split()[:4] == ["service", "state", "pid", "lag"]
    assert lines[2].split()[:8] == ["discover", "up", "11", "6", "9", "1", "2", "0"]
    assert lines[3].split()[8] == "7"  # sla's timers due
    assert lines[4].split()[:3] == ["triage", "DOWN", "13"] and set(lines[4].split()[3:]) == {"-"}
    assert lines[-1] == "2/3 up | lag 7 | dead-lettered 1 | parked 2 | outbox 4 | DOWN: triage"



def test_the_command_reads_a_real_endpoint_and_fails_when_a_process_is_down(tmp_path: Path) -> None:
    metrics = ServiceMetrics()
    metrics.batch_handled("archiver", [_R("cityops.intake.v1", 0, 41)], lambda t, p: 50, 0.01, BatchCounts(applied=1))
    port = free_port()
    server = serve_metrics(metrics, ServiceSettings(metrics_port=port))
    assert server is not None
    runner = CliRunner()
    try:
        write_process_table(tmp_path, "", {"archiver": (os.getpid(), port)})
        ok = runner.invoke(_app(), ["--state-dir", str(tmp_path), "--json"])
        write_process_table(tmp_path, "", {"archiver": (os.getpid(), port), "act": (DEAD_PID, free_port())})
        down = runner.invoke(_app(), ["--state-dir", str(tmp_path)])
    finally:
        server.stop()
    assert ok.exit_code == 0, ok.output
    [archiver] = json.loads(ok.output)["processes"]
    assert archiver["up"] and archiver["lag"] == 50 - 42 and archiver["applied"] == 1
    assert down.exit_code == 1 and "DOWN: act" in down.output
    missing = runner.invoke(_app(), ["--state-dir", str(tmp_path / "nothing")])
    assert missing.exit_code == 1 and "cityops up" in missing.output


def _app():  # type: ignore[no-untyped-def]
    import typer

    app = typer.Typer()
    app.command()(status)
    return app


class _Started:
    def __init__(self, pid: int) -> None:
        self.pid = pid


class _Supervisor:
    """Records what the hub starts, with which environment."""

    def __init__(self) -> None:
        self.processes: dict[str, _Started] = {}
        self.envs: dict[str, dict[str, str]] = {}

    def start_service(self, name: str, *, env: dict[str, str]) -> int:
        self.envs[name] = env
        self.processes[name] = _Started(1000 + len(self.processes))
        return self.processes[name].pid

    def start(self, name: str, argv: list[str], *, env: dict[str, str]) -> int:
        self.argvs = {**getattr(self, "argvs", {}), name: argv}
        self.processes[name] = _Started(1000 + len(self.processes))
        return self.processes[name].pid

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.processes)


def test_cityops_up_gives_each_process_its_own_metrics_port_and_writes_the_table(tmp_path: Path) -> None:
    from tools.hub import Hub, hub_process_names

    hub = Hub(kafka_port=1, http_port=2, state_dir=tmp_path, metrics_port=9500)
    hub.supervisor = _Supervisor()  # type: ignore[assignment]
    hub.start_services()
    ports = {name: int(env["CITYOPS_METRICS_PORT"]) for name, env in hub.supervisor.envs.items()}  # type: ignore[attr-defined]
    assert list(ports) == hub_process_names() and sorted(ports.values()) == list(range(9500, 9500 + len(ports)))
    table = read_process_table(tmp_path)
    assert table is not None and table["bootstrap"] == "127.0.0.1:1"
    assert table["processes"]["discover"] == {"pid": 1000, "metrics": "http://127.0.0.1:9500/metrics"}
    # the replay API for the console: its own process on its port, in the table without a metrics endpoint
    assert hub.supervisor.argvs["replay"][-4:] == ["replay", "serve", "--port", "8082"]  # type: ignore[attr-defined]
    assert table["processes"]["replay"] == {"pid": 1000 + len(ports), "metrics": None}
    assert Hub(kafka_port=1, http_port=2, state_dir=tmp_path, metrics_port=0).metrics_ports() == dict.fromkeys(ports, 0)
