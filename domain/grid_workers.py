"""Grid workers are people (定岗网格): the roster of who covers which grid, and the rules of handling a matter
at the lowest level - resolving it on the spot, or escalating it up the area chain with a reason. Pure: the
roster file is read by `load_roster`, everything else works on values.

* **Roster**: a versioned, human-editable YAML file (``roster.v1.yaml`` in domain/catalogue for the small city,
  format in docs/grid-workers.md). Each worker has an id (what events carry), a name (the file and the console
  only: no personal data in events; phone numbers are not kept) and the grid(s) they are posted to. It is
  checked against the catalogue: every grid must be a grid area of it, worker ids are unique, and every grid of
  the catalogue should be covered by someone (`uncovered_grids`, reported by `cityops units roster --check`).
* **On the spot** (就地解决): a grid worker may close a small matter where it is - a ticket the grid leads
  because the catalogue hands its category to the grid (``lead_by_area: grid``), that needs no consultation.
  The co-units' tasks are withdrawn (they were there to help the grid; nothing is left for them) and the
  ticket is handled at grid level. Anything else goes through ordinary handling.
* **Escalation** (上报): an area unit (grid, community, street) may send a matter up to a level above its own
  (community, street, district) with one of `ESCALATION_REASONS`; "help requested" (求助) is one. The area of
  that level in the ticket's area chain takes the task (triage routes it, skipping the areas below).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.events import EscalationReason, Level

ROSTER_V1_PATH = Path(__file__).parent / "catalogue" / "roster.v1.yaml"

ESCALATION_REASONS: dict[EscalationReason, str] = {
    EscalationReason.help_requested: "求助: the worker asks the level above for help",
    EscalationReason.beyond_powers: "超出职权: needs powers the grid or community does not have",
    EscalationReason.needs_enforcement: "需执法: needs law enforcement or an inspection",
    EscalationReason.multi_party: "涉及多方: several residents, buildings or owners disagree",
    EscalationReason.safety_risk: "安全隐患: a risk to people that must not wait",
}

# The area levels from the bottom up: escalation only goes up this ladder.
AREA_LADDER: tuple[Level, ...] = (Level.grid, Level.community, Level.street, Level.district)
ESCALATION_TARGETS: tuple[Level, ...] = (Level.community, Level.street, Level.district)
LOWEST_LEVELS: frozenset[Level] = frozenset({Level.grid, Level.community})


class RosterError(ValueError):
    """The roster file is not valid; the message names the worker and field."""


class GridWorker(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=100,
                    description="Worker id, kebab-case ascii: what events (reported_by) carry.")
    name: str = Field(min_length=1, max_length=50, description="The worker's name, shown on the console only.")
    grids: tuple[str, ...] = Field(min_length=1, description="Grid area ids the worker is posted to.")


class Roster(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(min_length=1, description="Roster version; bump on every change.")
    catalogue: str | None = Field(default=None, description="Catalogue version the roster was written for.")
    workers: tuple[GridWorker, ...] = Field(description="Every grid worker.")

    def worker(self, worker_id: str) -> GridWorker | None:
        return next((w for w in self.workers if w.id == worker_id), None)

    def workers_of_grid(self, grid: str) -> tuple[GridWorker, ...]:
        return tuple(w for w in self.workers if grid in w.grids)


def parse_roster(data: Any, grid_ids: Iterable[str]) -> Roster:
    """Validate roster data against the catalogue's grid ids: shape, unique worker ids, known grids."""
    if not isinstance(data, Mapping):
        raise RosterError("roster: the file must hold a mapping with version and workers")
    try:
        roster = Roster.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RosterError(f"roster: {where}: {first['msg']}") from None
    known = set(grid_ids)
    seen: set[str] = set()
    for worker in roster.workers:
        if worker.id in seen:
            raise RosterError(f"roster: workers.id: duplicate worker id {worker.id!r}")
        seen.add(worker.id)
        unknown = [g for g in worker.grids if g not in known]
        if unknown:
            raise RosterError(f"roster: worker {worker.id}: grids: unknown grid {unknown[0]!r} (not a grid of the catalogue)")
    return roster


def read_roster_data(path: Path | None = None) -> Any:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path or ROSTER_V1_PATH, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=loader)  # noqa: S506 - a safe loader


def load_roster(grid_ids: Iterable[str], path: Path | None = None) -> Roster:
    """Read and validate a roster file (the packaged small-city roster by default)."""
    return parse_roster(read_roster_data(path), grid_ids)


