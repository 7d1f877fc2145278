"""Consultation rules. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from contracts import events as ev


def parties_for(proposed: ev.Routing, excluded: tuple[str, ...]) -> tuple[str, ...]:
    """Everyone the plan names, plus the units that returned the ticket: they must hear the plan too."""
    seen: dict[str, None] = {}
    for unit in (proposed.lead, *proposed.co_units, *excluded):
        seen.setdefault(unit, None)
    return tuple(seen)


@dataclass(frozen=True)
class Verdict:
    outcome: str  # "agreed", "disputed", "waiting"
    reason: str = ""


def verdict(parties: tuple[str, ...], opinions: dict[str, tuple[bool, str | None]]) -> Verdict:
    """Agreed when every party accepted; disputed as soon as one refuses (a supervisor decides);
    otherwise still waiting."""
    refusals = [u for u, (agrees, _) in opinions.items() if not agrees]
    if refusals:
        return Verdict("disputed", f"{', '.join(sorted(refusals))} did not accept the plan")
    if all(p in opinions for p in parties):
        return Verdict("agreed")
    return Verdict("waiting")

