"""A whole demo hub (`tools.hub.Hub`: its own broker, every service, the bridge, the replay API and the
console) on free ports, for the browser tests that need every process: started, waited for, always stopped."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from tests.harness.browser import available
from tests.harness.ports import free_port, free_port_pair
from tools.hub import REPLAY, Hub, bridge_answers, console_answers, intake_answers, replay_answers

H = TypeVar("H", bound=Hub)


@contextmanager
def running_hub(hub_class: type[H], state: Path) -> Iterator[H]:
    """`hub_class` (a Hub whose env() a test may adjust) up and answering on free ports; stopped on exit."""
    reason = available()
    if reason:
        pytest.fail(f"browser tests cannot run here: {reason}")
    from services.common.kafka import ensure_topics
    from tools.topics_cli import hub_topics

    hub = hub_class(kafka_port=free_port_pair(), http_port=free_port(), state_dir=state, bridge_port=free_port(),
                    metrics_port=0, replay_port=free_port(), console_port=free_port())
    try:
        hub.start_broker()
        asyncio.run(ensure_topics(hub.node().client_settings(), hub_topics()))
        hub.start_services()
        base = "http://127.0.0.1"
        hub.supervisor.wait_ready("intake", intake_answers(f"{base}:{hub.http_port}"), timeout=120)
        hub.supervisor.wait_ready("bridge", bridge_answers(f"{base}:{hub.bridge_port}"), timeout=120)
        hub.supervisor.wait_ready(REPLAY, replay_answers(f"{base}:{hub.replay_port}"), timeout=120)
        hub.supervisor.wait_ready("console", console_answers(f"{base}:{hub.console_port}"), timeout=120)
        yield hub
    finally:
        hub.stop()
