"""Intake's group commit on real PostgreSQL (tests/integration/pg.py): the batch upserts and the caller-key
insert take the PostgreSQL dialect's paths (tests/harness/group_sealing.py)."""

from __future__ import annotations

import pytest

from services.common.store import make_engine
from tests.harness import group_sealing as checks
from tests.integration.pg import postgres_server  # noqa: F401


@pytest.fixture
def engine(postgres_server):  # noqa: F811
    engine = checks.prepare(make_engine(postgres_server.new_database()))
    yield engine
    engine.dispose()


def test_a_batch_is_sealed_in_one_transaction_with_one_key_per_caller(engine):
    checks.a_batch_is_sealed_in_one_transaction_with_one_key_per_caller(engine)


def test_one_bad_submission_fails_only_itself(engine):
    checks.one_bad_submission_fails_only_itself(engine)


async def test_concurrent_requests_are_sealed_together(engine):
    transactions, largest = await checks.concurrent_requests_share_commits(engine)
    assert transactions < 50 and largest > 1



def test_an_idempotency_key_names_one_body_within_a_batch_and_across_batches(engine):
    checks.an_idempotency_key_names_one_body_within_a_batch_and_across_batches(engine)
