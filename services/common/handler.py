"""What a service hands the pipeline: one typed `HandlerSpec`, and what its handlers receive.

A service declares everything the pipeline needs to know about its handler in one place, its spec:
the topics and event types it consumes, its dependencies (a small frozen dataclass per service,
reached as `ctx.deps`), and the optional batch-wide parts: rows to prefetch with one query per
table (`Prefetch`), work to do on the whole batch before its transaction (`prepare_batch`), a
per-batch working state (`Batched`: start / apply / finish), and time-driven handlers (`Tick`).
Nothing is looked up on the handler function itself.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select
from sqlalchemy.orm import Mapper
from sqlmodel import Session

from contracts.envelope import Envelope

from .settings import ServiceSettings

Clock = Callable[[], datetime]

Deps = TypeVar("Deps")
State = TypeVar("State")
Row = TypeVar("Row")


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
    # The batch's rows by key (see `BatchRows`), given by the pipeline; a context made by hand (tests,
    # tools) reads through the session.
    batch_rows: BatchRows | None = None

    @property
    def rows(self) -> BatchRows:
        if self.batch_rows is None:
            self.batch_rows = BatchRows(self.session)
        return self.batch_rows


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
class Prefetch(Generic[Row]):
    """Rows of `model` (single-column primary key) the handler will look up by `key_of(event)`, loaded for the
    whole batch with one query and read through `ctx.rows.get(model, key)`."""

    model: type[Row]
    key_of: Callable[[Envelope[Any]], Hashable | None]


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
    prefetch: Sequence[Prefetch[Any]] = ()
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


class BatchRows:
    """Rows a handler looks up by primary key, answered from a plain dict during a batch's optimistic pass.

    A handler reads `ctx.rows.get(Model, key)` and adds a new row with `ctx.rows.add(row)`. The pipeline
    first loads the batch's keys of every `Prefetch` with one query per table (one SELECT per event costs
    ten times more than its share of one SELECT ... IN) and remembers the keys that have no row. A lookup
    of a row neither loaded nor added goes to `session.get` without a flush first: the rows of a
    prefetched model are added through `add` (so they are in the dict), and a row that is neither loaded
    nor added has no pending change, so the SELECT sees what a flush would have shown. Changes are
    written by the flush at commit, grouped by table.

    Declare a prefetch only for a table the handler writes through `ctx.rows.add` and the session, not
    with insert statements (a row such a statement adds in the batch would be missed).

    `cached=False` (the careful pass, contexts made by hand): every call goes to the session as it is;
    savepoints roll back what one event added, which a dict would not forget.
    """

    def __init__(self, session: Session, *, cached: bool = False) -> None:
        self.session = session
        self.cached = cached
        self._rows: dict[tuple[type, Hashable], Any] = {}  # (model, key) -> row, or None: no such row
        self._models: set[type] = set()  # models whose adds go through `add`

    def prefetch(self, declarations: Sequence[Prefetch[Any]], envelopes: Sequence[Envelope[Any]]) -> None:
        for declaration in declarations:
            keys = {k for k in map(declaration.key_of, envelopes) if k is not None}
            if keys:
                self._load(declaration.model, keys)

    def _load(self, model: type, keys: set[Hashable]) -> None:
        pk, attr = _primary_key(model)
        self._models.add(model)
        found: dict[Hashable, Any] = {}
        ordered = list(keys)
        for start in range(0, len(ordered), 500):
            for row in self.session.execute(select(model).where(pk.in_(ordered[start:start + 500]))).scalars():
                found[getattr(row, attr)] = row
        # Kept here for the transaction too: the identity map holds unchanged objects weakly, and a row
        # collected at once would be selected again by the next lookup.
        for key in keys:
            self._rows[(model, key)] = found.get(key)

    def get(self, model: type[Row], key: Hashable) -> Row | None:
        if not self.cached:
            return self.session.get(model, key)
        try:
            return self._rows[(model, key)]
        except KeyError:
            pass
        if model in self._models:
            with self.session.no_autoflush:
                row = self.session.get(model, key)
        else:
            row = self.session.get(model, key)
        if row is not None:
            self._rows[(model, key)] = row
        return row

    def add(self, row: Any) -> None:
        self.session.add(row)
        if self.cached:
            model = type(row)
            self._rows[(model, getattr(row, _primary_key(model)[1]))] = row


def _primary_key(model: type) -> tuple[Any, str]:
    """The single-column primary key of a mapped class, and the attribute that holds it (looked up once)."""
    found = _PRIMARY_KEYS.get(model)
    if found is None:
        mapper: Mapper[Any] = sa_inspect(model)
        (pk,) = mapper.primary_key
        found = _PRIMARY_KEYS[model] = (pk, mapper.get_property_by_column(pk).key)
    return found


_PRIMARY_KEYS: dict[type, tuple[Any, str]] = {}
