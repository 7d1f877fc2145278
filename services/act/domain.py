"""Dispatch and handling rules. Pure: no I/O."""

from __future__ import annotations

from contracts import events as ev
from domain.statuses import OPEN_TASK_STATES, TaskStatus

__all__ = ["OPEN_TASK_STATES", "TaskStatus", "assignments", "extension_decision", "handling_complete", "task_id"]


def task_id(ticket_id: str, unit: str, dispatch_no: int) -> str:
    return f"{ticket_id}:{unit}:{dispatch_no}"


def assignments(routing: ev.Routing) -> list[tuple[str, ev.Role]]:
    """Lead first, then each co-unit: a joint action (联合行动) when there are co-units."""
    return [(routing.lead, ev.Role.lead)] + [(u, ev.Role.co) for u in routing.co_units if u != routing.lead]


def extension_decision(granted_so_far: int, max_extensions: int, final: bool) -> tuple[bool, str]:
    if granted_so_far >= max_extensions:
        return False, f"already extended {granted_so_far} time(s); the limit is {max_extensions}"
    return True, "approved within the extension allowance"


def handling_complete(states: list[tuple[ev.Role, str]]) -> bool:
    """The ticket is handled when the lead and every co-unit still on it completed."""
    active = [(role, s) for role, s in states if s not in (TaskStatus.returned, TaskStatus.withdrawn)]
    return bool(active) and any(r == ev.Role.lead for r, _ in active) and all(s == TaskStatus.completed for _, s in active)

