"""The projections' pipeline handler: project every ticket event; it publishes nothing.

The batch hooks collect a batch's ticket events and add them to the timelines with one insert at
its end (`store.apply_facts`), instead of one insert per event; the pipeline calls them around each
event instead when it applies a batch event by event (with a savepoint each)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from contracts.envelope import Envelope
from services.common.pipeline import Emit, HandlerContext

from .domain import Fact, is_projected
from .store import apply, apply_facts

_FACTS = "projections.facts"  # the batch's facts not written yet, in ctx.batch


def handle(ctx: HandlerContext, envelope: Envelope[Any]) -> Iterable[Emit]:
    # The pipeline has already recorded the event id in this transaction; the timeline's own key
    # makes a second copy a no-op as well, so a store rebuilt without processed_events stays safe.
    facts = ctx.batch.get(_FACTS)
    if facts is None:  # called without the batch hooks: write at once
        apply(ctx.session, envelope)
    elif is_projected(envelope.type):
        facts.append(Fact.from_envelope(envelope))
    return ()


def start_batch(ctx: HandlerContext, envelopes: list[Envelope[Any]]) -> None:
    ctx.batch[_FACTS] = []


def finish_batch(ctx: HandlerContext) -> None:
    apply_facts(ctx.session, ctx.batch.pop(_FACTS, []))


handle.start_batch = start_batch  # type: ignore[attr-defined]
handle.finish_batch = finish_batch  # type: ignore[attr-defined]
