"""The archive table: one row per Kafka record, keyed by its position in the log.

Its columns are a contract: `services.projections.logsource.ArchiveLog` reads them (by table
reflection) to replay from the archive. Headers are JSON `[[name, base64(value)], ...]`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, LargeBinary, Text
from sqlmodel import Field, SQLModel

from contracts.envelope import utcnow
from services.common.batch_state import table_of


class ArchivedRecord(SQLModel, table=True):
    __tablename__ = "archive"
    __table_args__ = (Index("ix_archive_ticket_id", "ticket_id"), Index("ix_archive_timestamp_ms", "timestamp_ms"))

    topic: str = Field(primary_key=True)
    partition: int = Field(primary_key=True)
    offset: int = Field(primary_key=True, sa_type=BigInteger)
    key: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    value: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    headers: str = Field(sa_column=Column(Text, nullable=False), description="JSON [[name, base64 value], ...].")
    timestamp_ms: int = Field(sa_type=BigInteger, description="The record's Kafka timestamp.")
    ticket_id: str | None = Field(default=None, description="The record key (ticket id), for finding a ticket's records.")
    event_id: str | None = Field(default=None, description="ce_id header, if any.")
    event_type: str | None = Field(default=None, description="ce_type header, if any.")
    archived_at: datetime = Field(default_factory=utcnow, description="When the archiver stored it.")


ARCHIVE_TABLES = [table_of(ArchivedRecord)]
ARCHIVE_TABLE_NAMES = frozenset(t.name for t in ARCHIVE_TABLES)
