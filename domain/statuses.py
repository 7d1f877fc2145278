"""The ticket-status and task-state vocabulary, defined once for every view of a ticket.

Intake's status view (what `GET /tickets/{id}` answers), the projections' read models and act's task
table all speak these words. A view may skip states it cannot see (intake does not follow unit
reports, so it never says `signed-for`), but never invents a synonym of its own.
"""

from __future__ import annotations

from enum import StrEnum


class TicketStatus(StrEnum):
    """Where a ticket is in the five-step lifecycle, roughly in lifecycle order."""

    submitted = "submitted"
    """The hotline took it (intake record); discover has not registered it yet."""
    registered = "registered"
    """Discover registered it (caller masked) and it waits for triage."""
    merged = "merged"
    """A repeat of another open ticket: it follows its master and closes with it (a split undoes it)."""
    manual_triage = "manual-triage"
    """The classifier was not sure: an operator must choose the category."""
    classified = "classified"
    """Triage chose the category and routed it; dispatch follows."""
    consulting = "consulting"
    """The parties are convened (协商) to agree who leads before anyone acts."""
    supervisor_review = "supervisor-review"
    """The parties disagreed or did not answer in time: a supervisor must decide."""
    decided = "decided"
    """A supervisor decided who leads (a final assignment: it may not be returned)."""
    agreed = "agreed"
    """The parties agreed a plan and a deadline."""
    rerouting = "rerouting"
    """The lead returned it (退单) and triage routes it again without that unit."""
    dispatched = "dispatched"
    """The lead unit (and co-units) have their tasks; nobody signed for it yet."""
    signed_for = "signed-for"
    """The lead unit signed for (签收) its task."""
    in_progress = "in-progress"
    """The lead unit reported progress."""
    waiting_on_resident = "waiting-on-resident"
    """The lead unit waits on the resident (its clocks are paused)."""
    returned = "returned"
    """The lead unit returned its task; act has not decided the return yet."""
    completed = "completed"
    """The lead unit completed its part; co-units may still be working."""
    handled = "handled"
    """Every unit on it completed (办结): the hotline calls the resident back."""
    callback = "callback"
    """The callback (回访) is requested."""
    evaluated = "evaluated"
    """The resident's verdict is recorded; closing or re-handling follows."""
    reopened = "reopened"
    """Unresolved or unsatisfied at callback: handled again (重办) in a new round."""
    closed = "closed"
    """The loop is closed (resolved, unresolved after the last round, merged, answered or referred)."""


# Words that older versions of intake's status view used; accepted as input (`?status=`) and read back
# from a store written before the change.
LEGACY_STATUS_NAMES: dict[str, TicketStatus] = {
    "consultation": TicketStatus.consulting,
    "re-handling": TicketStatus.reopened,
}

# Only a reopen (closed) or a split (merged) leaves these.
STICKY_STATUSES: frozenset[TicketStatus] = frozenset({TicketStatus.closed, TicketStatus.merged})


def parse_status(text: str) -> TicketStatus:
    """The status a word names, a legacy synonym included; ValueError for anything else."""
    legacy = LEGACY_STATUS_NAMES.get(text)
    return legacy if legacy is not None else TicketStatus(text)


class TaskStatus(StrEnum):
    """Where one unit's task (its part of one round of a ticket) is."""

    assigned = "assigned"
    """Dispatched to the unit's topic; not signed for yet."""
    signed_for = "signed-for"
    """The unit signed for (签收) it."""
    in_progress = "in-progress"
    """The unit reported progress."""
    waiting_on_resident = "waiting-on-resident"
    """The unit waits on the resident; the task is still the unit's."""
    completed = "completed"
    """The unit finished its part (办结)."""
    returned = "returned"
    """The unit returned it as not its own (退单); a rejected return reopens it."""
    withdrawn = "withdrawn"
    """Replaced by a newer dispatch (after a return, a new plan, a reopen)."""
    closed = "closed"
    """Still open when the ticket closed."""


# A task in one of these states is still the unit's to act on: it can be returned, extended or completed.
OPEN_TASK_STATES: frozenset[TaskStatus] = frozenset({
    TaskStatus.assigned, TaskStatus.signed_for, TaskStatus.in_progress, TaskStatus.waiting_on_resident})


def status_after_progress(waiting_on_resident: bool) -> TaskStatus:
    """A progress report moves an open task to in-progress, or to waiting-on-resident when it says so."""
    return TaskStatus.waiting_on_resident if waiting_on_resident else TaskStatus.in_progress
