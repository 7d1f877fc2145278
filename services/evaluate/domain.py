"""Callback verdicts and rates. Pure: no I/O."""

from __future__ import annotations

from contracts import events as ev


def after_callback(c: ev.CallbackRecorded, max_rounds: int) -> str:
    """close, reopen or close-unresolved."""
    if c.resolved and c.satisfaction != ev.Satisfaction.unsatisfied:
        return "close"
    return "reopen" if c.round < max_rounds else "close-unresolved"


def rate(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else round(numerator / denominator, 4)
