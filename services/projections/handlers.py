"""The projections' pipeline handler: project every ticket event; it publishes nothing.

The batch hooks collect a batch's ticket events and add them to the timelines with one insert at
its end (`store.apply_facts`), instead of one insert per event; the pipeline calls them around each
event instead when it applies a batch event by event (with a savepoint each)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from contracts.envelope import Envelope
from services.common.handler import Batched, Emit, HandlerContext, HandlerSpec, NoDeps

from .domain import PROJECTED_TYPES, Fact, is_projected
from .store import apply, apply_facts

Ctx = HandlerContext[NoDeps]


def spec(topics: list[str]) -> HandlerSpec[NoDeps]:
    """What the pipeline runs: a batch's facts collected (`BATCH`) and written with one insert."""
    return HandlerSpec(topics=topics, event_types=PROJECTED_TYPES, deps=NoDeps(), batch=BATCH)


def handle(ctx: Ctx, envelope: Envelope[Any]) -> Iterable[Emit]:
    """One event on its own (tools): written at once."""
    # The pipeline has already recorded the event id in this transaction; the timeline's own key
    # makes a second copy a no-op as well, so a store rebuilt without processed_events stays safe.
    apply(ctx.session, envelope)
    return ()


def start_batch(ctx: Ctx, envelopes: list[Envelope[Any]]) -> list[Fact]:
    return []


def collect(ctx: Ctx, facts: list[Fact], envelope: Envelope[Any]) -> Iterable[Emit]:
    if is_projected(envelope.type):
        facts.append(Fact.from_envelope(envelope))
    return ()


def finish_batch(ctx: Ctx, facts: list[Fact]) -> None:
    apply_facts(ctx.session, facts)


BATCH: Batched[NoDeps, list[Fact]] = Batched(start=start_batch, apply=collect, finish=finish_batch)
