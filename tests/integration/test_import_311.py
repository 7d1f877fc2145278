"""The importers load the vendored NYC and Baltimore samples (data/) onto the real broker, with original
times and stable ids; a rebuild then projects every imported ticket. Rates are printed (events/s).

Data: NYC Open Data, 311 Service Requests (erm2-nwe9); City of Baltimore, Open Baltimore 311.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import func, select

from contracts import codec
from contracts.topics import INTAKE
from services.common.kafka import kafka_access
from services.common.store import make_engine
from services.projections.logsource import KafkaLog, partitions_of
from services.projections.models import ProjTicket
from services.projections.rebuild import rebuild
from tools.importers.cli import import_csv
from tools.importers.mapping import BALTIMORE, NYC
from tools.importers.settings import ImporterSettings

pytestmark = [pytest.mark.kafka]

NYC_ROWS, BALTIMORE_ROWS = 11_225, 10_000  # data/nyc311 (a subset) and data/baltimore311 (whole)


async def read_topic(bootstrap: str, topic: str) -> list:
    partitions = [TopicPartition(topic, p) for p in (await partitions_of(bootstrap, [topic]))[topic]]
    consumer = AIOKafkaConsumer(**kafka_access(bootstrap).options, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, 0)
        out: list = []
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=20000)).values():
                out += records
        return out
    finally:
        await consumer.stop()


async def test_the_nyc_and_baltimore_samples_load_with_original_times_and_stable_ids(kafka_bootstrap, tmp_path):
    prefix = f"imp{uuid.uuid4().hex[:8]}."
    settings = ImporterSettings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix)
    assert settings.nyc_csv.is_file() and settings.baltimore_csv.is_file()
    nyc = await _in_thread(import_csv, settings.nyc_csv, NYC, settings)
    baltimore = await _in_thread(import_csv, settings.baltimore_csv, BALTIMORE, settings)
    assert (nyc.rows, nyc.published, dict(nyc.skipped)) == (NYC_ROWS, NYC_ROWS, {})
    assert (baltimore.rows, baltimore.published, dict(baltimore.skipped)) == (BALTIMORE_ROWS, BALTIMORE_ROWS, {})
    assert nyc.record_time == baltimore.record_time == "original"
    assert baltimore.first < datetime(2014, 1, 2, tzinfo=UTC) < nyc.first

    topic = prefix + INTAKE.name
    records = await read_topic(kafka_bootstrap, topic)
    assert len(records) == NYC_ROWS + BALTIMORE_ROWS
    sample = [codec.decode(r.key, r.value, r.headers) for r in records[::997]]
    assert all(r.timestamp == int(e.time.timestamp() * 1000) for r, e in zip(records[::997], sample))
    assert all(e.data.channel.value == "import" and e.data.external_id for e in sample)

    # Importing rows again publishes the same ids: consumers see redeliveries, not new tickets.
    again = await _in_thread(import_csv, settings.nyc_csv, NYC, settings, limit=2000)
    assert again.published == 2000
    records = await read_topic(kafka_bootstrap, topic)
    ids = [dict(r.headers)["ce_id"] for r in records]
    assert len(ids) == NYC_ROWS + BALTIMORE_ROWS + 2000 and len(set(ids)) == NYC_ROWS + BALTIMORE_ROWS

    # The imported history projects: one ticket per row, each "submitted" at its original time.
    engine = make_engine(f"sqlite:///{tmp_path / 'imported.db'}")
    report = await rebuild(engine, KafkaLog(kafka_bootstrap, [topic]))
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ProjTicket)).scalar_one() == NYC_ROWS + BALTIMORE_ROWS
        statuses = dict(conn.execute(select(ProjTicket.status, func.count()).group_by(ProjTicket.status)).all())
        placed = conn.execute(select(func.count()).select_from(ProjTicket).where(ProjTicket.district.is_not(None))).scalar_one()
    assert statuses == {"submitted": NYC_ROWS + BALTIMORE_ROWS}
    assert placed > 0.95 * (NYC_ROWS + BALTIMORE_ROWS)
    print("\nimport measurements:", json.dumps({"nyc": nyc.as_dict(), "baltimore": baltimore.as_dict(),
                                                "rebuild_of_imports": report.as_dict()}, default=str))


async def _in_thread(function, *args, **kwargs):
    # import_csv runs its own event loop (it is what the CLI calls); keep it off the test's loop.
    import asyncio

    return await asyncio.to_thread(function, *args, **kwargs)
