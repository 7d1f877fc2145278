"""structlog, configured once per process: JSON lines when not on a terminal, key/value events.

Handlers bind the event id, type, ticket id and correlation id (see `bound_event`) so every
line logged while an event is handled can be followed back to it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

_configured = False


def configure_logging(level: str = "INFO", json: bool | None = None, **static: Any) -> None:
    global _configured
    if json is None:
        json = not sys.stderr.isatty()
    renderer = structlog.processors.JSONRenderer(ensure_ascii=False) if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries (aiokafka, faststream, uvicorn) log through the standard library: keep their
    # warnings, drop their per-message chatter.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    structlog.contextvars.clear_contextvars()
    if static:
        structlog.contextvars.bind_contextvars(**static)
    _configured = True


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)


@contextmanager
def bound_event(envelope: Any) -> Iterator[None]:
    """Bind an event's ids to every log line written while it is handled."""
    with structlog.contextvars.bound_contextvars(
        event_id=envelope.id, event_type=envelope.type, ticket_id=envelope.ticket_id,
        correlation_id=envelope.correlation_id,
    ):
        yield
