"""A line logged while an event is handled carries the event's ids, and only then."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import structlog

from services.common import logs
from services.common.logs import add_handled_event, bound_event


def _envelope(n: int) -> SimpleNamespace:
    return SimpleNamespace(id=f"e{n}", type=f"type{n}", ticket_id=f"T{n}", correlation_id=f"c{n}")


def _ids(n: int) -> dict[str, str]:
    return {"event_id": f"e{n}", "event_type": f"type{n}", "ticket_id": f"T{n}", "correlation_id": f"c{n}"}


@pytest.fixture
def written() -> Iterator[io.StringIO]:
    """The service's logging configuration, writing to a buffer; the earlier configuration is put back after."""
    before = structlog.get_config()
    out = io.StringIO()
    logs.configure_logging("INFO", json=True, service="svc")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=out), cache_logger_on_first_use=False)
    yield out
    structlog.configure(**before)
    structlog.contextvars.clear_contextvars()


def _lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_inside_carries_the_event_ids_and_a_line_outside_none(written: io.StringIO) -> None:
    log = logs.get_logger("test")
    with bound_event(_envelope(1)):
        log.info("inside")
    log.info("outside")
    inside, outside = _lines(written)
    assert {k: inside[k] for k in _ids(1)} == _ids(1)
    assert inside["service"] == "svc"  # the process's own context still merges
    assert not set(_ids(1)) & set(outside)


def test_a_value_the_line_names_itself_wins(written: io.StringIO) -> None:
    with bound_event(_envelope(1)):
        logs.get_logger("test").warning("moved", ticket_id="T-other")
    (line,) = _lines(written)
    assert line["ticket_id"] == "T-other"
    assert line["event_id"] == "e1"


def test_nested_events_restore_the_outer_one_even_after_an_error() -> None:
    with bound_event(_envelope(1)):
        with pytest.raises(RuntimeError), bound_event(_envelope(2)):
            assert add_handled_event(None, "info", {}) == _ids(2)
            raise RuntimeError("handler failed")
        assert add_handled_event(None, "info", {}) == _ids(1)
    assert add_handled_event(None, "info", {}) == {}


async def test_concurrent_tasks_each_see_their_own_event() -> None:
    seen: dict[int, object] = {}

    async def handle(n: int) -> None:
        with bound_event(_envelope(n)):
            await asyncio.sleep(0.01 * (3 - n))  # interleave: the first to enter is the last to log
            seen[n] = add_handled_event(None, "info", {})

    await asyncio.gather(*(handle(n) for n in (1, 2)))
    assert seen == {1: _ids(1), 2: _ids(2)}
