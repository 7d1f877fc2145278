"""Kafka identity and least privilege on the real broker (issue 11, point 3), with kcat as an operator runs it.

The session's broker is the one every test uses; it runs with SASL/SCRAM-SHA-512, the StandardAuthorizer and
the ACLs derived from the topic catalogue (tools/kafka/acls.py). Each principal's kcat configuration is the file
`cityops kafka client-config --principal NAME` prints.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from contracts.topics import ACT, AREA_TASKS, INTAKE, TRIAGE, own_task_topic
from services.common.kafka import ensure_topics, kafka_access
from services.common.settings import KafkaClientSettings
from tests.integration.kcat import kcat
from tools.kafka.security import librdkafka_properties
from tools.topics_cli import hub_topics

pytestmark = pytest.mark.kafka

UNIT, OTHER_UNIT = "water", "gas"
GRID = "grid-east-1-a-1"  # an area unit: its tasks are on the shared AREA_TASKS topic


@pytest.fixture(scope="module")
def node(kafka_node: Any, kafka_bootstrap: str) -> Any:
    if kafka_node is None:
        pytest.skip("an external broker (CITYOPS_TEST_KAFKA_BOOTSTRAP): its users and ACLs are not ours to know")
    asyncio.run(ensure_topics(kafka_bootstrap, hub_topics()))  # as the admin, who alone may create topics
    return kafka_node


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kcat")


def config_for(node: Any, principal: str, directory: Path) -> Path:
    path = directory / f"{principal}.properties"
    path.write_text(librdkafka_properties(node.bootstrap, node.credentials, principal))
    return path


def run_kcat(directory: Path, *args: str, timeout: float = 30) -> tuple[int, str]:
    result = kcat(*args, library_dir=directory / "lib", timeout=timeout)
    return result.returncode, result.stdout + result.stderr


async def produce_as(node: Any, principal: str, topic: str, value: bytes, key: bytes = b"T-security") -> None:
    settings = KafkaClientSettings(kafka_bootstrap=node.bootstrap, kafka_username=principal,
                                   kafka_password=node.credentials.password(principal))
    producer = AIOKafkaProducer(**kafka_access(settings).options, acks="all", request_timeout_ms=10000)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def test_kcat_without_credentials_is_refused(node: Any, config_dir: Path) -> None:
    code, output = run_kcat(config_dir, "-b", node.bootstrap, "-L", "-m", "5")
    assert code != 0 and "Failed to acquire metadata" in output, output


def test_a_client_without_credentials_is_refused(node: Any) -> None:
    async def anonymous() -> None:
        producer = AIOKafkaProducer(**kafka_access(KafkaClientSettings(kafka_bootstrap=node.bootstrap, kafka_username=None)).options,
                                    request_timeout_ms=5000)
        try:
            await asyncio.wait_for(producer.start(), 15)
        finally:
            await producer.stop()

    with pytest.raises((KafkaError, asyncio.TimeoutError)):
        asyncio.run(anonymous())


def test_a_wrong_password_is_refused(node: Any, config_dir: Path) -> None:
    path = config_for(node, f"unit-{UNIT}", config_dir)
    path.write_text(path.read_text().replace("sasl.password=", "sasl.password=x"))
    code, output = run_kcat(config_dir, "-F", str(path), "-L", "-m", "5")
    assert code != 0 and "Authentication failed" in output, output


def test_a_unit_reads_its_own_task_topic(node: Any, config_dir: Path) -> None:
    asyncio.run(produce_as(node, "act", own_task_topic(UNIT), b'{"for": "water"}'))
    code, output = run_kcat(config_dir, "-F", str(config_for(node, f"unit-{UNIT}", config_dir)), "-C",
                            "-t", own_task_topic(UNIT), "-o", "beginning", "-e", "-q")
    assert code == 0 and '{"for": "water"}' in output, output


@pytest.mark.parametrize("topic", [INTAKE.name, own_task_topic(OTHER_UNIT), AREA_TASKS.name])
def test_a_unit_is_refused_the_intake_topic_and_other_units_topics(node: Any, config_dir: Path, topic: str) -> None:
    asyncio.run(produce_as(node, "intake" if topic == INTAKE.name else "act", topic, b"secret"))
    code, output = run_kcat(config_dir, "-F", str(config_for(node, f"unit-{UNIT}", config_dir)), "-C",
                            "-t", topic, "-o", "beginning", "-e", "-q", timeout=30)
    assert "Topic authorization failed" in output, output
    assert "secret" not in output


@pytest.mark.parametrize("reader", ["bridge", "units"])
def test_the_bridge_and_the_simulated_units_read_the_shared_area_topic(node: Any, config_dir: Path, reader: str) -> None:
    asyncio.run(produce_as(node, "act", AREA_TASKS.name, b'{"for": "the grid"}', key=GRID.encode()))
    code, output = run_kcat(config_dir, "-F", str(config_for(node, reader, config_dir)), "-C",
                            "-t", AREA_TASKS.name, "-o", "beginning", "-e", "-q")
    assert code == 0 and '{"for": "the grid"}' in output, output


def test_an_area_unit_has_no_kafka_identity(node: Any) -> None:
    """A grid reaches its work through the unit HTTP bridge: the broker knows no principal for it."""
    assert f"unit-{GRID}" not in node.credentials.passwords
    assert f"unit-{UNIT}" in node.credentials.passwords


def test_a_unit_cannot_write_its_task_topic(node: Any, config_dir: Path) -> None:
    forged = config_dir / "forged.txt"
    forged.write_text('{"forged": true}\n')
    code, output = run_kcat(config_dir, "-F", str(config_for(node, f"unit-{UNIT}", config_dir)), "-P",
                            "-t", own_task_topic(UNIT), "-l", "-X", "message.timeout.ms=5000", str(forged))
    assert "authorization failed" in output.lower(), output
    code, output = run_kcat(config_dir, "-F", str(config_for(node, "admin", config_dir)), "-C",
                            "-t", own_task_topic(UNIT), "-o", "beginning", "-e", "-q")
    assert code == 0 and "forged" not in output, output


def test_a_service_cannot_write_a_topic_it_does_not_produce(node: Any) -> None:
    asyncio.run(produce_as(node, "triage", TRIAGE.name, b"{}"))  # its own topic: allowed
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(produce_as(node, "triage", ACT.name, b"{}"))
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(produce_as(node, "projections", TRIAGE.name, b"{}"))
