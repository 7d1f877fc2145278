"""`cityops audit`: the audit trail for auditors — who changed what through the hub's HTTP doors, and when.

    cityops audit --since 2026-05-06T00:00 --subject op-7
    cityops audit --since 2026-05-06 --until 2026-05-07 --source archive --json

Reads `cityops.audit.v1` from Kafka (the log, kept forever) or the archiver's copy (`--source archive`),
the same way supervisor replay reads the workflow topics (services/projections/logsource.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import typer

from contracts import events as ev
from contracts.topics import AUDIT


@dataclass(frozen=True)
class AuditQuery:
    since: datetime
    until: datetime | None = None
    subject: str | None = None

    def wants(self, record: ev.AuditRecorded) -> bool:
        return (record.occurred_at >= self.since and (self.until is None or record.occurred_at < self.until)
                and (self.subject is None or record.subject == self.subject))


async def read_trail(source: Any, query: AuditQuery) -> list[ev.AuditRecorded]:
    """The audit records of a log source (KafkaLog or ArchiveLog over the audit topic) the query selects,
    oldest first."""
    from services.projections.logsource import decode_wanted

    wanted = frozenset({ev.AuditRecorded.event_type.encode()})
    found: list[ev.AuditRecorded] = []
    try:
        start, end = await source.bounds()
        async for records, _ in source.batches(start, end, 5000):
            decoded, _ = decode_wanted(records, wanted)
            found += [e.data for _, e in decoded if isinstance(e.data, ev.AuditRecorded) and query.wants(e.data)]
    finally:
        await source.close()
    return sorted(found, key=lambda r: r.occurred_at)


def trail_table(records: Iterable[ev.AuditRecorded]) -> str:
    header = ("when", "subject", "roles", "call", "status", "outcome", "targets", "from", "request")
    rows = [header] + [(r.occurred_at.isoformat(timespec="seconds"), r.subject or "-", ",".join(r.roles) or "-",
                        f"{r.method} {r.route}", str(r.status_code), r.outcome, ",".join(r.target_ids) or "-",
                        r.client_ip or "-", r.request_id) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _source(kind: str, bootstrap: str | None) -> Any:
    from services.common.store import make_engine
    from services.projections.logsource import ArchiveLog, KafkaLog
    from services.projections.settings import ProjectionsSettings

    settings = ProjectionsSettings()
    if kind == "archive":
        return ArchiveLog(make_engine(settings.archive_store_url()), [AUDIT.name])
    return KafkaLog(bootstrap or settings.kafka_bootstrap, [AUDIT.name])


def audit(since: str = typer.Option(..., "--since", help="From this time (ISO 8601; without an offset: CITYOPS_TIMEZONE)."),
          until: str | None = typer.Option(None, "--until", help="Up to this time (exclusive)."),
          subject: str | None = typer.Option(None, "--subject", help="Only this caller (a token's subject)."),
          source: str = typer.Option("kafka", "--source", help="kafka (the log) or archive (the archiver's copy)."),
          bootstrap: str | None = typer.Option(None, "--bootstrap", help="Kafka bootstrap servers (default: CITYOPS_KAFKA_BOOTSTRAP)."),
          as_json: bool = typer.Option(False, "--json", help="Print a JSON array instead of a table.")) -> None:
    """List the audit trail: every state-changing HTTP call (refused ones included), who made it, from where."""
    from services.projections.queries import parse_time
    from services.projections.settings import ProjectionsSettings

    if source not in ("kafka", "archive"):
        raise typer.BadParameter("kafka or archive", param_hint="--source")
    zone = ProjectionsSettings().timezone
    try:
        query = AuditQuery(parse_time(since, zone), parse_time(until, zone) if until else None, subject)
    except ValueError:
        raise typer.BadParameter("an ISO 8601 time, e.g. 2026-05-06T08:00", param_hint="--since/--until") from None
    records = asyncio.run(read_trail(_source(source, bootstrap), query))
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in records], ensure_ascii=False, indent=1))
    else:
        typer.echo(trail_table(records) if records else "no audit records in that range")

