"""A real PostgreSQL server for tests: Debian's package, initdb'd into a temporary directory.

`postgres_server` (session fixture) starts one on 127.0.0.1:25432 (CITYOPS_TEST_PG_PORT) and stops
it at the end, failures included; `LocalPostgres.new_database()` gives each test its own database
URL (`postgresql+psycopg://...`). As root, the server runs as the `postgres` user (PostgreSQL
refuses to run as root). A developer may point CITYOPS_TEST_PG_URL at a server of their own
(a URL of a database whose user may CREATE DATABASE); then nothing is started.

Import the fixture into a test module: `from tests.integration.pg import postgres_server  # noqa: F401`.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.postgres import create_database

# Below Linux's ephemeral range (32768-60999): at 55432 an outgoing connection of a concurrent test (a Kafka
# client's) could hold the port, and the server's bind failed although nothing was listening there.
PG_PORT = int(os.environ.get("CITYOPS_TEST_PG_PORT", "25432"))
_RUN_AS = "postgres"


def pg_bin_dir() -> Path:
    """The newest installed PostgreSQL's binaries (Debian: /usr/lib/postgresql/<major>/bin)."""
    explicit = os.environ.get("CITYOPS_PG_BIN")
    if explicit:
        return Path(explicit)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError("PostgreSQL is not installed (no initdb); install Debian's postgresql package")


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class LocalPostgres:
    """One throwaway PostgreSQL cluster, trust authentication on 127.0.0.1 only."""

    def __init__(self, port: int = PG_PORT) -> None:
        self.port = port
        self.bin = pg_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="cityops-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.as_root = os.geteuid() == 0

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = list(argv)
        if self.as_root:
            command = ["runuser", "-u", _RUN_AS, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)

    def start(self) -> None:
        if _port_taken(self.port):
            raise RuntimeError(f"port {self.port} is taken (another test run's PostgreSQL?); "
                               "set CITYOPS_TEST_PG_PORT, or CITYOPS_TEST_PG_URL to reuse a server")
        if self.as_root:
            shutil.chown(self.root, _RUN_AS)
        result = self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                           "-E", "UTF8", "--locale=C", "--no-sync")
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stderr.strip()[-2000:]}")
        # Test settings: durability off (a crash loses the throwaway cluster anyway), socket in the data dir.
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.data} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        result = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                           "-w", "-t", "60", "start")
        if result.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start on port {self.port}: {result.stderr.strip()} {tail}")

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def new_database(self, prefix: str = "cityops") -> str:
        return create_database(self.admin_url, prefix)


class _External:
    def __init__(self, url: str) -> None:
        self.admin_url = url

    def new_database(self, prefix: str = "cityops") -> str:
        return create_database(self.admin_url, prefix)


class _SharedServer:
    """Each test module that imports the fixture gets its own session-scoped copy of it; they share
    one server, started by the first and stopped when the last lets go."""

    def __init__(self) -> None:
        self.server: LocalPostgres | None = None
        self.users = 0

    def acquire(self) -> LocalPostgres:
        if self.server is None:
            server = LocalPostgres()
            try:
                server.start()
            except BaseException:
                server.stop()  # removes what initdb left behind
                raise
            self.server = server
        self.users += 1
        return self.server

    def release(self) -> None:
        self.users -= 1
        if self.users == 0 and self.server is not None:
            server, self.server = self.server, None
            server.stop()


_SHARED = _SharedServer()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres | _External]:
    external = os.environ.get("CITYOPS_TEST_PG_URL")
    if external:
        yield _External(external)
        return
    server = _SHARED.acquire()
    try:
        yield server
    finally:
        _SHARED.release()
