"""Rankings of units, grids and districts from their summed metric counters."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from domain import rates as rate_rules

from .models import METRIC_COUNTERS

# ---------------------------------------------------------------------------------------------- rankings

RATES: tuple[tuple[str, str, str, bool], ...] = (
    # (rate, numerator, denominator, higher is better); the first three as domain.rates defines them
    *((name, num, den, True) for name, num, den in rate_rules.THREE_RATES),
    ("on_time_rate", "on_time", "completed", True),
    ("return_rate", "returned", "tasks", False),
    ("rehandling_rate", "rehandled", "handled", False),
)


@dataclass(frozen=True)
class Ranked:
    scope: str
    key: str
    n: int
    counts: dict[str, int]
    rates: dict[str, float | None]
    score: float | None
    rank: int | None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "key": self.key, "n": self.n, "rank": self.rank, "score": self.score,
                **self.rates, "counts": self.counts, "note": self.note}


def rates_of(counts: dict[str, int]) -> dict[str, float | None]:
    return {name: rate_rules.rate(counts.get(num, 0), counts.get(den, 0)) for name, num, den, _ in RATES}


def score_of(rates: dict[str, float | None]) -> float | None:
    """The mean of the rates that have data, the 'lower is better' ones inverted.

    Never satisfaction alone: a unit that satisfies callers but returns half its tasks ranks low.
    """
    parts = [(v if higher else 1 - v) for (name, _, _, higher) in RATES if (v := rates[name]) is not None]
    return round(sum(parts) / len(parts), 4) if parts else None


def zero_counts() -> dict[str, int]:
    return dict.fromkeys(METRIC_COUNTERS, 0)


def add_counts(into: dict[str, int], counts: dict[str, int]) -> None:
    for name, value in counts.items():
        into[name] += value


def rank(rows: Iterable[tuple[str, str, dict[str, int]]], min_n: int) -> list[Ranked]:
    """Rank each scope's keys by score; keys with fewer than `min_n` tasks are listed, with n, unranked."""
    by_scope: dict[str, list[Ranked]] = {}
    for scope, key, counts in rows:
        counts = {name: int(counts.get(name) or 0) for name in METRIC_COUNTERS}
        rates = rates_of(counts)
        by_scope.setdefault(scope, []).append(Ranked(scope, key, counts["tasks"], counts, rates, score_of(rates), None))
    out: list[Ranked] = []
    for scope in sorted(by_scope):
        out += _rank_scope(by_scope[scope], min_n)
    return out


def _rank_scope(rows: list[Ranked], min_n: int) -> list[Ranked]:
    eligible = sorted((r for r in rows if r.n >= min_n and r.score is not None), key=lambda r: (-(r.score or 0.0), r.key))  # score is set: filtered above
    ranked: list[Ranked] = []
    previous: tuple[float | None, int] = (None, 0)
    for position, row in enumerate(eligible, start=1):
        place = previous[1] if row.score == previous[0] else position
        ranked.append(Ranked(**{**row.__dict__, "rank": place}))
        previous = (row.score, place)
    eligible_keys = {r.key for r in eligible}
    rest = sorted((r for r in rows if r.key not in eligible_keys), key=lambda r: (-r.n, r.key))
    ranked += [Ranked(**{**r.__dict__, "note": f"not ranked: n={r.n} < {min_n}" if r.n < min_n else "not ranked: no data"})
               for r in rest]
    return ranked


def aggregate(contributions: Iterable[tuple[str, str, dict[str, int]]]) -> list[tuple[str, str, dict[str, int]]]:
    """Sum per-ticket contributions per (scope, key)."""
    totals: dict[tuple[str, str], dict[str, int]] = {}
    for scope, key, counts in contributions:
        add_counts(totals.setdefault((scope, key), zero_counts()), counts)
    return [(scope, key, counts) for (scope, key), counts in sorted(totals.items())]
