"""`cityops kafka ...`: fetch, start, stop and inspect the project-managed Kafka broker or cluster.

`up` returns once the broker answers and leaves it running in the background; `down` stops it,
from any shell, via the pid file under the state directory (see tools/kafka/). `client-config`
prints one principal's librdkafka configuration (docs/security-kafka.md).
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from tools.kafka import (
    KafkaLocalError,
    KafkaLocalSettings,
    LocalKafka,
    LocalKafkaCluster,
    NodeStatus,
    fetch_kafka,
)
from tools.kafka.security import KafkaSecurityError, client_env, librdkafka_properties

app = typer.Typer(no_args_is_help=True, add_completion=False)
cluster_app = typer.Typer(no_args_is_help=True, add_completion=False)
app.add_typer(
    cluster_app, name="cluster", help="Start, stop and inspect a local 3-broker cluster (replication factor 3)."
)

PortOption = Annotated[
    int | None,
    typer.Option(
        "--port",
        help="Client port; the controller uses the next one. Default: the port of the last `up`, "
        "else CITYOPS_KAFKA_PORT or 9092.",
    ),
]
BasePortOption = Annotated[
    int | None, typer.Option("--base-port", help="First port; node i uses base+2(i-1) and the port after it.")
]
FreshOption = Annotated[bool, typer.Option("--fresh", help="Delete all topics and data before starting.")]
TimeoutOption = Annotated[float | None, typer.Option("--timeout", help="Seconds to wait for the broker to answer.")]


@contextmanager
def _errors_as_exit() -> Iterator[None]:
    try:
        yield
    except (KafkaLocalError, KafkaSecurityError) as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


def _print_statuses(statuses: list[NodeStatus]) -> None:
    for status in statuses:
        colour = typer.colors.GREEN if status.running and status.answering else typer.colors.YELLOW
        typer.secho(status.describe(), fg=colour)
    if not all(s.running for s in statuses):
        raise typer.Exit(1)


def _timed(action: Callable[[], str]) -> tuple[str, float]:
    began = time.monotonic()
    result = action()
    return result, time.monotonic() - began


@app.command()
def fetch() -> None:
    """Download the Kafka broker's jars from Maven Central into the cache (once; later a no-op)."""
    settings = KafkaLocalSettings()
    with _errors_as_exit():
        libs, seconds = _timed(lambda: str(fetch_kafka(settings)))
    typer.echo(f"Kafka {settings.version} jars in {libs} ({seconds:.1f} s)")


@app.command()
def up(port: PortOption = None, fresh: FreshOption = False, timeout: TimeoutOption = None) -> None:
    """Start a one-node broker in the background and return once it answers; prints its bootstrap address."""
    kafka = LocalKafka(port=port, fresh=fresh)
    with _errors_as_exit():
        pid = kafka.running_pid()
        if pid is not None and not fresh:
            typer.echo(f"already running: pid {pid}, bootstrap {kafka.bootstrap}")
            return
        bootstrap, seconds = _timed(lambda: kafka.start(timeout))
    typer.secho(f"Kafka is up: bootstrap {bootstrap}", fg=typer.colors.GREEN)
    typer.echo(
        f"started in {seconds:.1f} s (JVM launch to answering {kafka.timings['launch_to_answering']:.1f} s, "
        f"storage format {kafka.timings['format']:.1f} s); "
        f"pid {kafka.running_pid()}, logs in {kafka.log_dir}"
    )
    typer.echo(f"clients authenticate (SASL/SCRAM-SHA-512): `cityops kafka client-config --principal NAME`; "
               f"passwords in {kafka.credentials_file}")


@app.command()
def down(timeout: Annotated[float, typer.Option(help="Seconds before SIGTERM becomes SIGKILL.")] = 30) -> None:
    """Stop the one-node broker started by `up` (clean shutdown; forced after the timeout)."""
    kafka = LocalKafka()
    with _errors_as_exit():
        pid = kafka.running_pid()
        if pid is None:
            typer.echo(f"not running ({kafka.bootstrap})")
            return
        kafka.stop(timeout)
    typer.echo(f"stopped pid {pid} ({kafka.bootstrap})")


