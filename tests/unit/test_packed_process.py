"""Several services in one process (tools/packed.py): each keeps its own log context, identity and settings;
all stop together, in reverse order, on a stop request or when one of them crashes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import structlog
from faststream import FastStream
from faststream.kafka import KafkaBroker

from services.triage.settings import TriageSettings
from tools.packed import (
    PACKED_GROUPS,
    MemberCrashed,
    chosen_groups,
    member_env,
    parse_groups,
    process_name,
    process_plan,
    run_together,
    settings_prefix,
    usable_cores,
)
from tools.supervisor import Supervisor


def fake_app(name: str, journal: list[tuple[str, Any]], *, fail_start: bool = False) -> FastStream:
    """A FastStream app whose broker never connects; its hooks write what they saw to `journal`."""
    broker = KafkaBroker()
    started: list[str] = []

    async def no_network(*_: Any) -> None:
        started.append(name)

    broker.start = no_network  # type: ignore[method-assign]
    broker.stop = no_network  # type: ignore[method-assign,assignment]
    app = FastStream(broker, logger=None)
    app.context.set_global("service_tasks", [])

    @app.on_startup
    async def _start() -> None:
        if fail_start:
            raise RuntimeError(f"{name} cannot open its store")
        structlog.contextvars.bind_contextvars(service=name)  # as configure_logging(service=...) does at start

    @app.on_shutdown
    async def _stop() -> None:
        journal.append(("stop", structlog.contextvars.get_contextvars().get("service")))

    return app


async def test_each_member_keeps_its_own_log_context_and_all_stop_in_reverse_order():
    journal: list[tuple[str, Any]] = []
    apps = {"discover": fake_app("discover", journal), "triage": fake_app("triage", journal)}
    stop = asyncio.Event()
    runner = asyncio.create_task(run_together(apps, stop, watch_every_s=0.01))
    await asyncio.sleep(0.1)
    assert journal == []  # running until asked to stop
    assert "service" not in structlog.contextvars.get_contextvars()  # no member's binding leaked here
    stop.set()
    await asyncio.wait_for(runner, 5)
    assert journal == [("stop", "triage"), ("stop", "discover")]


async def test_a_member_losing_a_background_task_takes_the_whole_process_down():
    journal: list[tuple[str, Any]] = []
    apps = {"act": fake_app("act", journal), "evaluate": fake_app("evaluate", journal)}

    async def tick() -> None:
        raise ValueError("tick bug")

    runner = asyncio.create_task(run_together(apps, watch_every_s=0.01))
    await asyncio.sleep(0.05)
    apps["evaluate"].context.get("service_tasks").append(asyncio.create_task(tick()))
    with pytest.raises(MemberCrashed, match="evaluate lost a background task"):
        await asyncio.wait_for(runner, 5)
    assert journal == [("stop", "evaluate"), ("stop", "act")]  # the healthy one was stopped too


async def test_a_member_that_cannot_start_stops_the_ones_already_started():
    journal: list[tuple[str, Any]] = []
    apps = {"discover": fake_app("discover", journal), "triage": fake_app("triage", journal, fail_start=True),
            "consult": fake_app("consult", journal)}
    with pytest.raises(MemberCrashed, match="triage failed to start"):
        await asyncio.wait_for(run_together(apps, watch_every_s=0.01), 5)
    assert journal == [("stop", "discover")]  # consult never started, triage never finished starting


def test_groups_are_parsed_and_refuse_a_service_twice_or_an_http_service_in_a_group():
    assert parse_groups("discover+triage, act+evaluate") == [("discover", "triage"), ("act", "evaluate")]
    assert parse_groups("") == []
    assert all(len(g) > 1 for g in parse_groups(PACKED_GROUPS))
    with pytest.raises(ValueError, match="triage is in two"):
        parse_groups("discover+triage,triage+consult")
    with pytest.raises(ValueError, match="intake serves HTTP"):
        parse_groups("intake+discover")


def test_the_plan_keeps_start_order_and_drops_members_not_in_this_hub():
    names = ["discover", "triage", "consult", "act", "evaluate", "sla", "units", "intake"]
    plan = process_plan(names, parse_groups("discover+triage+consult,act+evaluate,sla+projections+archiver"))
    assert plan == [("discover", "triage", "consult"), ("act", "evaluate"), ("sla",), ("units",), ("intake",)]
    assert process_plan(names, []) == [(n,) for n in names]
    assert process_name(plan[0]) == "discover+triage+consult"


def test_a_small_machine_packs_by_default_and_an_explicit_choice_wins():
    assert chosen_groups("", None, cores=2) == PACKED_GROUPS
    assert chosen_groups("", None, cores=1) == PACKED_GROUPS
    assert chosen_groups("", None, cores=4) == ""
    assert chosen_groups("", False, cores=2) == ""  # --separate
    assert chosen_groups("", True, cores=8) == PACKED_GROUPS  # --packed
    assert chosen_groups("act+evaluate", None, cores=2) == "act+evaluate"  # --groups
    assert chosen_groups("act+evaluate", False, cores=2) == "act+evaluate"


def test_the_cores_counted_are_the_ones_this_process_may_use(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0}, raising=False)
    assert usable_cores() == 1
    assert chosen_groups("", None) == PACKED_GROUPS


def test_each_member_gets_its_kafka_identity_under_its_own_settings_prefix(monkeypatch):
    assert settings_prefix("units") == "CITYOPS_UNIT_"
    env = member_env("triage", {"CITYOPS_KAFKA_USERNAME": "triage", "CITYOPS_METRICS_PORT": "9401", "PATH": "/bin"})
    assert env == {"CITYOPS_TRIAGE_KAFKA_USERNAME": "triage", "CITYOPS_TRIAGE_METRICS_PORT": "9401"}
    # ... and its own prefix wins over a hub-wide value in the same environment
    monkeypatch.setenv("CITYOPS_KAFKA_USERNAME", "discover")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = TriageSettings()
    assert (settings.kafka_username, settings.metrics_port) == ("triage", 9401)


def test_the_supervisor_starts_a_packed_process_with_every_members_own_principal(tmp_path, monkeypatch):
    started: dict[str, Any] = {}
    supervisor = Supervisor(tmp_path, env={}, kafka_env=lambda name: {"CITYOPS_KAFKA_USERNAME": name,
                                                                      "CITYOPS_KAFKA_PASSWORD": f"pw-{name}"})
    monkeypatch.setattr(supervisor, "start", lambda name, argv, env=None: started.update(name=name, argv=argv, env=env) or 1)
    supervisor.start_packed(["act", "evaluate"], env={"act": {"CITYOPS_METRICS_PORT": "9403"}})
    assert started["name"] == "act+evaluate"
    assert started["argv"][-4:] == ["service", "run", "act", "evaluate"]
    assert started["env"] == {"CITYOPS_ACT_KAFKA_USERNAME": "act", "CITYOPS_ACT_KAFKA_PASSWORD": "pw-act",
                              "CITYOPS_ACT_METRICS_PORT": "9403", "CITYOPS_EVALUATE_KAFKA_USERNAME": "evaluate",
                              "CITYOPS_EVALUATE_KAFKA_PASSWORD": "pw-evaluate"}


def test_the_hubs_process_table_lists_every_service_of_a_packed_process(tmp_path):
    from types import SimpleNamespace

    from tools.hub import Hub, hub_process_names
    from tools.status_cli import read_process_table

    hub = Hub(kafka_port=1, http_port=2, state_dir=tmp_path, metrics_port=9400,
              groups=parse_groups("discover+triage+consult,act+evaluate"))
    hub.supervisor.processes = {"discover+triage+consult": SimpleNamespace(pid=41),  # type: ignore[dict-item]
                                "act+evaluate": SimpleNamespace(pid=42), "intake": SimpleNamespace(pid=43)}
    hub.write_process_table()
    rows = read_process_table(tmp_path)["processes"]  # type: ignore[index]
    ports = hub.metrics_ports()
    assert {n: r["pid"] for n, r in rows.items()} == {"discover": 41, "triage": 41, "consult": 41, "act": 42,
                                                      "evaluate": 42, "intake": 43}
    assert rows["triage"]["metrics"] == f"http://127.0.0.1:{ports['triage']}/metrics"  # its own endpoint
    assert len({ports[n] for n in hub_process_names()}) == len(hub_process_names())
