"""How every client reaches Kafka (`kafka_access`), the services' broker factory, and topic administration.

Every Kafka client of the project (services, tools, the unit SDK, tests) gets its address and identity
from `kafka_access`: FastStream brokers take its `security`, raw aiokafka clients its `options`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from contracts.codec import KafkaRecord
from contracts.topics import TopicSpec

from .logs import get_logger
from .settings import KafkaClientSettings, ServiceSettings

log = get_logger(__name__)


async def lenient_batch_parser(records: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream decodes every header as UTF-8; one record with binary header bytes would fail its
    batch for ever. Parse a UTF-8-safe copy and keep the original records (and bytes) as the raw
    message, so our own decoding can dead-letter that record alone."""
    try:
        return await original(records)
    except UnicodeDecodeError:
        safe = tuple(dataclasses.replace(r, headers=[(k, v.decode(errors="replace").encode()) for k, v in r.headers])
                     for r in records)
        parsed = await original(safe)
        parsed.raw_message = records
        return parsed


@dataclass(frozen=True)
class FetchPacing:
    """How much a consumer's fetch asks the broker to gather before it answers, by how busy the consumer is.

    A fixed choice loses either way. aiokafka's default (answer as soon as one byte is there, else after 500 ms)
    keeps a quiet hop fast and an idle consumer cheap, but under load each fetch brings back a record or two: every
    batch pays its transaction, commit and bookkeeping for them, and the broker answers 5-6 readers per record
    written. Gathering 16 KiB for up to 20 ms under load measured 18 % less broker CPU per event, but held every
    quiet hop for the 20 ms and made an idle hub fetch 50 times a second per consumer (3x its idle CPU). So a poll
    that returned at least `busy_records` records asks the next fetches to gather; one that returned fewer goes
    back to answering at once."""

    quiet_max_wait_ms: int = 500
    busy_min_bytes: int = 16_384
    busy_max_wait_ms: int = 20
    busy_records: int = 2

    @property
    def enabled(self) -> bool:
        return self.busy_min_bytes > 1

    def apply(self, consumer: Any, returned: int) -> None:
        """Set the fetch parameters of the consumer's next fetch requests from what its last poll returned."""
        fetcher: Any = getattr(consumer, "_fetcher", None)
        if not all(hasattr(fetcher, a) for a in ("_fetch_min_bytes", "_fetch_max_wait_ms")):
            raise TypeError(f"cannot pace the fetches of {type(consumer).__name__} (aiokafka's Fetcher changed?)")
        busy = returned >= self.busy_records
        fetcher._fetch_min_bytes = self.busy_min_bytes if busy else 1  # noqa: SLF001  # aiokafka reads them per request
        fetcher._fetch_max_wait_ms = self.busy_max_wait_ms if busy else self.quiet_max_wait_ms  # noqa: SLF001


def fetch_pacing(settings: ServiceSettings) -> FetchPacing:
    return FetchPacing(quiet_max_wait_ms=settings.fetch_max_wait_ms, busy_min_bytes=settings.fetch_busy_min_bytes,
                       busy_max_wait_ms=settings.fetch_busy_max_wait_ms, busy_records=settings.fetch_busy_records)


class PolledRecords(tuple[Any, ...]):
    """A poll's records, and when the poll returned them: the pipeline splits a batch's wait there (its stages
    `poll` and `dispatch`, services/common/metrics.py). FastStream hands this very tuple to the handler."""

    polled_at: float

    def __new__(cls, records: Iterable[Any]) -> PolledRecords:
        polled = super().__new__(cls, records)
        polled.polled_at = time.time()
        return polled


def poll_without_naps(subscriber: Any, pacing: FetchPacing | None = None) -> Any:
    """A FastStream batch subscriber whose empty polls do not nap (and whose fetches follow `pacing`, if given).

    FastStream's batch subscriber, when a poll of `batch_timeout_ms` found nothing, sleeps as long again before
    the next one, deaf to records that arrive meanwhile: the timeout had to stay tiny (it was 5 ms) and every
    idle consumer woke 100-200 times a second (about 2 % of a core per idle service). aiokafka's `getmany`
    returns as soon as a record is fetched, so without the nap the poll can wait long (an idle consumer wakes a
    few times a second) and a record that arrives is never waited for."""
    if not callable(getattr(subscriber, "get_msg", None)) or not hasattr(subscriber, "batch_timeout_ms"):
        raise TypeError(f"not a FastStream batch subscriber: {type(subscriber).__name__} (FastStream changed?)")
    paced = pacing if pacing is not None and pacing.enabled else None

    async def get_msg(consumer: Any) -> tuple[Any, ...]:
        batches = await consumer.getmany(timeout_ms=subscriber.batch_timeout_ms, max_records=subscriber.max_records)
        records = PolledRecords(itertools.chain.from_iterable(batches.values()))
        if paced is not None:
            paced.apply(consumer, len(records))
        return records

    subscriber.get_msg = get_msg
    return subscriber


