"""The project-managed Apache Kafka broker: fetched from Maven Central, run as a plain JVM process.

There is no Docker on our development and CI machines, so we run the real broker (KRaft, combined
broker+controller) straight from the jars Maven fetches. `LocalKafka` is one node on 127.0.0.1;
`LocalKafkaCluster` (cluster.py) is n such nodes sharing one cluster id and one static controller
quorum, so that replication, min.insync.replicas and leader failover behave as in production.

Everything a node owns lives in `<state_dir>/<name>/`: its configuration, data, logs and pid file.
A node started by one process (e.g. `cityops kafka up`) can be inspected and stopped by another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.common.settings import KafkaClientSettings
from tools.kafka.acls import ADMIN, deployment_acls, deployment_principals
from tools.kafka.install import (
    KafkaLocalError,
    KafkaLocalSettings,
    fetch_kafka,
    java_executable,
)
from tools.kafka.probe import (
    HOST,
    NodeStatus,
    broker_answers,
    command_line,
    coordinators_answer,
    new_cluster_id,
    port_is_free,
    process_is_alive,
    run_in_own_loop,
    tail,
)
from tools.kafka.properties import (
    TOOL_LOG4J2_PROPERTIES,
    log4j2_properties,
    read_properties,
    write_properties,
)
from tools.kafka.security import (
    Credentials,
    admin_client_options,
    broker_properties,
    client_env,
    client_settings,
    record_users,
    scram_format_arguments,
    secure_running_broker,
)

STARTED_MESSAGE = "Kafka Server started"
BROKER_MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"

# The flags Kafka's own kafka-run-class.sh gives the broker, besides the collector's (settings.jvm_flags),
# plus: die on OOM rather than limp along half-working, which in a test run would look like a hang.
BROKER_JVM_FLAGS = [
    "-server",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
]
# StorageTool runs for a second; the C1-only JIT and a small heap make that second shorter.
TOOL_JVM_FLAGS = ["-Xms32m", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"]


class LocalKafka:
    """One Kafka node (broker + controller in one JVM) on 127.0.0.1, its files under state_dir/name.

    Used alone it is a one-node cluster with replication factor 1. `LocalKafkaCluster` builds
    several with a shared `cluster_id` and `voters` list.
    """

    def __init__(
        self,
        settings: KafkaLocalSettings | None = None,
        *,
        name: str = "single",
        port: int | None = None,
        controller_port: int | None = None,
        node_id: int = 1,
        cluster_id: str | None = None,
        voters: Mapping[int, int] | None = None,
        replication_factor: int = 1,
        extra_properties: Mapping[str, Any] | None = None,
        fresh: bool = False,
        abandon: threading.Event | None = None,
        credentials_file: Path | None = None,
    ) -> None:
        self.settings = settings or KafkaLocalSettings()
        self.name = name
        # Set by a cluster when another node failed, so this one stops waiting for a quorum
        # that will never form instead of sitting out its whole start timeout.
        self.abandon = abandon or threading.Event()
        self.node_dir = self.settings.state_dir / name
        self.port = port or self._remembered_port() or self.settings.port
        self.controller_port = controller_port or self.port + 1
        self.node_id = node_id
        self.voters = dict(voters) if voters else {node_id: self.controller_port}
        self.replication_factor = replication_factor
        self.extra_properties = dict(extra_properties or {})
        self.fresh = fresh
        self._given_cluster_id = cluster_id
        self._cluster_id = cluster_id
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping_pid: int | None = None
        self._log_offset = 0
        self._launched_at = 0.0
        self.timings: dict[str, float] = {}
        # A cluster's nodes share one file (one set of users, one admin password).
        self.credentials_file = credentials_file or self.node_dir / "credentials.json"
        self._credentials: Credentials | None = None

    # -- paths ---------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.node_dir / "data"

    @property
    def log_dir(self) -> Path:
        return self.node_dir / "logs"

    @property
    def server_log(self) -> Path:
        return self.log_dir / "server.log"

    @property
    def console_log(self) -> Path:
        return self.log_dir / "console.out"

    @property
    def properties_file(self) -> Path:
        return self.node_dir / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.node_dir / "log4j2.properties"

    @property
    def tool_log4j_file(self) -> Path:
        return self.node_dir / "log4j2-tool.properties"

    @property
    def pid_file(self) -> Path:
        return self.node_dir / "kafka.pid"

    @property
    def node_file(self) -> Path:
        return self.node_dir / "node.json"

    @property
    def credentials(self) -> Credentials:
        """Every principal's password (created on first use, kept in `credentials_file`, mode 0600)."""
        if self._credentials is None:
            self._credentials = Credentials.load_or_create(self.credentials_file, deployment_principals())
        return self._credentials

    @property
    def admin_options(self) -> dict[str, Any]:
        """aiokafka keyword arguments that authenticate as this node's admin."""
        return admin_client_options(self.credentials)

    def client_env(self, principal: str) -> dict[str, str]:
        """The environment of a child process that is a client of this node as `principal`."""
        return client_env(self.bootstrap, self.credentials, principal)

    def client_settings(self, principal: str = ADMIN) -> KafkaClientSettings:
        """Settings of an in-process client of this node as `principal` (default: the admin)."""
        return client_settings(self.bootstrap, self.credentials, principal)

    # -- configuration -------------------------------------------------------------------

    def server_properties(self) -> dict[str, Any]:
        """The broker configuration this node is started with."""
        voters = ",".join(f"{nid}@{HOST}:{cport}" for nid, cport in sorted(self.voters.items()))
        rf = self.replication_factor
        min_isr = 1 if rf == 1 else 2
        # One coordinator partition per node: a single node starts its first consumer group and
        # first transaction fastest with 1 (the default 50 means 50 partitions created on first
        # use); in a cluster, one per node spreads coordinators so a node failure moves some.
        # Fixed at first use: changing it on an existing data dir would remap groups, so don't.
        internal_partitions = len(self.voters)
        properties: dict[str, Any] = {
            "process.roles": "broker,controller",
            "node.id": self.node_id,
            # Static quorum: every node knows all voters; never combined with
            # controller.quorum.bootstrap.servers (that is the dynamic-quorum alternative).
            "controller.quorum.voters": voters,
            # Both listeners authenticate (SCRAM for clients and brokers, PLAIN for the quorum) and an
            # authorizer checks every request: see tools/kafka/security.py.
            "listeners": f"BROKER://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "advertised.listeners": f"BROKER://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            **broker_properties(self.credentials.admin_password),
            "log.dirs": self.data_dir,
            "num.partitions": 3,
            "default.replication.factor": rf,
            "min.insync.replicas": min_isr,
            # Topics come from our topic catalogue; a typo in a topic name must fail, not create one.
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": internal_partitions,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": internal_partitions,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": min_isr,
            "share.coordinator.state.topic.num.partitions": internal_partitions,
            # Tests start consumer groups constantly; the default 3 s wait for more members is dead time.
            "group.initial.rebalance.delay.ms": 0,
            # The cleaner's 128 MB default dedupe buffer alone would eat a quarter of a 512 MB heap.
            "log.cleaner.dedupe.buffer.size": 8 * 1024 * 1024,
        }
        properties.update(self.settings.properties)
        properties.update(self.extra_properties)
        return properties

    def _write_config_files(self) -> None:
        self.node_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        write_properties(self.properties_file, self.server_properties())
        self.properties_file.chmod(0o600)  # it holds the admin's PLAIN password
        self.log4j_file.write_text(log4j2_properties(self.log_dir))
        self.tool_log4j_file.write_text(TOOL_LOG4J2_PROPERTIES)
        self.node_file.write_text(json.dumps({"name": self.name, "node_id": self.node_id, "port": self.port}) + "\n")

    def _remembered_port(self) -> int | None:
        # Lets `cityops kafka down` find a broker that `up --port N` started in another process.
        try:
            return int(json.loads(self.node_file.read_text())["port"])
        except (OSError, ValueError, KeyError):
            return None

    # -- storage -------------------------------------------------------------------------

    @property
    def cluster_id(self) -> str:
        """The id this node's storage is (or will be) formatted with."""
        if self._cluster_id is None:
            self._cluster_id = self._formatted_cluster_id() or new_cluster_id()
        return self._cluster_id

    def _formatted_cluster_id(self) -> str | None:
        meta = self.data_dir / "meta.properties"
        return read_properties(meta).get("cluster.id") if meta.exists() else None

    def is_formatted(self) -> bool:
        return (self.data_dir / "meta.properties").exists()

    def wipe(self) -> None:
        """Delete this node's data (topics, offsets, metadata); refuses while the node runs."""
        if self.running_pid() is not None:
            raise KafkaLocalError(f"{self.name} is running; stop it before wiping its data")
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def _format_storage(self) -> None:
        formatted_id = self._formatted_cluster_id()
        if formatted_id is not None:
            if formatted_id != self.cluster_id:
                raise KafkaLocalError(
                    f"{self.data_dir} belongs to cluster {formatted_id}, not {self.cluster_id}; start with fresh=True"
                )
            return
        command = [
            java_executable(), *TOOL_JVM_FLAGS,
            f"-Dlog4j2.configurationFile={self.tool_log4j_file}",
            "-cp", self._classpath(), STORAGE_TOOL_CLASS,
            # "=" form: a random id may start with "-", which argparse would take for an option.
            "format", f"--cluster-id={self.cluster_id}", "-c", str(self.properties_file),
            *scram_format_arguments(self.credentials),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise KafkaLocalError(
                f"formatting {self.data_dir} failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
            )
        record_users(self.users_file, self.credentials)

    def _classpath(self) -> str:
        libs = self.settings.libs_dir
        if not self.settings.fetched_stamp.exists():
            raise KafkaLocalError(f"Kafka {self.settings.version} is not fetched; run `cityops kafka fetch`")
        return f"{libs}/*"

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float | None = None) -> str:
        """Start the node and return its bootstrap address once consumers and producers can use it.

        Fetches the jars if needed, formats storage on first use (or after fresh=True wiped it),
        and stops the JVM again if it does not come up within `timeout` seconds.
        """
        deadline = time.monotonic() + (timeout or self.settings.start_timeout)
        self.bring_up(deadline)
        try:
            self.wait_until_coordinators_ready(deadline)
            self.apply_acls(deadline)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap

    def bring_up(self, deadline: float) -> None:
        """Format if needed, launch the JVM and wait until it answers metadata requests."""
        self.check_can_start()
        fetch_kafka(self.settings)
        if self.fresh:
            self.wipe()
            Credentials.keep_only(self.credentials_file, deployment_principals())
            self._credentials = None
            self._cluster_id = self._given_cluster_id
            self.fresh = False  # a later restart of this object must keep the data
        if self.is_formatted() and not self.users_file.exists():
            raise KafkaLocalError(
                f"{self.data_dir} was formatted before brokers authenticated their clients: it has no users. "
                f"Start it again with --fresh (cityops kafka up --fresh), or delete {self.data_dir}; its topics go too")
        self._write_config_files()
        began = time.monotonic()
        self._format_storage()
        self.timings["format"] = time.monotonic() - began
        self._raise_if_died()  # a cluster may have given up while we were formatting
        self.launch()
        try:
            self.wait_until_started(deadline)
            self.wait_until_answering(deadline)
        except BaseException:
            self.stop()
            raise

    async def start_async(self, timeout: float | None = None) -> str:
        """`start` without blocking the running event loop."""
        return await asyncio.to_thread(self.start, timeout)

    def launch(self) -> int:
        """Start the broker JVM in its own process group and record its pid; does not wait."""
        self._log_offset = self.server_log.stat().st_size if self.server_log.exists() else 0
        if self.console_log.exists():
            self.console_log.replace(self.console_log.with_suffix(".out.previous"))
        command = [
            java_executable(), *shlex.split(self.settings.heap), *shlex.split(self.settings.jvm_flags), *BROKER_JVM_FLAGS,
            f"-Dlog4j2.configurationFile={self.log4j_file}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp", self._classpath(), BROKER_MAIN_CLASS, str(self.properties_file),
        ]  # fmt: skip
        with open(self.console_log, "wb") as console:
            # Own session: Ctrl-C in the terminal that ran `cityops kafka up` must not kill the
            # broker, and our signals go to exactly this JVM.
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                cwd=self.node_dir, start_new_session=True,
            )  # fmt: skip
        self._launched_at = time.monotonic()
        self.pid_file.write_text(f"{self._process.pid}\n")
        return self._process.pid

    def wait_until_started(self, deadline: float) -> None:
        """Wait for the broker's own "Kafka Server started" log line; raise if the JVM dies."""
        while not self._log_mentions_started():
            self._raise_if_died()
            if time.monotonic() > deadline:
                raise KafkaLocalError(f"{self.name} did not log '{STARTED_MESSAGE}' in time\n{self.log_tails()}")
            time.sleep(0.2)
        self.timings["launch_to_started_log"] = time.monotonic() - self._launched_at

    def wait_until_answering(self, deadline: float, expected_broker_ids: set[int] | None = None) -> None:
        """Wait until a metadata request to this node lists the expected brokers (default: itself)."""
        expected = expected_broker_ids or {self.node_id}
        while not broker_answers(self.bootstrap, expected, self.admin_options):
            self._raise_if_died()
            if time.monotonic() > deadline:
                raise KafkaLocalError(f"{self.name} logged started but does not answer on {self.bootstrap}")
            time.sleep(0.2)
        self.timings["launch_to_answering"] = time.monotonic() - self._launched_at

    def wait_until_coordinators_ready(self, deadline: float) -> None:
        """Wait until the group and transaction coordinators answer, creating their internal topics.

        Kafka creates __consumer_offsets and __transaction_state on first use; doing it here means
        the first consumer group of a test session joins at once instead of logging
        GroupCoordinatorNotAvailable errors while it waits.
        """
        began = time.monotonic()
        while not coordinators_answer(self.bootstrap, self.admin_options):
            self._raise_if_died()
            if time.monotonic() > deadline:
                raise KafkaLocalError(f"{self.name}: group/transaction coordinators did not become available")
            time.sleep(0.2)
        self.timings["coordinators"] = time.monotonic() - began

    @property
    def users_file(self) -> Path:
        """The principals whose SCRAM users the storage holds (see tools/kafka/security.py)."""
        return self.credentials_file.with_name("scram-users.json")

    def apply_acls(self, deadline: float) -> dict[str, int]:
        """The SCRAM users that came after formatting (a unit added later), then the ACLs derived from the catalogue."""
        began = time.monotonic()
        result: dict[str, int] = run_in_own_loop(secure_running_broker(
            self.bootstrap, self.credentials, self.users_file, deployment_acls(), max(1.0, deadline - time.monotonic())))
        self.timings["acls"] = time.monotonic() - began
        return result

    def _log_mentions_started(self) -> bool:
        if not self.server_log.exists():
            return False
        with open(self.server_log, "rb") as log:
            if log.seek(0, os.SEEK_END) < self._log_offset:
                self._log_offset = 0  # the log rolled over; its new file is all ours
            log.seek(self._log_offset)
            return STARTED_MESSAGE.encode() in log.read()

    def _raise_if_died(self) -> None:
        if self.abandon.is_set():
            raise KafkaLocalError(f"{self.name}: start abandoned because another node failed")
        if self._process is not None and self._process.poll() is not None:
            self.pid_file.unlink(missing_ok=True)
            raise KafkaLocalError(
                f"{self.name} exited with code {self._process.returncode} while starting\n{self.log_tails()}"
            )

    def log_tails(self, lines: int = 40) -> str:
        """The last lines of the JVM's console output and of the broker log, for error messages."""
        return (
            f"--- {self.console_log} ---\n{tail(self.console_log, lines)}\n"
            f"--- {self.server_log} (this start) ---\n{tail(self.server_log, lines, self._log_offset)}"
        )

    def check_can_start(self) -> None:
        """Raise if this node already runs or something else listens on its ports."""
        pid = self.running_pid()
        if pid is not None:
            raise KafkaLocalError(f"{self.name} is already running (pid {pid}, {self.bootstrap})")
        for port in (self.port, self.controller_port):
            if not port_is_free(port):
                raise KafkaLocalError(f"port {port} on {HOST} is in use; choose another port for {self.name}")

    def running_pid(self) -> int | None:
        """The pid from our pid file, if that process is alive and really is this node's broker."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if not process_is_alive(pid):
            return None
        command = command_line(pid)
        # A recycled pid could now belong to anything, even another engineer's broker: only a
        # kafka.Kafka JVM started with *our* properties file is ours.
        if BROKER_MAIN_CLASS not in command or str(self.properties_file) not in command:
            return None
        return pid

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the broker (a clean controlled shutdown), SIGKILL it if still alive after `timeout` s."""
        self.request_stop()
        self.wait_stopped(timeout)

    def request_stop(self) -> int | None:
        """Send SIGTERM to this node's broker, if running; returns the pid signalled."""
        pid = self.running_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self._stopping_pid = pid
        return pid

    def wait_stopped(self, timeout: float = 30) -> None:
        """Wait for the pid signalled by `request_stop` to exit; SIGKILL it after `timeout` s."""
        pid = self._stopping_pid
        if pid is not None and not self._wait_for_exit(pid, timeout):
            if self.running_pid() == pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if not self._wait_for_exit(pid, 10):
                # Keep the pid file: it is the only record of a JVM that still needs killing.
                raise KafkaLocalError(f"{self.name}: pid {pid} survived SIGKILL for 10 s")
        if self._process is not None and self._process.poll() is not None:  # reaps our child even if it had died on its own
            self._process = None  # gone: a later start of this node must not take it for the new JVM dying
        self.pid_file.unlink(missing_ok=True)

    def kill(self, timeout: float = 10) -> int | None:
        """SIGKILL the broker, as a crash would (no controlled shutdown); returns the pid killed. `start` brings
        the node back on the same data (the chaos run, `cityops chaos --broker`)."""
        pid = self.running_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._stopping_pid = pid
        self.wait_stopped(timeout)
        return pid

    def _wait_for_exit(self, pid: int, timeout: float) -> bool:
        if self._process is not None and self._process.pid == pid:
            # Our own child: only waitpid says for sure it is gone, and it also reaps the zombie.
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while process_is_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def status(self, probe: bool = True) -> NodeStatus:
        """Whether the node's JVM runs and (if `probe`) whether it answers a metadata request."""
        pid = self.running_pid()
        answering = broker_answers(self.bootstrap, {self.node_id}, self.admin_options) if (probe and pid) else None
        return NodeStatus(self.name, self.node_id, self.bootstrap, pid, pid is not None, answering, self.node_dir)

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalKafka(name={self.name!r}, bootstrap={self.bootstrap!r}, node_id={self.node_id})"
