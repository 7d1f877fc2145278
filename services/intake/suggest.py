"""The classifier's suggestions while an operator types (GET /triage/suggestions): the top categories of a text.

The model is the one triage uses (`CITYOPS_INTAKE_MODEL_PATH`, else the catalogue-trained default kept in the
state dir, `domain.classifier.cached_default_classifier`), loaded in a thread on the first request, never at
import or start: training the default takes ~20 s when triage has not cached it yet. Until it is loaded the
answer says `ready: false` rather than keeping the operator's form waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from domain.classifier import ComplaintClassifier

WAIT_FOR_LOAD_S = 2.0  # a first request waits this long for the model, then answers "not ready yet"


@dataclass
class Suggester:
    load: Callable[[], ComplaintClassifier]
    wait_s: float = WAIT_FOR_LOAD_S
    _model: ComplaintClassifier | None = None
    _loading: asyncio.Task[ComplaintClassifier] | None = field(default=None, repr=False)

    async def top(self, text: str, k: int = 3) -> list[tuple[str, float]] | None:
        """The k most probable categories of `text` with their probabilities; None while the model loads."""
        model = await self._model_or_none()
        if model is None:
            return None
        prediction = await asyncio.to_thread(model.predict, text)
        return [(prediction.category, prediction.confidence), *prediction.alternatives][:k]

    async def _model_or_none(self) -> ComplaintClassifier | None:
        if self._model is not None:
            return self._model
        if self._loading is None or (self._loading.done() and self._loading.exception() is not None):
            self._loading = asyncio.create_task(asyncio.to_thread(self.load), name="intake-suggestions-model")
        with suppress(TimeoutError):
            self._model = await asyncio.wait_for(asyncio.shield(self._loading), self.wait_s)
        return self._model


def suggestion_rows(pairs: list[tuple[str, float]], catalogue: Any) -> list[dict[str, Any]]:
    rows = []
    for code, probability in pairs:
        known = catalogue.category(code) if catalogue.has_category(code) else None
        rows.append({"category": code, "probability": probability, "name": known.name if known else None,
                     "name_en": known.name_en if known else None})
    return rows
