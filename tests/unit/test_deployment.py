"""docker-compose.yml and deploy/Dockerfile stay in step with the code.

There is no Docker engine where the tests run, so the compose file is checked statically:
every runnable consumer service has a container, every container's `cityops ...` command is
one the CLI accepts, and the broker image is the Kafka version the project pins.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tools.run import available_services

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
KAFKA_POM = REPO / "deploy" / "kafka" / "pom.xml"


@functools.cache
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict), "docker-compose.yml has no services mapping"
    return doc


def argv(entry: dict[str, Any]) -> list[str]:
    """A service's command as an argv list (compose allows a list or a shell-like string)."""
    command = entry.get("command")
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def cityops_entries(doc: dict[str, Any]) -> dict[str, list[str]]:
    """Compose services whose command is a `cityops ...` command: name -> argv."""
    return {name: argv(entry) for name, entry in doc["services"].items() if argv(entry)[:1] == ["cityops"]}


def missing_consumer_entries(doc: dict[str, Any], services: list[str]) -> list[str]:
    commands = [argv(entry) for entry in doc["services"].values()]
    return [name for name in services if ["cityops", "service", "run", name] not in commands]


def run_cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    """`cityops <args>` as the image runs it (the console script is tools.cli:main)."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def kafka_version_in_pom() -> str:
    root = ET.parse(KAFKA_POM).getroot()
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = root.findtext("m:properties/m:kafka.version", namespaces=ns)
    assert version, f"no <kafka.version> property in {KAFKA_POM}"
    return version.strip()


# --- (a) one container per consumer service, plus intake and units ---------------------------------

def test_every_available_consumer_service_has_a_compose_entry() -> None:
    services = available_services()
    assert services, "tools.run.available_services() found no service at all"
    missing = missing_consumer_entries(compose(), services)
    assert not missing, f"docker-compose.yml has no entry running `cityops service run <name>` for: {missing}"


def test_missing_entry_is_detected() -> None:
    doc = {"services": {"discover": {"command": "cityops service run discover"},
                        "triage": {"command": ["cityops", "service", "run", "triage"]}}}
    assert missing_consumer_entries(doc, ["discover", "triage", "act"]) == ["act"]


def test_intake_entry_serves_http_on_all_interfaces_and_publishes_8080() -> None:
    entry = compose()["services"].get("intake")
    assert entry is not None, "docker-compose.yml has no `intake` service"
    cmd = argv(entry)
    assert cmd[:3] == ["cityops", "intake", "serve"], f"intake command is {cmd}"
    assert "--host" in cmd and cmd[cmd.index("--host") + 1] == "0.0.0.0", "intake must listen on 0.0.0.0 in a container"
    ports = [str(p.get("target") if isinstance(p, dict) else p) for p in entry.get("ports", [])]
    assert any(p == "8080" or p.endswith(":8080") for p in ports), f"intake publishes {ports}, not 8080"


def test_units_entry_runs_the_simulated_units_for_the_demo() -> None:
    entry = compose()["services"].get("units")
    assert entry is not None, "docker-compose.yml has no `units` service"
    assert argv(entry) == ["cityops", "service", "run", "units"]
    env = entry.get("environment") or {}
    assert str(env.get("CITYOPS_UNIT_CALLBACKS")).lower() == "true"
    assert str(env.get("CITYOPS_UNIT_SUPERVISOR")).lower() == "true"
    # they post their decisions to intake (the one writer of decisions), reached by its service name
    assert env.get("CITYOPS_UNIT_HOTLINE_URL") == "http://intake:8080"


# --- (b) every command exists -----------------------------------------------------------------------

def test_console_script_is_the_module_the_tests_run() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["scripts"]["cityops"] == "tools.cli:main"


def test_compose_has_cityops_commands() -> None:
    names = set(cityops_entries(compose()))
    assert {"topics", "intake", "units"} <= names, f"cityops entries: {sorted(names)}"


@pytest.mark.parametrize("service", sorted(cityops_entries(compose())))
def test_compose_command_is_accepted_by_the_cli(service: str) -> None:
    cmd = cityops_entries(compose())[service]
    result = run_cli([*cmd[1:], "--help"])
    assert result.returncode == 0, (
        f"`{shlex.join(cmd)} --help` exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    if cmd[1:3] == ["service", "run"]:
        assert len(cmd) == 4, f"`{shlex.join(cmd)}` should name exactly one service"
        assert cmd[3] in available_services(), (
            f"{service}: `{cmd[3]}` is not a service this installation can run ({available_services()})")


def test_unknown_command_is_rejected() -> None:
    # Guards the check above: the CLI must not answer `--help` with success for anything.
    assert run_cli(["no-such-area", "run", "--help"]).returncode != 0
    assert run_cli(["service", "no-such-command", "--help"]).returncode != 0
    assert run_cli(["topics", "create", "--no-such-option", "x", "--help"]).returncode != 0


# --- (c) the broker image is the pinned Kafka version ---------------------------------------------

def test_kafka_image_is_the_pinned_kafka_version() -> None:
    image = compose()["services"]["kafka"]["image"]
    repo, _, tag = image.rpartition(":")
    assert repo == "apache/kafka", f"kafka image {image!r} is not the official apache/kafka"
    assert tag == kafka_version_in_pom(), f"kafka image tag {tag!r} != kafka.version {kafka_version_in_pom()!r} in {KAFKA_POM}"


def test_kafka_is_a_single_kraft_node_reachable_as_kafka_9092() -> None:
    kafka = compose()["services"]["kafka"]
    env = {k: str(v) for k, v in (kafka.get("environment") or {}).items()}
    assert set(env.get("KAFKA_PROCESS_ROLES", "").split(",")) == {"broker", "controller"}
    assert "BROKER://kafka:9092" in env.get("KAFKA_ADVERTISED_LISTENERS", "")
    assert env.get("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR") == "1"
    assert kafka.get("healthcheck", {}).get("test"), "kafka needs a healthcheck"


# --- the shared app image and wiring --------------------------------------------------------------

def app_entries() -> dict[str, dict[str, Any]]:
    doc = compose()
    return {name: doc["services"][name] for name in cityops_entries(doc)}


def test_app_services_share_one_image_built_from_deploy_dockerfile() -> None:
    entries = app_entries()
    images = {entry.get("image") for entry in entries.values()}
    assert len(images) == 1 and None not in images, f"app services use images {images}"
    for name, entry in entries.items():
        build = entry.get("build") or {}
        assert (REPO / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE, name


# The console owns no store: it reads and acts through the hub's APIs (README "The console").
STORELESS = {"console"}


def test_app_services_reach_kafka_and_postgres_and_wait_for_topics() -> None:
    doc = compose()
    assert doc["services"]["postgres"].get("healthcheck", {}).get("test"), "postgres needs a healthcheck"
    topics = doc["services"]["topics"]
    assert argv(topics) == ["cityops", "topics", "create", "--bootstrap", "kafka:9092", "--acls"]
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    init_sql = doc.get("configs", {}).get("postgres-init", {}).get("content", "")
    created = set(re.findall(r"CREATE DATABASE (\w+)", init_sql)) | {doc["services"]["postgres"]["environment"]["POSTGRES_DB"]}
    for name, entry in app_entries().items():
        env = entry.get("environment") or {}
        assert env.get("CITYOPS_KAFKA_BOOTSTRAP") == "kafka:9092", name
        if name == "topics":
            continue
        assert entry["depends_on"]["topics"]["condition"] == "service_completed_successfully", name
        if name in STORELESS:
            assert "CITYOPS_DB_URL" not in env, name
            continue
        url = urlsplit(env.get("CITYOPS_DB_URL", ""))
        assert url.scheme == "postgresql+psycopg" and url.hostname == "postgres", f"{name}: CITYOPS_DB_URL={url.geturl()!r}"
        assert url.path.lstrip("/") in created, f"{name}: database {url.path!r} is not created by the postgres init script"


def test_dockerfile_installs_the_package_as_a_non_root_user() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"pip install \.(\s|$)", text)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in {"root", "0"}, f"last USER is {users}"
    copied = [source for line in re.findall(r"^COPY\s+(.+)$", text, re.M) for source in line.split()[:-1]]
    for needed in ("pyproject.toml", "README.md", *packaged_top_levels()):
        assert needed in copied, f"deploy/Dockerfile does not COPY {needed}"


def packaged_top_levels() -> list[str]:
    """The top-level packages pyproject.toml installs (`contracts*` -> contracts): the image needs each."""
    find = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]["find"]
    return sorted({pattern.split(".")[0].rstrip("*") for pattern in find["include"]})


def test_the_image_gets_every_packaged_top_level_package() -> None:
    assert {"contracts", "services", "tools"} <= set(packaged_top_levels())


# --- Kafka identity: the same as the launcher's brokers (docs/security-kafka.md) --------------------

def test_compose_kafka_authenticates_and_authorizes_every_client() -> None:
    env = {k: str(v) for k, v in (compose()["services"]["kafka"].get("environment") or {}).items()}
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}, "a listener without authentication"
    assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false" and env["KAFKA_SUPER_USERS"] == "User:admin"


def test_compose_gives_each_service_its_own_principal_and_keeps_passwords_out() -> None:
    from contracts.topics import all_topics
    from tools.kafka.acls import ADMIN, service_principals
    from tools.kafka.security import compose_password_variable

    doc = compose()
    kafka_env = {k: str(v) for k, v in doc["services"]["kafka"]["environment"].items()}
    made = kafka_env["CITYOPS_KAFKA_PRINCIPALS"].split()
    assert sorted(made) == sorted([ADMIN, *service_principals(all_topics())]), "compose's users are not the catalogue's"
    for principal in made:
        assert kafka_env[compose_password_variable(principal)] == f"${{{compose_password_variable(principal)}}}"
    for name, entry in app_entries().items():
        env = entry.get("environment") or {}
        expected = ADMIN if name == "topics" else name
        assert env.get("CITYOPS_KAFKA_USERNAME") == expected, name
        assert env.get("CITYOPS_KAFKA_PASSWORD") == f"${{{compose_password_variable(expected)}}}", name
