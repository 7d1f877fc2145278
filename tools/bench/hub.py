"""The broker and every service process one benchmark run starts and stops."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.settings import REPO_ROOT
from tools.bench.config import UNIT_ENV, BenchConfig

# ============================================================================================ the hub


@dataclass
class BenchHub:
    """The broker and every service process this run started; stops them all by their pids."""

    config: BenchConfig
    kafka: Any = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    broker_pid: int | None = None

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
        return time.monotonic() - started

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CITYOPS_")}
        env.update({"CITYOPS_KAFKA_BOOTSTRAP": self.bootstrap, "CITYOPS_STATE_DIR": str(self.service_state),
                    "CITYOPS_LOG_JSON": "true", "CITYOPS_INTAKE_HTTP_PORT": str(self.config.http_port),
                    "PYTHONUNBUFFERED": "1", **UNIT_ENV})
        env.update(dict(item.split("=", 1) for item in self.config.service_env))
        return env

    def service_names(self) -> list[str]:
        if self.config.services:
            return list(self.config.services)
        from tools.hub import OPTIONAL, WORKFLOW
        from tools.run import available_services

        available = set(available_services())
        return WORKFLOW + [s for s in OPTIONAL if s in available] + ["units", "intake"]

    def start_services(self) -> list[str]:
        logs = self.config.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.service_state.mkdir(parents=True, exist_ok=True)
        for name in self.service_names():
            argv = ["intake", "serve"] if name == "intake" else ["service", "run", name]
            out = open(logs / f"{name}.log", "ab")
            self.processes[name] = subprocess.Popen([sys.executable, "-m", "tools.cli", *argv], env=self.env(),
                                                    stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                                    start_new_session=True)
            out.close()
        return list(self.processes)

    def pids(self) -> dict[str, int]:
        out = {"kafka-broker": self.broker_pid} if self.broker_pid else {}
        out.update({name: p.pid for name, p in self.processes.items() if p.poll() is None})
        return out

    def dead(self, critical_only: bool = False) -> dict[str, int]:
        from tools.hub import WORKFLOW

        critical = set(WORKFLOW) | {"units", "intake"}
        return {name: p.returncode for name, p in self.processes.items()
                if p.poll() is not None and (not critical_only or name in critical)}

    def stop_services(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        try:
            self.stop_services()
        finally:
            if self.kafka is not None:
                self.kafka.stop()
                self.kafka = None

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.config.state_dir / "logs" / f"{name}.log"
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return ""
