"""Two services in ONE OS process (`cityops service run discover triage`) on the real broker: a ticket flows
through both, each service as its own Kafka principal (the broker's ACLs would refuse a shared identity's
writes), each with its own consumer group; SIGTERM stops the process cleanly."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from contracts import codec
from contracts import events as ev
from contracts.envelope import Envelope
from contracts.topics import INTAKE, TICKETS, TRIAGE
from services.common.kafka import ensure_topics, kafka_access
from services.common.settings import READ_SIDE_NICE
from tools.supervisor import Supervisor
from tools.topics_cli import hub_topics

pytestmark = pytest.mark.kafka

WANTED = {TICKETS.name: ev.TicketRegistered.event_type,
          TRIAGE.name: (ev.TicketClassified.event_type, ev.ManualTriageRequested.event_type)}


async def _first_of_ticket(bootstrap: str, ticket_id: str, timeout_s: float) -> dict[str, str]:
    """Event type seen per topic (tickets, triage) for `ticket_id`, read from the start of each topic."""
    consumer = AIOKafkaConsumer(TICKETS.name, TRIAGE.name, **kafka_access(bootstrap).options,
                                auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
    await consumer.start()
    seen: dict[str, str] = {}
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(seen) < len(WANTED) and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    if r.key != ticket_id.encode():  # other tests' records, some deliberately malformed
                        continue
                    envelope = codec.decode(r.key, r.value, r.headers)
                    if envelope.ticket_id == ticket_id:
                        seen.setdefault(r.topic, envelope.type)
    finally:
        await consumer.stop()
    return seen


async def _groups(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(**kafka_access(bootstrap).options)
    await admin.start()
    try:
        return {g[0] for g in await admin.list_consumer_groups()}
    finally:
        await admin.close()


async def test_two_services_in_one_process_carry_a_ticket_through_both(kafka_node: Any, kafka_bootstrap: str,
                                                                       tmp_path: Path) -> None:
    if kafka_node is None:
        pytest.fail("this test needs the session's own broker (per-service principals); unset CITYOPS_TEST_KAFKA_BOOTSTRAP")
    await ensure_topics(kafka_bootstrap, hub_topics())
    run = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if k not in ("CITYOPS_KAFKA_USERNAME", "CITYOPS_KAFKA_PASSWORD")}
    env.update(CITYOPS_KAFKA_BOOTSTRAP=kafka_bootstrap, CITYOPS_STATE_DIR=str(tmp_path), CITYOPS_LOG_JSON="true",
               CITYOPS_MODE="demo", PYTHONUNBUFFERED="1",
               # a group per run, so a reused broker's earlier offsets do not hide this run's ticket
               CITYOPS_DISCOVER_CONSUMER_GROUP=f"cityops-discover-{run}", CITYOPS_TRIAGE_CONSUMER_GROUP=f"cityops-triage-{run}",
               CITYOPS_ARCHIVER_CONSUMER_GROUP=f"cityops-archiver-{run}")
    supervisor = Supervisor(tmp_path / "logs", env=env, stop_timeout=30, kafka_env=kafka_node.client_env)
    with supervisor:
        pid = supervisor.start_packed(["discover", "triage"])
        name = "discover+triage"
        await asyncio.to_thread(supervisor.wait_ready, name, lambda: supervisor.log_path(name).read_text(
            errors="replace").count('"service_started"') == 2, 240)
        # the workflow's steps keep their priority; a read-side service's process yields the CPU to them
        reader = supervisor.start_service("archiver")
        await asyncio.to_thread(supervisor.wait_started, "archiver")
        assert (os.getpriority(os.PRIO_PROCESS, pid), os.getpriority(os.PRIO_PROCESS, reader)) == (0, READ_SIDE_NICE)
        supervisor.stop("archiver")
        ticket_id = f"T-PACKED-{run}"
        submitted = Envelope.origin(ev.TicketSubmitted(channel="phone", text="小区门口的路灯坏了好几天了，晚上很黑",
                                                       submitted_at=datetime.now(UTC)), source="/test", ticket_id=ticket_id)
        record = codec.encode(submitted)
        producer = AIOKafkaProducer(**kafka_access(kafka_bootstrap).options, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(INTAKE.name, record.value, key=record.key, headers=record.headers)
        finally:
            await producer.stop()

        seen = await _first_of_ticket(kafka_bootstrap, ticket_id, timeout_s=60)
        assert seen.get(TICKETS.name) == WANTED[TICKETS.name], f"discover did not register it: {seen}"
        assert seen.get(TRIAGE.name) in WANTED[TRIAGE.name], f"triage did not decide on it: {seen}"
        assert {f"cityops-discover-{run}", f"cityops-triage-{run}"} <= await _groups(kafka_bootstrap)
        assert supervisor.pids() == {name: pid}  # one OS process did both steps

        code = supervisor.stop(name)
    assert code == 0, supervisor.log_tail(name, 40)
    log = supervisor.log_path(name).read_text(errors="replace")
    assert log.count('"service_stopping"') == 2
    # each service's lines carry its own name, though both share one logging configuration
    assert '"service": "discover"' in log and '"service": "triage"' in log