@dataclass(frozen=True)
class KafkaAccess:
    """How one client reaches Kafka as one principal: for FastStream (`security`) and for aiokafka (`options`)."""

    bootstrap: str
    protocol: str
    mechanism: str
    username: str | None
    password: str | None = field(repr=False)
    ssl_cafile: Path | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.protocol.endswith("SSL"):
            return None
        return create_ssl_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)

    @property
    def options(self) -> dict[str, Any]:
        """Keyword arguments of AIOKafkaProducer / AIOKafkaConsumer / AIOKafkaAdminClient, bootstrap_servers included."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "security_protocol": self.protocol}
        if self.protocol.startswith("SASL"):
            options.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                           sasl_plain_password=self.password)
        if self.protocol.endswith("SSL"):
            options["ssl_context"] = self.ssl_context()
        return options

    @property
    def security(self) -> BaseSecurity | None:
        """FastStream's `security=` for a KafkaBroker (None: PLAINTEXT)."""
        tls = self.protocol.endswith("SSL")
        context = self.ssl_context()
        if not self.protocol.startswith("SASL"):
            return BaseSecurity(ssl_context=context) if tls else None
        username, password = self.username or "", self.password or ""
        kinds: dict[str, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
            "PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}
        if self.mechanism not in kinds:
            raise ValueError(f"unsupported SASL mechanism {self.mechanism!r}; one of {sorted(kinds)}")
        return kinds[self.mechanism](username, password, ssl_context=context, use_ssl=tls)


def kafka_access(settings: KafkaClientSettings | str | None = None) -> KafkaAccess:
    """THE way a client of this project learns where Kafka is and who it is there.

    `settings`: a service's settings, or a bootstrap address (the credentials then come from the hub-wide
    `CITYOPS_KAFKA_USERNAME` / `CITYOPS_KAFKA_PASSWORD`), or None for everything from the environment."""
    if settings is None or isinstance(settings, str):
        settings = KafkaClientSettings() if settings is None else KafkaClientSettings(kafka_bootstrap=settings)
    password = settings.kafka_password.get_secret_value() if settings.kafka_password else None
    return KafkaAccess(settings.kafka_bootstrap, settings.security_protocol(), settings.kafka_sasl_mechanism,
                       settings.kafka_username, password, settings.kafka_ssl_cafile)


def make_broker(settings: ServiceSettings, **options: Any) -> KafkaBroker:
    """A FastStream broker whose producer batches (linger) and never loses an acknowledged record."""
    access = kafka_access(settings)
    return KafkaBroker(
        # A list: FastStream hands a string to aiokafka as one host, so "a:1,b:2" (the cluster) would not connect.
        access.bootstrap.split(","),
        security=access.security,
        client_id=f"cityops-{settings.service_name}",
        acks="all",
        enable_idempotence=True,
        linger_ms=settings.linger_ms,
        logger=None,  # our pipeline logs per batch; FastStream's per-message lines cost an order of magnitude
        **options,
    )


class BrokerUnavailable(RuntimeError):
    """The broker did not acknowledge a record within the door's publish timeout (down, no leader, not enough
    in-sync replicas). An HTTP door answers 503 with `retry_after_s`: the caller retries with its Idempotency-Key."""

    def __init__(self, topic: str, timeout_s: float, cause: BaseException | None) -> None:
        reason = type(cause).__name__ if cause is not None else "no acknowledgement"
        super().__init__(f"the broker did not acknowledge a record on {topic} within {timeout_s:g}s ({reason})")
        self.retry_after_s = max(1, math.ceil(timeout_s))


async def publish_acknowledged(broker: KafkaBroker, record: KafkaRecord, topic: str, *, timeout_s: float) -> None:
    """Publish one record and wait for the broker's acknowledgement, at most `timeout_s`.

    Without the bound, a producer facing a broker outage waits for metadata for its whole request
    timeout (40 s) and then fails with an unexpected error, so an HTTP caller would hang and get a 500.
    A record whose wait was abandoned may still reach the broker later; its id is derived from the
    caller's Idempotency-Key, so the caller's retry is the same event and is applied once."""
    headers = {k: v.decode() for k, v in record.headers}
    try:
        # A timeout scope, not wait_for: the same bound without wrapping each publish in a task of its own (two
        # acknowledged publishes per HTTP submission: the ticket and its audit record).
        async with asyncio.timeout(timeout_s):
            await broker.publish(record.value, topic, key=record.key, headers=headers)
    except TimeoutError as exc:
        raise BrokerUnavailable(topic, timeout_s, exc) from None
    except KafkaError as exc:
        raise BrokerUnavailable(topic, timeout_s, exc) from exc


MAX_REPLICATION = 3


def durable_topic_config(replication: int) -> dict[str, str]:
    """Per-topic settings that make an acks=all acknowledgement survive one broker's loss: with 3 replicas,
    a write needs 2 in sync, so one broker may be down (writes go on) and an acknowledged record is on two."""
    return {"min.insync.replicas": "2"} if replication >= MAX_REPLICATION else {}


async def ensure_topics(kafka: KafkaClientSettings | str, specs: Iterable[TopicSpec], replication: int | None = None,
                        timeout_s: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; return the names created. Needs a principal allowed to
    create topics: the hub's admin (services have no CREATE permission, see docs/security-kafka.md).

    `replication` None: 3 replicas with min.insync.replicas 2 on a cluster of 3 or more brokers, else one
    per broker (a single local broker: 1)."""
    admin = AIOKafkaAdminClient(request_timeout_ms=int(timeout_s * 1000), **kafka_access(kafka).options)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if not missing:
            return []
        if replication is None:
            replication = min(MAX_REPLICATION, len((await admin.describe_cluster())["brokers"]))
        new = [NewTopic(s.name, num_partitions=s.partitions, replication_factor=replication,
                        topic_configs={**durable_topic_config(replication), **dict(s.config)}) for s in missing]
        try:
            await admin.create_topics(new, timeout_ms=int(timeout_s * 1000))
        except TopicAlreadyExistsError:
            pass  # another process created them first
        await _wait_for_metadata(admin, {s.name for s in missing}, timeout_s)
        log.info("topics_created", count=len(missing), replication=replication)
        return [s.name for s in missing]
    finally:
        await admin.close()


async def _wait_for_metadata(admin: AIOKafkaAdminClient, names: set[str], timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if names <= set(await admin.list_topics()):
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"topics not visible after {timeout_s}s: {sorted(names - set(await admin.list_topics()))}")
