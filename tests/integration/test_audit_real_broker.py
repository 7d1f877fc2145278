"""The audit trail on the real broker: intake's app (in-process, its lifespan starting its Kafka client) records
accepted and refused calls on cityops.audit.v1; `cityops audit` lists them from Kafka and, once the archiver
stored the records, from the archive."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta

import typer
from aiokafka import AIOKafkaConsumer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from contracts.topics import AUDIT, COMMANDS, INTAKE, RESIDENTS, TICKETS, TRIAGE
from services.archiver.handlers import archive_records
from services.archiver.models import ARCHIVE_TABLES
from services.archiver.settings import ArchiverSettings
from services.common.kafka import ensure_topics, kafka_access
from services.common.store import create_tables, make_engine
from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from services.projections.logsource import ArchiveLog, KafkaLog
from tests.harness.auth import bearer, verifier
from tools.audit_cli import AuditQuery, audit, read_trail


async def _audit_records(bootstrap: str) -> list:
    consumer = AIOKafkaConsumer(AUDIT.name, **kafka_access(bootstrap).options, auto_offset_reset="earliest", group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=3000, max_records=10_000)
        return [r for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()


def test_calls_to_intake_land_on_the_audit_topic_and_cityops_audit_lists_them(kafka_bootstrap, unique, tmp_path, monkeypatch):
    asyncio.run(ensure_topics(kafka_bootstrap, [INTAKE, COMMANDS, RESIDENTS, TICKETS, TRIAGE, AUDIT]))
    settings = IntakeSettings(kafka_bootstrap=kafka_bootstrap, state_dir=tmp_path, consumer_group=f"intake-{unique}")
    operator, stranger = f"op-{unique}", f"aud-{unique}"
    since = datetime.now(UTC) - timedelta(seconds=5)
    with TestClient(create_app(settings, verifier=verifier())) as client:
        accepted = client.post("/tickets", json={"text": "路灯坏了好几天", "caller_phone": "13812345678"},
                               headers={**bearer("operator", operator), "X-Request-ID": f"req-{unique}"})
        forbidden = client.post("/tickets", json={"text": "路灯坏了好几天"}, headers=bearer("auditor", stranger))
        anonymous = client.post("/supervisor/decisions", json={"ticket_id": "T-1", "lead": "water"})
    assert (accepted.status_code, forbidden.status_code, anonymous.status_code) == (202, 403, 401)
    ticket_id = accepted.json()["ticket_id"]

    # cityops audit, from Kafka
    mine = asyncio.run(read_trail(KafkaLog(kafka_bootstrap, [AUDIT.name]), AuditQuery(since, subject=operator)))
    assert [(r.route, r.status_code, r.target_ids, r.request_id) for r in mine] == [("/tickets", 202, (ticket_id,), f"req-{unique}")]
    everything = asyncio.run(read_trail(KafkaLog(kafka_bootstrap, [AUDIT.name]), AuditQuery(since)))
    assert {(r.subject, r.outcome) for r in everything} >= {(operator, "accepted"), (stranger, "forbidden"), (None, "unauthenticated")}
    assert not [r for r in everything if r.subject == operator and r.occurred_at < since]

    # the archiver archives every cityops topic, the audit topic included; cityops audit reads its copy too
    assert re.match(ArchiverSettings().pattern(), AUDIT.name)
    archive = make_engine(f"sqlite:///{tmp_path / 'archiver.db'}")
    create_tables(archive, ARCHIVE_TABLES)
    archive_records(archive, asyncio.run(_audit_records(kafka_bootstrap)), lambda: datetime.now(UTC))
    from_archive = asyncio.run(read_trail(ArchiveLog(archive, [AUDIT.name]), AuditQuery(since, subject=operator)))
    assert from_archive == mine

    # the command itself, as an auditor runs it
    cli = typer.Typer()
    cli.command()(audit)
    listed = CliRunner().invoke(cli, ["--since", since.isoformat(), "--subject", operator, "--bootstrap", kafka_bootstrap, "--json"])
    assert listed.exit_code == 0, listed.output
    assert [r["target_ids"] for r in json.loads(listed.output)] == [[ticket_id]]
    table = CliRunner().invoke(cli, ["--since", since.isoformat(), "--subject", operator, "--bootstrap", kafka_bootstrap])
    assert "POST /tickets" in table.output and operator in table.output and "13812345678" not in table.output
    monkeypatch.setenv("CITYOPS_PROJECTIONS_ARCHIVE_URL", f"sqlite:///{tmp_path / 'archiver.db'}")
    archived = CliRunner().invoke(cli, ["--since", since.isoformat(), "--subject", operator, "--source", "archive", "--json"])
    assert archived.exit_code == 0 and json.loads(archived.output) == json.loads(listed.output)
