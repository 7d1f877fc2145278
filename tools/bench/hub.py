"""The broker and every service process one benchmark run starts and stops."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.bench.config import UNIT_ENV, BenchConfig
from tools.credentials import HubCredentials, hub_credentials
from tools.kafka.acls import ADMIN
from tools.supervisor import Supervisor

# ============================================================================================ the hub


@dataclass
class BenchHub:
    """The broker and every service process this run started; stops them all by their pids."""

    config: BenchConfig
    kafka: Any = None
    supervisor: Supervisor | None = None
    broker_pid: int | None = None
    # Each service's metrics port (free ones, chosen at start): the per-stage breakdown is read there (stages.py).
    metrics_ports: dict[str, int] = field(default_factory=dict)
    _credentials: HubCredentials | None = None

    @property
    def credentials(self) -> HubCredentials:
        """The run's hub key and demo tokens (the HTTP phase posts as the demo app)."""
        if self._credentials is None:
            self.config.state_dir.mkdir(parents=True, exist_ok=True)
            self._credentials = hub_credentials(self.config.state_dir)
        return self._credentials

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.config.kafka_port}"

    @property
    def service_state(self) -> Path:
        return self.config.state_dir / "services"

    def start_broker(self) -> float:
        from tools.kafka import KafkaLocalSettings, LocalKafka

        self.kafka = LocalKafka(KafkaLocalSettings(state_dir=self.config.state_dir / "kafka"), name="bench",
                                port=self.config.kafka_port, fresh=True)
        started = time.monotonic()
        self.kafka.start()
        self.broker_pid = self.kafka.running_pid()
        # This process measures and administers the run (topics, raw clients, log dumps): it is the admin.
        # Services get their own principals (kafka_env); env() keeps this process's CITYOPS_* from them.
        os.environ.update(self.kafka.client_env(ADMIN))
        return time.monotonic() - started

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CITYOPS_")}
        env.update({"CITYOPS_MODE": "demo", "CITYOPS_KAFKA_BOOTSTRAP": self.bootstrap, "CITYOPS_STATE_DIR": str(self.service_state),
                    "CITYOPS_LOG_JSON": "true", "CITYOPS_INTAKE_HTTP_PORT": str(self.config.http_port),
                    "CITYOPS_UNIT_HOTLINE_URL": f"http://127.0.0.1:{self.config.http_port}",
                    "PYTHONUNBUFFERED": "1", **UNIT_ENV, **self.credentials.env()})
        env.update(dict(item.split("=", 1) for item in self.config.service_env))
        return env

    def service_names(self) -> list[str]:
        if self.config.services:
            return list(self.config.services)
        from tools.hub import hub_service_names

        return hub_service_names()

    def start_services(self, city_env: dict[str, str] | None = None, logs: str = "logs") -> list[str]:
        """Start every service; `city_env` puts them on another city (tools/bench/city.py), logging to its own
        `logs` folder (a start is read from the log: an earlier hub's lines must not be in it)."""
        self.service_state.mkdir(parents=True, exist_ok=True)
        from tools.kafka import free_listen_port
        from tools.packed import parse_groups, process_plan

        env = {**self.env(), **(city_env or {})}
        self.supervisor = Supervisor(self.config.state_dir / logs, env=env, kafka_env=self.kafka.client_env)
        for members in process_plan(self.service_names(), parse_groups(self.config.groups)):
            ports = {name: free_listen_port() for name in members}
            self.metrics_ports.update(ports)
            if len(members) > 1:
                self.supervisor.start_packed(members, env={n: {"CITYOPS_METRICS_PORT": str(p)} for n, p in ports.items()})
            else:
                self.supervisor.start_service(members[0], env={"CITYOPS_METRICS_PORT": str(ports[members[0]])})
        return list(self.supervisor)

    def pids(self) -> dict[str, int]:
        out = {"kafka-broker": self.broker_pid} if self.broker_pid else {}
        out.update(self.supervisor.pids() if self.supervisor else {})
        return out

    def dead(self, critical_only: bool = False) -> dict[str, int | None]:
        from tools.hub import CRITICAL

        dead = self.supervisor.dead() if self.supervisor else {}
        # A packed process ("act+evaluate") is critical when one of its services is.
        return {name: code for name, code in dead.items() if not critical_only or CRITICAL & set(name.split("+"))}

    def exit_codes(self) -> dict[str, int | None]:
        return self.supervisor.exit_codes() if self.supervisor else {}

    def stop_services(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop_all(timeout=20)

    def stop(self) -> None:
        try:
            self.stop_services()
        finally:
            if self.kafka is not None:
                self.kafka.stop()
                self.kafka = None

    def log_tail(self, name: str, lines: int = 20) -> str:
        return self.supervisor.log_tail(name, lines) if self.supervisor else ""
