"""Erasure end to end: the real broker, intake, discover, triage, projections and the archiver as their own OS
processes. Tickets are submitted with a test caller's name and phone (also inside the text and the address)
over HTTP, Open311 and the machine channel; they flow through the hub; intake can open the sealed caller
(the key is what protects it); `cityops privacy erase --phone` destroys the key; then every topic (raw bytes
and decoded), every database file and every log of the run is searched: no trace of the name or the phone.

The machine channel's topic is the one exception: it holds what outside systems sent, in plain JSON, until
its one-day retention removes it (checked here, and documented in docs/privacy.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from sqlalchemy import create_engine, text

from contracts import codec
from contracts.topics import CHANNEL_INTAKE, INTAKE
from services.common.kafka import kafka_access
from services.common.settings import REPO_ROOT
from services.intake.keystore import open_sealed
from tests.harness.auth import TEST_KEY, bearer
from tests.harness.http import wait_healthy
from tests.harness.topics import fresh_hub_topics
from tools.supervisor import Supervisor

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

HTTP_PORT = int(os.environ.get("CITYOPS_TEST_HTTP_PORT", "18080")) + 7
SERVICES = ["discover", "triage", "projections", "archiver"]
EAST = {"district": "district-east", "street": "street-east-1", "community": "community-east-1-a", "grid": "grid-east-1-a-1"}
NAME = "司徒晓岚"
PHONE = "139" + "".join(random.choice("0123456789") for _ in range(8))  # this run's caller: found nowhere else
SPACED = f"{PHONE[:3]} {PHONE[3:7]} {PHONE[7:]}"
DASHED = f"{PHONE[:3]}-{PHONE[3:7]}-{PHONE[7:]}"
OTHER_PHONE = "137" + PHONE[3:]


def _phone_anywhere() -> re.Pattern[bytes]:
    """The number in any spacing: its digits with at most one space or dash between two of them."""
    return re.compile(rb"[ \-]?".join(re.escape(d.encode()) for d in PHONE))


PHONE_RE = _phone_anywhere()
NAME_FORMS = [NAME.encode(), json.dumps(NAME).strip('"').encode(), NAME.encode("utf-16-le")]


def traces(blob: bytes) -> list[str]:
    found = [f"phone {m.group(0)!r}" for m in PHONE_RE.finditer(blob)]
    return found + [f"name {form!r}" for form in NAME_FORMS if form in blob]


class Run:
    def __init__(self, bootstrap: str, state: Path, node: Any) -> None:
        self.bootstrap, self.state = bootstrap, state
        self.env = dict(os.environ, CITYOPS_MODE="demo", CITYOPS_KAFKA_BOOTSTRAP=bootstrap, CITYOPS_STATE_DIR=str(state),
                        CITYOPS_LOG_JSON="true", CITYOPS_LOG_LEVEL="DEBUG", CITYOPS_INTAKE_HTTP_PORT=str(HTTP_PORT),
                        CITYOPS_BATCH_TIMEOUT_MS="20", PYTHONUNBUFFERED="1", CITYOPS_AUTH_KEY=TEST_KEY)
        # each service process is its own Kafka principal, as in the hub
        self.supervisor = Supervisor(state / "logs", env=self.env, cwd=REPO_ROOT, stop_timeout=20,
                                     kafka_env=node.client_env if node is not None else None)

    def intake_db(self) -> Any:
        return create_engine(f"sqlite:///{self.state / 'intake.db'}")


@pytest.fixture(scope="module")
def run(kafka_bootstrap: str, kafka_node: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    asyncio.run(fresh_hub_topics(kafka_bootstrap))  # a clean log: other tests write the hub's topics too
    r = Run(kafka_bootstrap, tmp_path_factory.mktemp("privacy"), kafka_node)
    try:
        for name in [*SERVICES, "intake"]:
            r.supervisor.start_service(name)
        asyncio.run(wait_healthy(HTTP_PORT))
        yield r
    finally:
        r.supervisor.stop_all()



async def _submit_everywhere(bootstrap: str) -> list[str]:
    """The caller's tickets by every door: the hotline API, Open311 and the machine channel."""
    text = f"我是{NAME}，电话{SPACED}，小区门口垃圾三天没人收了，身份证号330106199001011234"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{HTTP_PORT}", timeout=30) as c:
        api = await c.post("/tickets", headers=bearer("operator", "op-privacy"), json={"text": text, "caller_name": NAME, "caller_phone": DASHED, "category":
                                             "city-management.garbage-collection",
                                             "location": {**EAST, "address": f"桂花路88号 联系{PHONE}"}})
        assert api.status_code == 202, api.text
        o311 = await c.post("/open311/v2/requests.json", headers=bearer("app", "wechat", client_id="wechat"), data={
            "service_code": "city-management.street-light", "description": f"路灯坏了，回电{PHONE}",
            "first_name": NAME, "phone": PHONE, "lat": "31.23", "long": "121.47"})
        assert o311.status_code == 201, o311.text
    key = f"privacy-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(**kafka_access(bootstrap).options, acks="all")
    await producer.start()
    try:
        body = {"text": f"井盖丢了 manhole cover missing, call {SPACED}", "caller_name": NAME, "caller_phone": PHONE,
                "channel": "grid-patrol", "location": EAST}
        await producer.send_and_wait(CHANNEL_INTAKE.name, json.dumps(body, ensure_ascii=False).encode(), key=key.encode())
    finally:
        await producer.stop()
    from services.intake.domain import ticket_id_for
    return [api.json()["ticket_id"], o311.json()[0]["service_request_id"], ticket_id_for(f"channel:{key}")]


