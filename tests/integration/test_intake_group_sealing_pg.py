"""Intake's group commit on real PostgreSQL (tests/integration/pg.py): the same tests as on SQLite
(tests/unit/test_intake_group_sealing.py), run here with this module's `engine`, so the batch upserts and the
caller-key insert take the PostgreSQL dialect's paths."""

from __future__ import annotations

import pytest

from services.common.store import make_engine
from tests.harness import group_sealing as checks
from tests.integration.pg import postgres_server  # noqa: F401
from tests.unit.test_intake_group_sealing import (  # noqa: F401  # collected here, with the engine below
    test_a_batch_is_sealed_in_one_transaction_with_one_key_per_caller,
    test_a_key_made_meanwhile_by_another_writer_is_the_callers_key,
    test_a_resealed_retry_replaces_its_rows,
    test_an_idempotency_key_names_one_body_within_a_batch_and_across_batches,
    test_concurrent_requests_are_sealed_together,
    test_one_bad_submission_fails_only_itself,
)


@pytest.fixture
def engine(postgres_server):  # noqa: F811
    engine = checks.prepare(make_engine(postgres_server.new_database()))
    assert engine.dialect.name == "postgresql"
    yield engine
    engine.dispose()


async def test_on_postgresql_a_batch_is_sealed_in_a_worker_thread(engine):
    """Its round trips to the server must not stall the event loop (SQLite seals on the loop)."""
    assert await checks.the_thread_that_seals(engine) == "worker"
