"""Shared fixtures: the real Kafka broker the project starts itself, and per-test topics.

The broker is started once per test session (or taken from CITYOPS_TEST_KAFKA_BOOTSTRAP when a
developer already runs one) and always stopped at the end, failures included.

The session's broker authenticates every client and authorizes every request (tools/kafka/security.py).
Test code in this process is the admin: the fixture puts the admin's credentials in the hub-wide
CITYOPS_KAFKA_USERNAME / CITYOPS_KAFKA_PASSWORD, which every client reads through
services.common.kafka.kafka_access. Processes a test starts get their own principal (`kafka_node`).
With CITYOPS_TEST_KAFKA_BOOTSTRAP the credentials are whatever the environment already says.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

# Code under test runs as the demo does (built-in secrets accepted); the services started as processes
# inherit it. A test of production mode says so explicitly.
os.environ.setdefault("CITYOPS_MODE", "demo")

TEST_KAFKA_PORT = int(os.environ.get("CITYOPS_TEST_KAFKA_PORT", "19092"))


@pytest.fixture(scope="session")
def kafka_node() -> Iterator[Any]:
    """The session's broker (a tools.kafka.LocalKafka), or None when the tests reuse an external one."""
    if os.environ.get("CITYOPS_TEST_KAFKA_BOOTSTRAP"):
        yield None
        return
    from tools.kafka import LocalKafka
    from tools.kafka.acls import ADMIN

    node = LocalKafka(name="pytest", port=TEST_KAFKA_PORT, fresh=True)
    node.start()
    admin = {k: v for k, v in node.client_env(ADMIN).items() if k != "CITYOPS_KAFKA_BOOTSTRAP"}
    saved = {k: os.environ.get(k) for k in admin}
    os.environ.update(admin)
    try:
        yield node
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        node.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_node: Any) -> str:
    return os.environ["CITYOPS_TEST_KAFKA_BOOTSTRAP"] if kafka_node is None else str(kafka_node.bootstrap)


@pytest.fixture
def unique() -> str:
    """A suffix that keeps one test's topics and groups apart from every other test's."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(autouse=True, scope="session")
def _logs_stay_capturable() -> Iterator[None]:
    """Services configure structlog to cache each logger on first use (cheap in production); in one test
    process that would freeze the first test's configuration into every module-level logger, and later
    tests' `structlog.testing.capture_logs()` would see nothing, depending on test order."""
    import structlog

    original = structlog.configure

    def configure(*args: Any, **kwargs: Any) -> None:
        original(*args, **{**kwargs, "cache_logger_on_first_use": False})

    structlog.configure = configure  # type: ignore[assignment]
    try:
        yield
    finally:
        structlog.configure = original
