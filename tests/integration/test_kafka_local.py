"""The project-managed Kafka (tools/kafka/) against the real broker it launches.

These are also the proof that aiokafka 0.14 works with Kafka 4.1.1 for what cityops relies on:
record headers, transactions with consumer offsets (exactly-once read-process-write), and a
replicated cluster with acks=all. Ports 29000-29999 are ours; other engineers use 9092/19092.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts.topics import TopicSpec
from services.common.kafka import ensure_topics, kafka_access
from services.common.settings import KafkaClientSettings
from tests.integration.kcat import kcat
from tools.kafka import (
    KafkaLocalError,
    KafkaLocalSettings,
    LocalKafka,
    LocalKafkaCluster,
    find_free_ports,
)
from tools.kafka.acls import ADMIN
from tools.kafka.security import Credentials, librdkafka_properties

pytestmark = pytest.mark.kafka

PORT_RANGE = (29000, 29999)


@pytest.fixture(scope="module")
def kafka_settings(tmp_path_factory: pytest.TempPathFactory) -> KafkaLocalSettings:
    # State in pytest's temp dir: a developer's own broker in .state/kafka is never touched,
    # and the last runs' broker logs stay around for post-mortems.
    return KafkaLocalSettings(state_dir=tmp_path_factory.mktemp("kafka-state"))


@pytest.fixture
def single_kafka(kafka_settings: KafkaLocalSettings) -> Iterator[LocalKafka]:
    """A started one-node broker; always stopped afterwards, even if the test failed."""
    port = find_free_ports(2, *PORT_RANGE)
    kafka = LocalKafka(kafka_settings, name=f"single-{uuid.uuid4().hex[:6]}", port=port, fresh=True)
    try:
        kafka.start()
        yield kafka
    finally:
        kafka.stop()


def _pid_is_gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


async def _create_topic(bootstrap: KafkaClientSettings, topic: NewTopic) -> None:
    admin = AIOKafkaAdminClient(**kafka_access(bootstrap).options)
    await admin.start()
    try:
        response = await admin.create_topics([topic])
        errors = [(t[0], t[1]) for t in response.topic_errors if t[1] != 0]
        assert not errors, f"create_topics failed: {errors}"
        # CreateTopics returns once the controller committed the topic; the broker that answers
        # metadata learns of it a moment later, so wait until it lists every partition's leader.
        async with asyncio.timeout(30):
            while not await _topic_has_leaders(admin, topic.name):
                await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def _topic_has_leaders(admin: AIOKafkaAdminClient, topic: str) -> bool:
    [description] = await admin.describe_topics([topic])
    partitions = description["partitions"]
    return description["error_code"] == 0 and bool(partitions) and all(p["leader"] >= 0 for p in partitions)


async def _consume(bootstrap: KafkaClientSettings, topic: str, count: int, linger: float = 0.0, **consumer_options: object) -> list:
    """At least `count` records from the start of `topic`, plus whatever arrives in `linger` more seconds."""
    consumer = AIOKafkaConsumer(
        topic, **kafka_access(bootstrap).options, auto_offset_reset="earliest", enable_auto_commit=False, **consumer_options
    )
    await consumer.start()
    try:
        records = await _get_records(consumer, count)
        if linger:
            batches = await consumer.getmany(timeout_ms=int(linger * 1000))
            records.extend(r for batch in batches.values() for r in batch)
    finally:
        await consumer.stop()
    return records


async def test_single_broker_round_trip_with_headers_and_kcat(kafka_settings: KafkaLocalSettings) -> None:
    kafka = LocalKafka(kafka_settings, name="roundtrip", port=find_free_ports(2, *PORT_RANGE), fresh=True)
    try:
        await kafka.start_async()
        bootstrap = kafka.client_settings()  # the admin: the broker refuses anonymous clients
        pid = kafka.running_pid()
        assert pid is not None
        topic = "test.ticket.registered"
        await _create_topic(bootstrap, NewTopic(topic, num_partitions=3, replication_factor=1))

        body = {"ticket_id": "T-0001", "category": "street-light", "text": "路灯不亮"}
        headers = [("event_type", b"ticket.registered"), ("trace_id", b"trace-42")]
        producer = AIOKafkaProducer(**kafka_access(bootstrap).options, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            await producer.send_and_wait(topic, json.dumps(body).encode(), key=b"T-0001", headers=headers)
        finally:
            await producer.stop()

        [record] = await _consume(bootstrap, topic, 1, group_id="test-roundtrip")
        assert record.key == b"T-0001"
        assert list(record.headers) == headers
        assert json.loads(record.value) == body

        config = kafka.node_dir / "admin.properties"
        config.write_text(librdkafka_properties(kafka.bootstrap, kafka.credentials, ADMIN))
        result = await asyncio.to_thread(
            kcat, "-F", str(config), "-C", "-t", topic, "-c", "1", "-e", "-f", "%h %s\n",
            library_dir=kafka.node_dir / "kcat-lib", timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        printed_headers, printed_body = result.stdout.strip().split(" ", 1)
        assert printed_headers == "event_type=ticket.registered,trace_id=trace-42"
        assert json.loads(printed_body) == body
    finally:
        await asyncio.to_thread(kafka.stop)
    assert kafka.running_pid() is None
    assert _pid_is_gone(pid), f"JVM {pid} still exists after stop()"


async def test_transactional_read_process_write_commits_offsets(single_kafka: LocalKafka) -> None:
    bootstrap = single_kafka.client_settings()
    source, sink, group = "test.txn.in", "test.txn.out", "test-txn-relay"
    await _create_topic(bootstrap, NewTopic(source, num_partitions=1, replication_factor=1))
    await _create_topic(bootstrap, NewTopic(sink, num_partitions=1, replication_factor=1))

    plain = AIOKafkaProducer(**kafka_access(bootstrap).options, acks="all")
    await plain.start()
    try:
        for n in range(3):
            await plain.send_and_wait(source, f"in-{n}".encode())
    finally:
        await plain.stop()

    consumer = AIOKafkaConsumer(
        source, **kafka_access(bootstrap).options, group_id=group, auto_offset_reset="earliest",
        enable_auto_commit=False, isolation_level="read_committed",
    )  # fmt: skip
    producer = AIOKafkaProducer(**kafka_access(bootstrap).options, transactional_id="test-txn-relay-1")
    await consumer.start()
    await producer.start()
    try:
        inputs = await _get_records(consumer, 3)
        async with producer.transaction():
            for record in inputs:
                await producer.send(sink, record.value.replace(b"in-", b"out-"))
            last = inputs[-1]
            await producer.send_offsets_to_transaction({TopicPartition(source, last.partition): last.offset + 1}, group)

        # An aborted transaction's records must stay invisible to read_committed readers.
        await producer.begin_transaction()
        await producer.send(sink, b"never-visible")
        await producer.abort_transaction()
    finally:
        await producer.stop()
        await consumer.stop()

    # The linger gives a leaked aborted record the chance to show up.
    outputs = await _consume(
        bootstrap, sink, 3, linger=1.0, group_id="test-txn-check", isolation_level="read_committed"
    )
    assert sorted(r.value for r in outputs) == [b"out-0", b"out-1", b"out-2"]
    assert await _committed_offset(bootstrap, group, TopicPartition(source, 0)) == 3


async def _get_records(consumer: AIOKafkaConsumer, count: int) -> list:
    records: list = []
    async with asyncio.timeout(30):
        while len(records) < count:
            batches = await consumer.getmany(timeout_ms=500)
            records.extend(r for batch in batches.values() for r in batch)
    return records


async def _committed_offset(bootstrap: KafkaClientSettings, group: str, partition: TopicPartition) -> int | None:
    admin = AIOKafkaAdminClient(**kafka_access(bootstrap).options)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=[partition])
    finally:
        await admin.close()
    return offsets[partition].offset if partition in offsets else None


@pytest.mark.parametrize(("name", "update", "message"), [
    ("doomed", {"heap": "-Xmx1k"}, "Too small maximum heap"),  # the JVM refuses to boot
    # A flag the JVM does not know stops it at once, with its own message: proof the setting is on the command line.
    ("odd-flags", {"jvm_flags": "-XX:+UseG1GC -XX:+NoSuchCityopsFlag"}, "NoSuchCityopsFlag"),
])
def test_jvm_dying_during_start_raises_with_its_log_tail(kafka_settings: KafkaLocalSettings, name: str,
                                                         update: dict[str, str], message: str) -> None:
    kafka = LocalKafka(kafka_settings.model_copy(update=update), name=name, port=find_free_ports(2, *PORT_RANGE), fresh=True)
    try:
        with pytest.raises(KafkaLocalError, match=message):
            kafka.start(timeout=60)
    finally:
        kafka.stop()
    assert kafka.running_pid() is None
    assert not kafka.pid_file.exists()


@pytest.fixture
def cluster(kafka_settings: KafkaLocalSettings) -> Iterator[LocalKafkaCluster]:
    """A started 3-node cluster; always stopped afterwards, even if the test failed."""
    base_port = find_free_ports(6, *PORT_RANGE)
    local_cluster = LocalKafkaCluster(kafka_settings, n=3, base_port=base_port, name="cluster", fresh=True)
    try:
        local_cluster.start()
        yield local_cluster
    finally:
        local_cluster.stop()


async def test_three_broker_cluster_replicates_with_acks_all(cluster: LocalKafkaCluster) -> None:
    pids = cluster.pids()
    assert len(pids) == 3
    bootstrap = cluster.client_settings()
    topic = "test.cluster.replicated"
    await _create_topic(
        bootstrap, NewTopic(topic, num_partitions=3, replication_factor=3, topic_configs={"min.insync.replicas": "2"})
    )
    await _assert_fully_replicated(bootstrap, topic, replicas=3)

    producer = AIOKafkaProducer(**kafka_access(bootstrap).options, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for n in range(30):
            await producer.send_and_wait(topic, f"event-{n}".encode(), key=f"ticket-{n % 7}".encode())
    finally:
        await producer.stop()
    records = await _consume(bootstrap, topic, 30, group_id="test-cluster")
    assert sorted(r.value for r in records) == sorted(f"event-{n}".encode() for n in range(30))

    # The hub's own topic creation, with no replication given, makes the cluster's topics durable by itself.
    hub_topic = "test.cluster.hub-default"
    assert await ensure_topics(bootstrap, [TopicSpec(hub_topic, "hub default", ())]) == [hub_topic]
    await _assert_fully_replicated(bootstrap, hub_topic, replicas=3)
    assert await _topic_config(bootstrap, hub_topic, "min.insync.replicas") == "2"

    # One broker lost: acks=all writes go on (2 of 3 in sync) and nothing acknowledged is lost.
    await asyncio.to_thread(cluster.nodes[2].stop)
    producer = AIOKafkaProducer(**kafka_access(bootstrap).options, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for n in range(20):
            await producer.send_and_wait(hub_topic, f"after-{n}".encode(), key=f"ticket-{n % 7}".encode())
    finally:
        await producer.stop()
    survivors = await _consume(bootstrap, hub_topic, 20, group_id="test-cluster-survivors")
    assert sorted(r.value for r in survivors) == sorted(f"after-{n}".encode() for n in range(20))

    await asyncio.to_thread(cluster.stop)
    assert cluster.pids() == []
    assert all(_pid_is_gone(pid) for pid in pids), f"cluster JVMs left: {[p for p in pids if not _pid_is_gone(p)]}"


async def _topic_config(bootstrap: KafkaClientSettings, topic: str, name: str) -> str | None:
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(**kafka_access(bootstrap).options)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        for _error, _message, _type, _resource, entries in response.resources:
            for entry in entries:
                if entry[0] == name:
                    return str(entry[1])
        return None
    finally:
        await admin.close()


async def _assert_fully_replicated(bootstrap: KafkaClientSettings, topic: str, replicas: int) -> None:
    admin = AIOKafkaAdminClient(**kafka_access(bootstrap).options)
    await admin.start()
    try:
        async with asyncio.timeout(30):
            while True:
                [description] = await admin.describe_topics([topic])
                partitions = description["partitions"]
                if partitions and all(len(p["isr"]) == replicas for p in partitions):
                    break
                await asyncio.sleep(0.2)
        assert all(len(p["replicas"]) == replicas for p in partitions)
    finally:
        await admin.close()


def test_a_cluster_id_starting_with_a_dash_still_formats(tmp_path):
    """URL-safe base64 ids start with '-' one time in 64; the storage tool must not read it as an option."""
    node = LocalKafka(KafkaLocalSettings(state_dir=tmp_path), name="dash", port=find_free_ports(2, *PORT_RANGE),
                      cluster_id="-AbCdEfGhIjKlMnOpQrStU", fresh=True)
    node._write_config_files()
    node._format_storage()
    assert node._formatted_cluster_id() == "-AbCdEfGhIjKlMnOpQrStU"


def test_a_principal_added_after_formatting_gets_its_user_at_the_next_start(kafka_settings: KafkaLocalSettings) -> None:
    """A unit added to the catalogue later: its password is made and its SCRAM user created on the next start."""
    kafka = LocalKafka(kafka_settings, name="newcomer", port=find_free_ports(2, *PORT_RANGE), fresh=True)
    again = LocalKafka(kafka_settings, name="newcomer", port=kafka.port)
    try:
        kafka.start()
        kafka.stop()
        Credentials.load_or_create(kafka.credentials_file, [*kafka.credentials.passwords, "unit-newcomer"])
        again.start()

        async def list_topics_as_newcomer() -> list[str]:
            admin = AIOKafkaAdminClient(**kafka_access(again.client_settings("unit-newcomer")).options)
            await admin.start()
            try:
                return list(await admin.list_topics())
            finally:
                await admin.close()

        assert asyncio.run(list_topics_as_newcomer()) == []  # authenticated; no ACL lets it see a topic
    finally:
        kafka.stop()
        again.stop()


def test_storage_formatted_without_users_is_refused_with_what_to_do(kafka_settings: KafkaLocalSettings) -> None:
    kafka = LocalKafka(kafka_settings, name="old-storage", port=find_free_ports(2, *PORT_RANGE))
    (kafka.data_dir).mkdir(parents=True)
    (kafka.data_dir / "meta.properties").write_text("cluster.id=x\nnode.id=1\nversion=1\n")
    with pytest.raises(KafkaLocalError, match="--fresh"):
        kafka.start(timeout=30)


def test_a_killed_broker_starts_again_on_its_data(single_kafka: LocalKafka) -> None:
    """SIGKILL (the chaos run's broker crash), then `start` on the same object: the broker comes back with its
    topics. The dead JVM must not be taken for the new one dying while it starts."""
    asyncio.run(_create_topic(single_kafka.client_settings(), NewTopic("survives-a-crash", 1, 1)))
    pid = single_kafka.kill()
    assert pid is not None and _pid_is_gone(pid) and single_kafka.running_pid() is None
    single_kafka.start()

    async def topics() -> list[str]:
        admin = AIOKafkaAdminClient(**kafka_access(single_kafka.client_settings()).options)
        await admin.start()
        try:
            return list(await admin.list_topics())
        finally:
            await admin.close()

    assert "survives-a-crash" in asyncio.run(topics())