@app.command()
def status() -> None:
    """Show whether the one-node broker runs and answers; exit code 1 if it does not run."""
    with _errors_as_exit():
        _print_statuses([LocalKafka().status()])


@cluster_app.command("up")
def cluster_up(base_port: BasePortOption = None, fresh: FreshOption = False, timeout: TimeoutOption = None) -> None:
    """Start a 3-node cluster in the background and return once every node sees all brokers."""
    cluster = LocalKafkaCluster(base_port=base_port, fresh=fresh)
    with _errors_as_exit():
        pids = cluster.pids()
        if pids and not fresh:
            typer.echo(f"already running: pids {pids}, bootstrap {cluster.bootstrap}")
            return
        bootstrap, seconds = _timed(lambda: cluster.start(timeout))
    typer.secho(f"Kafka cluster is up: bootstrap {bootstrap}", fg=typer.colors.GREEN)
    typer.echo(f"started in {seconds:.1f} s; pids {cluster.pids()}, cluster id {cluster.cluster_id}")
    typer.echo(f"clients authenticate (SASL/SCRAM-SHA-512): `cityops kafka client-config --broker cluster --principal NAME`; "
               f"passwords in {cluster.credentials_file}")


@cluster_app.command("down")
def cluster_down(
    base_port: BasePortOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds before SIGTERM becomes SIGKILL.")] = 30,
) -> None:
    """Stop every node of the cluster started by `cluster up`."""
    cluster = LocalKafkaCluster(base_port=base_port)
    with _errors_as_exit():
        pids = cluster.pids()
        cluster.stop(timeout)
    typer.echo(f"stopped pids {pids}" if pids else "not running")


@cluster_app.command("status")
def cluster_status(base_port: BasePortOption = None) -> None:
    """Show each cluster node's state; exit code 1 if any node does not run."""
    with _errors_as_exit():
        _print_statuses(LocalKafkaCluster(base_port=base_port).status())


class Broker(StrEnum):
    single = "single"
    cluster = "cluster"
    hub = "hub"


@app.command("client-config")
def client_config(
    principal: Annotated[str, typer.Option("--principal", help="admin, a service (e.g. triage) or a unit (unit-<unit id>).")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the file here (mode 0600) instead of printing it.")] = None,
    broker: Annotated[Broker, typer.Option("--broker", help="Whose credentials: the broker of `cityops kafka up` (single), "
                                                            "of `cityops kafka cluster up` (cluster) or of `cityops up` (hub).")] = Broker.single,
    as_env: Annotated[bool, typer.Option("--env", help="Print shell `export` lines of CITYOPS_KAFKA_* instead, for a "
                                                       "cityops process: eval \"$(cityops kafka client-config --principal triage --env)\".")] = False,
) -> None:
    """Print a librdkafka properties file for one principal, for `kcat -F FILE` (it holds the password)."""
    with _errors_as_exit():
        kafka: LocalKafka | LocalKafkaCluster
        if broker is Broker.cluster:
            kafka = LocalKafkaCluster()
        elif broker is Broker.hub:
            from tools.hub import DEFAULT_STATE_DIR

            kafka = LocalKafka(KafkaLocalSettings(state_dir=DEFAULT_STATE_DIR / "kafka"), name="hub")
        else:
            kafka = LocalKafka()
        if not kafka.credentials_file.exists():
            raise KafkaLocalError(f"no credentials in {kafka.credentials_file}: start that broker first")
        text = librdkafka_properties(kafka.bootstrap, kafka.credentials, principal)
        if as_env:
            text = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in client_env(kafka.bootstrap, kafka.credentials, principal).items())
    if out is None:
        typer.echo(text, nl=False)
        return
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    os.chmod(out, 0o600)
    typer.echo(f"wrote {out} for {principal} ({kafka.bootstrap}); use it with: kcat -F {out} -L")


@app.command("compose-env")
def compose_env_command() -> None:
    """Print `.env` lines for docker-compose.yml: a new random Kafka password for the admin and every service."""
    from contracts.topics import all_topics
    from tools.kafka.acls import ADMIN, service_principals
    from tools.kafka.security import compose_env

    typer.echo(compose_env([ADMIN, *service_principals(all_topics())]), nl=False)
