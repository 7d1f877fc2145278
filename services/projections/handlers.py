"""The projections' pipeline handler: project every ticket event; it publishes nothing."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from contracts.envelope import Envelope
from services.common.pipeline import Emit, HandlerContext

from .store import apply


def handle(ctx: HandlerContext, envelope: Envelope[Any]) -> Iterable[Emit]:
    # The pipeline has already recorded the event id in this transaction; the timeline's own key
    # makes a second copy a no-op as well, so a store rebuilt without processed_events stays safe.
    apply(ctx.session, envelope)
    return ()