async def _wait_registered(ticket_ids: list[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{HTTP_PORT}", headers=bearer("operator", "op-privacy")) as c:
        for ticket_id in ticket_ids:
            while True:
                r = await c.get(f"/tickets/{ticket_id}")
                if r.status_code == 200 and r.json()["status"] != "registered":
                    break  # registered by discover, then classified (or queued for an operator) by triage
                assert time.monotonic() < deadline, f"{ticket_id} never classified: {r.text}"
                await asyncio.sleep(0.3)


def _rows(engine: Any, query: str) -> list[Any]:
    with engine.connect() as c:
        return list(c.execute(text(query)))


def _wait_for_rows(path: Path, query: str, wanted: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        n = 0
        if path.exists():
            try:
                n = _rows(create_engine(f"sqlite:///{path}"), query)[0][0]
            except Exception:  # the service is still creating its tables
                n = 0
        if n >= wanted:
            return
        assert time.monotonic() < deadline, f"{path.name}: {n} of {wanted} rows for {query}"
        time.sleep(0.5)


async def _every_record(bootstrap: str) -> dict[str, list[Any]]:
    consumer = AIOKafkaConsumer(**kafka_access(bootstrap).options, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()  # every topic of the broker, with its partitions
        topics = sorted(t for t in cluster.topics() if not t.startswith("__"))
        parts = [TopicPartition(t, p) for t in topics for p in cluster.partitions_for_topic(t) or ()]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out: dict[str, list[Any]] = {t: [] for t in topics}
        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in parts])

        while await behind():
            for tp, records in (await consumer.getmany(timeout_ms=1000, max_records=5000)).items():
                out[tp.topic].extend(records)
        return out
    finally:
        await consumer.stop()


async def _retention_ms(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(**kafka_access(bootstrap).options)
    await admin.start()
    try:
        described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        entries = {e[0]: e[1] for response in described for resource in response.resources for e in resource[4]}
        return int(entries["retention.ms"])
    finally:
        await admin.close()


def _sealed_submissions(records: dict[str, list[Any]], ticket_ids: list[str]) -> list[Any]:
    out = []
    for r in records[INTAKE.name]:
        envelope = codec.decode(r.key, r.value, r.headers)
        if envelope.ticket_id in ticket_ids:
            out.append(envelope)
    return out


def test_an_erased_caller_leaves_no_trace_in_topics_stores_or_logs(run: Run) -> None:
    ticket_ids = asyncio.run(_submit_everywhere(run.bootstrap))
    asyncio.run(_wait_registered(ticket_ids))
    quoted = ",".join(f"'{t}'" for t in ticket_ids)
    _wait_for_rows(run.state / "projections.db", f"select count(*) from proj_tickets where ticket_id in ({quoted})", 3)
    _wait_for_rows(run.state / "archiver.db", "select count(*) from archive where topic = 'cityops.intake.v1'", 3)

    # Before erasure: the intake records hold the caller sealed, and intake's key opens them.
    submissions = _sealed_submissions(asyncio.run(_every_record(run.bootstrap)), ticket_ids)
    assert {e.ticket_id for e in submissions} == set(ticket_ids)
    engine = run.intake_db()
    from sqlmodel import Session
    with Session(engine) as session:
        opened = [open_sealed(session, e.data.sealed_caller, e.ticket_id) for e in submissions]
    assert all(c is not None and c.name == NAME and PHONE in re.sub(r"\D", "", c.phone or "")
               for c in opened), opened
    assert all(e.data.caller_ref.masked_phone == f"{PHONE[:3]}****{PHONE[-4:]}" for e in submissions)
    keys_before = [bytes(k) for (k,) in _rows(engine, "select data_key from intake_caller_keys")]
    engine.dispose()

    # Erase with the command an operator runs (another caller's number erases nothing).
    cli = [sys.executable, "-c", "from tools.cli import main; main()", "privacy", "erase", "--phone"]
    other = subprocess.run([*cli, OTHER_PHONE], env=run.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert other.returncode == 0 and "nothing to erase" in other.stdout, other.stdout + other.stderr
    erased = subprocess.run([*cli, SPACED], env=run.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert erased.returncode == 0, erased.stdout + erased.stderr
    assert "erased 1 caller key(s)" in erased.stdout and "3 ticket(s)" in erased.stdout, erased.stdout
    assert not traces(erased.stdout.encode() + erased.stderr.encode())

    engine = run.intake_db()
    with Session(engine) as session:
        assert all(open_sealed(session, e.data.sealed_caller, e.ticket_id) is None for e in submissions)
    engine.dispose()
    run.supervisor.stop_all()  # every store closed and every log flushed before they are searched

    # Every topic, raw bytes (keys, values, headers) and decoded.
    records = asyncio.run(_every_record(run.bootstrap))
    found = []
    for topic, rs in records.items():
        if topic.startswith(CHANNEL_INTAKE.name):
            continue  # plain JSON from outside, kept one day (below)
        for r in rs:
            raw = (r.key or b"") + (r.value or b"") + b"".join(k.encode() + (v or b"") for k, v in r.headers or ())
            found += [f"{topic}@{r.offset} raw: {t}" for t in traces(raw)]
            try:
                decoded = codec.decode(r.key, r.value, r.headers).model_dump_json().encode()
            except Exception:
                continue
            found += [f"{topic}@{r.offset} decoded: {t}" for t in traces(decoded)]
    assert found == []
    assert sum(len(rs) for t, rs in records.items() if t.startswith("cityops.tickets")) >= 3  # the search saw the flow
    channel_retention = asyncio.run(_retention_ms(run.bootstrap, CHANNEL_INTAKE.name))
    assert 0 < channel_retention <= 24 * 3600 * 1000
    assert 0 < asyncio.run(_retention_ms(run.bootstrap, CHANNEL_INTAKE.dlq)) <= 24 * 3600 * 1000

    # Every file the run left: databases (with their write-ahead logs) and logs.
    files = [p for p in run.state.rglob("*") if p.is_file()]
    assert {"intake.db", "discover.db", "triage.db", "projections.db", "archiver.db"} <= {p.name for p in files}, files
    assert any(p.suffix == ".log" for p in files)
    found = [f"{p.relative_to(run.state)}: {t}" for p in files for t in traces(p.read_bytes())]
    assert found == []
    assert not [p.name for p in files for key in keys_before if key in p.read_bytes()]  # the key itself is gone
