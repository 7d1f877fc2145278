"""What a service hands the pipeline: one typed `HandlerSpec`, and what its handlers receive.

A service declares everything the pipeline needs to know about its handler in one place, its spec:
the topics and event types it consumes, its dependencies (a small frozen dataclass per service,
reached as `ctx.deps`), and the optional batch-wide parts: work to do on the whole batch before its
transaction (`prepare_batch`), a per-batch working state (`Batched`: start / apply / finish), and
time-driven handlers (`Tick`).
Nothing is looked up on the handler function itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from sqlmodel import Session

from contracts.envelope import Envelope

from .settings import ServiceSettings

Clock = Callable[[], datetime]

Deps = TypeVar("Deps")
State = TypeVar("State")


@dataclass(frozen=True)
class Emit:
    """A record a handler wants published."""

    topic: str
    envelope: Envelope[Any]
    # The record's key; None: the ticket id. A unit's task topic is keyed by the unit id (contracts/topics.py).
    key: str | None = None


class NotYet(LookupError):
    """Raised by a handler when the event depends on one not seen yet (it arrives on another topic)."""


class Rejected(ValueError):
    """Raised by a handler when a domain rule refuses the event (a unit reporting on another unit's task, an
    opinion from a unit that is not a party): it changes nothing, and the pipeline dead-letters it with this
    reason, which should name what was refused and why (ids, units), never personal data."""


@dataclass(frozen=True)
class NoDeps:
    """The dependencies of a handler that needs none beyond its context."""


@dataclass
class HandlerContext(Generic[Deps]):
    """What a handler works with: the batch's session, the clock, its source, settings and dependencies."""

    session: Session
    now: Clock
    source: str
    settings: ServiceSettings
    deps: Deps


Settings = TypeVar("Settings", bound=ServiceSettings)


def settings_as(ctx: HandlerContext[Any], kind: type[Settings]) -> Settings:
    """The service's own settings: the pipeline hands a handler the settings its app was made with, typed in
    the shared context as the common ServiceSettings; checked here, once per use, rather than cast."""
    if not isinstance(ctx.settings, kind):
        raise TypeError(f"{kind.__name__} expected in the handler context, got {type(ctx.settings).__name__}")
    return ctx.settings


class Handler(Protocol[Deps]):
    def __call__(self, ctx: HandlerContext[Deps], envelope: Envelope[Any], /) -> Iterable[Emit]: ...


class TickHandler(Protocol[Deps]):
    def __call__(self, ctx: HandlerContext[Deps], /) -> Iterable[Emit]: ...


@dataclass(frozen=True)
class Tick(Generic[Deps]):
    """A time-driven handler (deadlines, timeouts) the service runs every `every_s` seconds."""

    handler: TickHandler[Deps]
    every_s: float


@dataclass(frozen=True)
class Batched(Generic[Deps, State]):
    """A handler that keeps a batch's working state in memory and writes it once at the end.

    `start(ctx, envelopes)` loads what these events touch (one query per table) and returns the state,
    `apply(ctx, state, envelope)` applies one event to it, `finish(ctx, state)` writes what changed (one
    statement per table). The pipeline's optimistic pass calls start and finish around the whole batch,
    its careful pass around each event, inside that event's savepoint, so a parked or dead-lettered event
    leaves no trace in what is written for the others.
    """

    start: Callable[[HandlerContext[Deps], list[Envelope[Any]]], State]
    apply: Callable[[HandlerContext[Deps], State, Envelope[Any]], Iterable[Emit]]
    finish: Callable[[HandlerContext[Deps], State], None]

    def one(self, ctx: HandlerContext[Deps], envelope: Envelope[Any]) -> list[Emit]:
        """The event as a batch of one (a handler called on its own: tests, tools, the careful pass)."""
        state = self.start(ctx, [envelope])
        emits = list(self.apply(ctx, state, envelope))
        self.finish(ctx, state)
        return emits


@dataclass(frozen=True)
class HandlerSpec(Generic[Deps]):
    """Everything the pipeline needs to run one service's handler (see the module's docstring).

    Exactly one of `handle` (event by event) and `batch` (a per-batch working state) is given.
    `event_types` None: every record of the topics is the handler's (a channel of plain JSON).
    """

    topics: Sequence[str]
    event_types: Iterable[str] | None
    deps: Deps
    handle: Handler[Deps] | None = None
    batch: Batched[Deps, Any] | None = None
    # Batch-wide work before the batch's transaction (e.g. classify every text at once); only an
    # optimisation: if it fails, the handler still works event by event.
    prepare_batch: Callable[[Deps, list[Envelope[Any]]], None] | None = None
    ticks: Sequence[Tick[Deps]] = ()
    # On a shared, keyed topic (the area units' tasks), only the records whose key is one of these are the
    # handler's: the others are skipped before they are decoded. Topics not named here are read whole.
    keys_by_topic: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.handle is None) == (self.batch is None):
            raise ValueError("a HandlerSpec has either `handle` or `batch`")

    def apply_one(self, ctx: HandlerContext[Deps], envelope: Envelope[Any]) -> list[Emit]:
        """One event on its own (a batch of one for a batched handler)."""
        if self.batch is not None:
            return self.batch.one(ctx, envelope)
        assert self.handle is not None
        return list(self.handle(ctx, envelope))


class Applier(Generic[Deps]):
    """Applies one event of a batch pass (`__call__`), then ends the pass (`finish`)."""

    def __call__(self, envelope: Envelope[Any]) -> Iterable[Emit]:
        raise NotImplementedError

    def finish(self) -> None:
        """Nothing to write at the end of the pass."""


class OneByOne(Applier[Deps]):
    def __init__(self, ctx: HandlerContext[Deps], spec: HandlerSpec[Deps]) -> None:
        self.ctx, self.spec = ctx, spec

    def __call__(self, envelope: Envelope[Any]) -> Iterable[Emit]:
        return self.spec.apply_one(self.ctx, envelope)


class BatchApplier(Applier[Deps]):
    """A batched spec's state for the optimistic pass: started on the whole batch, finished once."""

    def __init__(self, ctx: HandlerContext[Deps], batched: Batched[Deps, Any], envelopes: list[Envelope[Any]]) -> None:
        self.ctx, self.batched = ctx, batched
        self.state = batched.start(ctx, envelopes)

    def __call__(self, envelope: Envelope[Any]) -> Iterable[Emit]:
        return self.batched.apply(self.ctx, self.state, envelope)

    def finish(self) -> None:
        self.batched.finish(self.ctx, self.state)
