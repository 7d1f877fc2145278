"""The three rates a unit (and a grid, a district) is judged on, defined once.

* **Response rate** (响应率): of the tasks whose sign-for clock has a verdict, the share signed for (签收)
  within the sign-for limit. A clock has a verdict once the task is signed for, or once its deadline
  passed without a sign-for (a breach): a task still inside its window is not counted yet, and a task
  signed for late, or never, counts as not responded. Counted per task.
* **Resolution rate** (解决率): of the callbacks (回访), the share where the resident says the problem
  is solved. Counted per callback, for every unit of the round and for its grid and district.
* **Satisfaction rate** (满意率): of the callbacks on reasonable demands, the share satisfied or basically
  satisfied. A demand judged unreasonable is left out of both sides: the unit could not have met it.

A fourth rate is about where the work was done, not how well:

* **Solved at the lowest level** (基层解决率, "small matters stay in the building, big matters stay in the
  neighbourhood"): of the closed tickets that were handled, the share whose lead was a grid or community and
  that nobody escalated up the area chain (domain/grid_workers.py `solved_at_lowest_level`). A matter a grid
  worker resolved on the spot counts here, and in the three rates like any other handled ticket (its task's
  sign-for clock, its callback). Counted per ticket, once, when it closes.

Each service keeps counters (`RateCounts` names them) and computes the rates with `three_rates` and
`lowest_level_rate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from contracts.events import Satisfaction
from domain.grid_workers import solved_at_lowest_level

SATISFIED: frozenset[Satisfaction] = frozenset({Satisfaction.satisfied, Satisfaction.basically_satisfied})

# (rate, numerator counter, denominator counter)
RESPONSE_RATE = ("response_rate", "responded", "response_n")
RESOLUTION_RATE = ("resolution_rate", "resolved", "callbacks")
SATISFACTION_RATE = ("satisfaction_rate", "satisfied", "rated")
THREE_RATES: tuple[tuple[str, str, str], ...] = (RESPONSE_RATE, RESOLUTION_RATE, SATISFACTION_RATE)
LOWEST_LEVEL_RATE = ("lowest_level_rate", "solved_lowest", "handled_closed")


def rate(numerator: int, denominator: int) -> float | None:
    """numerator / denominator to four places; None when there is nothing to judge."""
    return None if denominator == 0 else round(numerator / denominator, 4)


def is_satisfied(satisfaction: Satisfaction | str) -> bool:
    """Satisfied or basically satisfied."""
    return Satisfaction(satisfaction) in SATISFIED


@dataclass(frozen=True)
class RateCounts:
    """The counters behind the three rates (added up over tasks and callbacks)."""

    response_n: int = 0
    """Tasks whose sign-for clock has a verdict."""
    responded: int = 0
    """Of those, signed for within the limit."""
    callbacks: int = 0
    """Callbacks recorded."""
    resolved: int = 0
    """Callbacks where the resident says it is solved."""
    rated: int = 0
    """Callbacks on reasonable demands."""
    satisfied: int = 0
    """Of those, satisfied or basically satisfied."""

    def as_dict(self) -> dict[str, int]:
        return {"response_n": self.response_n, "responded": self.responded, "callbacks": self.callbacks,
                "resolved": self.resolved, "rated": self.rated, "satisfied": self.satisfied}


def response_counts(*, signed_for: bool, sign_for_breached: bool) -> RateCounts:
    """One task's contribution to the response rate."""
    judged = signed_for or sign_for_breached
    return RateCounts(response_n=int(judged), responded=int(signed_for and not sign_for_breached))


def callback_counts(*, resolved: bool, satisfaction: Satisfaction | str, reasonable_demand: bool) -> RateCounts:
    """One callback's contribution to the resolution and satisfaction rates."""
    rated = int(reasonable_demand)
    return RateCounts(callbacks=1, resolved=int(resolved), rated=rated,
                      satisfied=rated * int(is_satisfied(satisfaction)))


def three_rates(counts: Mapping[str, int]) -> dict[str, float | None]:
    """response_rate, resolution_rate and satisfaction_rate from the counters (missing ones count 0)."""
    return {name: rate(counts.get(num, 0), counts.get(den, 0)) for name, num, den in THREE_RATES}


def lowest_level_counts(*, level: str | None, escalated: bool) -> dict[str, int]:
    """One closed, handled ticket's contribution to the solved-at-the-lowest-level rate."""
    return {"handled_closed": 1, "solved_lowest": int(solved_at_lowest_level(level, escalated))}


def lowest_level_rate(counts: Mapping[str, int]) -> float | None:
    """solved_lowest / handled_closed (missing counters count 0)."""
    name, num, den = LOWEST_LEVEL_RATE
    return rate(counts.get(num, 0), counts.get(den, 0))