def uncovered_grids(roster: Roster, grid_ids: Iterable[str]) -> list[str]:
    """Grids nobody is posted to (the check reports them: a grid without a worker has nobody on patrol)."""
    covered = {g for w in roster.workers for g in w.grids}
    return [g for g in grid_ids if g not in covered]


def reporter_refusal(roster: Roster, worker_id: str, grid: str | None) -> str | None:
    """Why a patrol report may not name this reporter (None when it may): an unknown worker, or a grid the
    worker is not posted to."""
    worker = roster.worker(worker_id)
    if worker is None:
        return f"reported_by: {worker_id!r} is not a grid worker of roster {roster.version}"
    if grid is not None and grid not in worker.grids:
        return f"reported_by: worker {worker_id} is not posted to grid {grid}"
    return None


# ---------------------------------------------------------------------------- handling at the lowest level

def on_the_spot_refusal(*, lead_level: str, role: str, needs_consultation: bool, proactive: bool) -> str | None:
    """Why this task may not be resolved on the spot (None when it may). A grid leads a ticket only when the
    catalogue hands its category to the grid (``lead_by_area: grid``) or for a proactive visit, so "the lead is
    a grid" is the catalogue's word that this is a small matter; a proactive visit is not (the department
    assisting it does the work), nor is a matter whose parties must agree first."""
    if role != "lead":
        return "only the lead unit resolves a matter on the spot"
    if lead_level != Level.grid:
        return "only a grid worker resolves a matter on the spot: this task is not led by a grid"
    if proactive:
        return "a proactive visit is not a small matter to close on the spot: the assisting department acts on it"
    if needs_consultation:
        return "this matter needs the parties to agree first"
    return None


def escalation_refusal(unit_level: str, to_level: str) -> str | None:
    """Why a unit of `unit_level` may not escalate to `to_level` (None when it may)."""
    if unit_level not in AREA_LADDER[:-1]:
        return f"only a grid, community or street unit escalates; this unit is at {unit_level} level"
    if to_level not in ESCALATION_TARGETS:
        return f"escalate_to: must be one of {', '.join(ESCALATION_TARGETS)}"
    if AREA_LADDER.index(Level(to_level)) <= AREA_LADDER.index(Level(unit_level)):
        return f"escalate_to: {to_level} is not above this unit's level ({unit_level})"
    return None


def areas_below(chain_levels: Iterable[tuple[str, str]], to_level: str) -> tuple[str, ...]:
    """The area (unit) ids of a ticket's area chain, given as (area id, level), that are below `to_level`:
    the ones an escalation skips so the area of `to_level` takes the task."""
    top = AREA_LADDER.index(Level(to_level))
    return tuple(area for area, level in chain_levels if AREA_LADDER.index(Level(level)) < top)


def solved_at_lowest_level(level: str | None, escalated: bool) -> bool:
    """A handled ticket counts as solved at the lowest level when a grid or community handled it and nobody
    escalated it (小事不出楼栋，大事不出小区)."""
    return level is not None and level in LOWEST_LEVELS and not escalated


# ---------------------------------------------------------------------------- which roster a city uses

def generated_roster(grid_ids: Iterable[str], version: str) -> Roster:
    """One worker per grid, named after it (gw-<grid id without "grid-">-1): the roster of a generated city
    whose real one has not been written yet (the large city's 15,600 grids). Deterministic: same grids, same
    roster."""
    workers = tuple(GridWorker(id=f"gw-{g.removeprefix('grid-')}-1", name=f"网格员 {g}", grids=(g,)) for g in grid_ids)
    return Roster(version=f"generated-{version}", catalogue=version, workers=workers)


def roster_for(grid_ids: Iterable[str], catalogue_version: str, path: Path | None = None) -> Roster:
    """The roster of the city whose catalogue has these grids: the file (the packaged small-city roster by
    default) when it was written for this catalogue version, else one generated worker per grid."""
    grids = list(grid_ids)
    data = read_roster_data(path)
    if path is None and isinstance(data, Mapping) and data.get("catalogue") != catalogue_version:
        return generated_roster(grids, catalogue_version)
    return parse_roster(data, grids)


def roster_yaml(roster: Roster) -> str:
    """The roster in the file's format, one worker a line (what `cityops unit roster --write` saves)."""
    head = [f"version: {roster.version!r}"] + ([f"catalogue: {roster.catalogue!r}"] if roster.catalogue else []) + ["workers:"]
    lines = [f"  - {{id: {w.id}, name: {yaml.safe_dump(w.name, allow_unicode=True).splitlines()[0]}, "
             f"grids: [{', '.join(w.grids)}]}}" for w in roster.workers]
    return "\n".join(head + lines) + "\n"
