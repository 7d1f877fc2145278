"""Shared fixtures: the real Kafka broker the project starts itself, and per-test topics.

The broker is started once per test session (or taken from CITYOPS_TEST_KAFKA_BOOTSTRAP when a
developer already runs one) and always stopped at the end, failures included.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

# Code under test runs as the demo does (built-in secrets accepted); the services started as processes
# inherit it. A test of production mode says so explicitly.
os.environ.setdefault("CITYOPS_MODE", "demo")

TEST_KAFKA_PORT = int(os.environ.get("CITYOPS_TEST_KAFKA_PORT", "19092"))


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get("CITYOPS_TEST_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    from tools.kafka import LocalKafka

    node = LocalKafka(name="pytest", port=TEST_KAFKA_PORT, fresh=True)
    node.start()
    try:
        yield node.bootstrap
    finally:
        node.stop()


@pytest.fixture
def unique() -> str:
    """A suffix that keeps one test's topics and groups apart from every other test's."""
    return uuid.uuid4().hex[:10]
