"""Callback verdicts. Pure: no I/O. (The rates are defined in `domain.rates`.)"""

from __future__ import annotations

from contracts import events as ev


def after_callback(c: ev.CallbackRecorded, max_rounds: int) -> str:
    """close, reopen or close-unresolved."""
    if c.resolved and c.satisfaction != ev.Satisfaction.unsatisfied:
        return "close"
    return "reopen" if c.round < max_rounds else "close-unresolved"
