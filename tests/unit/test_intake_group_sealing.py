"""Intake's group commit on SQLite: many HTTP submissions sealed in one transaction, each caller with one key,
one bad submission failing only itself (tests/harness/group_sealing.py; the same on PostgreSQL in
tests/integration/test_intake_group_sealing_pg.py)."""

from __future__ import annotations

import pytest

from services.common.store import make_engine
from tests.harness import group_sealing as checks


@pytest.fixture
def engine(tmp_path):
    engine = checks.prepare(make_engine(f"sqlite:///{tmp_path / 'intake.db'}"))
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


def test_a_key_made_meanwhile_by_another_writer_is_the_callers_key(engine):
    checks.a_key_made_meanwhile_by_another_writer_is_the_callers_key(engine)


def test_a_resealed_retry_replaces_its_rows(engine):
    checks.a_resealed_retry_replaces_its_rows(engine)


async def test_on_sqlite_a_batch_is_sealed_on_the_event_loop(engine):
    assert await checks.the_thread_that_seals(engine) == "loop"


async def test_a_batch_waits_in_a_worker_thread_while_another_transaction_holds_the_write_lock(engine):
    assert await checks.the_thread_that_seals(engine, hold_write_lock=True) == "worker"
