"""Who may speak on a task or a consultation: the rule every reader of the units' reports applies. Pure.

A task belongs to the one unit it was assigned to (`TaskAssigned.unit`; a task id names its ticket, unit and
dispatch, and a return or a reroute gives the next unit a task of its own). Only that unit may sign for it,
report progress on it, ask for more time, return it or complete it; only the parties a consultation convened
may give an opinion on it. Anything that can write to cityops.unit-reports.v1 could claim to be any unit, so
a report from another unit is refused: it changes nothing.

Each reader applies the rule with what it knows when it reads the report:

- the task's assignment is known (the usual case): the report is refused at once (`report_refusal`), the
  handler raises `Rejected` and the pipeline dead-letters it with the reason (act, sla, evaluate; consult for
  opinions, `opinion_refusal`);
- the report is read ahead of its assignment (topics are ordered only one by one): act parks it until the
  task is known. sla, evaluate and the projections do not park (the careful pass parking forces is what made
  a backlog costly), so they keep the report and leave it out as soon as the assignment shows it was another
  unit's (`without_refused_reports`): their clocks, rates and read models end up as if it had never been
  sent, whatever order the topics were read in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from contracts import events as ev
from contracts.envelope import Event

T = TypeVar("T")

# The unit reports about one task, each naming the task and the unit that sends it.
REPORT_TYPES = (ev.TaskSignedFor, ev.ProgressReported, ev.ExtensionRequested, ev.TaskReturned, ev.TaskCompleted)

# (task id, unit): who is assigned a task, or who claims to report on it.
Claim = tuple[str, str]


def may_report(assigned_to: str, reported_by: str) -> bool:
    """The rule itself: only the unit a task is assigned to reports on it."""
    return reported_by == assigned_to


def report_refusal(report: str, task_id: str, assigned_to: str, reported_by: str) -> str | None:
    """Why a unit's report (`report`: its kind, e.g. TaskCompleted) on a task is refused, or None. The reason
    names the task and both units, never anything the report says."""
    if may_report(assigned_to, reported_by):
        return None
    return f"{report} from unit {reported_by} for task {task_id}, which is assigned to unit {assigned_to}"


def opinion_refusal(consultation_id: str, parties: Sequence[str], unit: str) -> str | None:
    """Why an opinion is refused, or None: only the parties convened may give one (a refusal from anyone else
    would send the plan to a supervisor, an acceptance would count towards an agreement it has no part in)."""
    if unit in parties:
        return None
    return f"OpinionGiven from unit {unit}, which is not a party of consultation {consultation_id} ({', '.join(parties)})"


def report_claim(data: Event) -> Claim | None:
    """(task id, unit) of a unit report; None for any other event."""
    if isinstance(data, REPORT_TYPES):
        return data.task_id, data.unit
    return None


def assignment_claim(data: Event) -> Claim | None:
    """(task id, unit) of an assignment; None for any other event."""
    return (data.task_id, data.unit) if isinstance(data, ev.TaskAssigned) else None


def without_refused_reports(items: Iterable[T], *, assignment: Callable[[T], Claim | None],
                            report: Callable[[T], Claim | None]) -> list[T]:
    """`items` (one ticket's events, or what a service keeps of them) without the reports that an assignment
    among them refuses. A report on a task whose assignment is not among them is kept: it cannot be judged
    yet. Depends on the set of items only, not on their order or their times (a forged report may claim any
    time, before its assignment's too)."""
    kept = list(items)
    assigned = dict(claim for claim in map(assignment, kept) if claim is not None)
    if not assigned:
        return kept
    return [item for item in kept if not _refused(report(item), assigned)]


def _refused(claim: Claim | None, assigned: dict[str, str]) -> bool:
    if claim is None:
        return False
    task_id, unit = claim
    return task_id in assigned and not may_report(assigned[task_id], unit)
