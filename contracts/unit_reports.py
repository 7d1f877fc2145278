"""The reports a unit sends on `cityops.unit-reports.v1`, built from the task or consultation they answer.

Pure builders shared by every way a unit reports: the unit SDK (services/units/sdk.py re-exports them),
the simulated units and the unit HTTP bridge (services/bridge/). One set of builders keeps their ids alike:
a report's id is derived from its cause, its unit and its type, so the same report sent twice is one event
downstream. `key` (an HTTP Idempotency-Key, or anything that names one distinct report) is added to that
derivation when a unit means several reports of one type on one task, such as progress notes.
"""

from __future__ import annotations

from typing import Any

from . import events as ev
from .envelope import Envelope, Event


def report(cause: Envelope[Any], data: Event, unit: str, key: str | None = None) -> Envelope[Any]:
    """A unit's report on a task or consultation, with an id derived from its cause, unit (and key)."""
    extra = f"{unit}:{data.event_type}" + (f":{key}" if key else "")
    return cause.caused(data, source=f"/cityops/unit/{unit}", id_extra=extra)


def sign_for(task: Envelope[Any], unit: str, handler: str | None = None, key: str | None = None) -> Envelope[Any]:
    return report(task, ev.TaskSignedFor(task_id=task.data.task_id, unit=unit, handler=handler), unit, key)


def progress(task: Envelope[Any], unit: str, note: str, waiting_on_resident: bool = False,
             key: str | None = None) -> Envelope[Any]:
    return report(task, ev.ProgressReported(task_id=task.data.task_id, unit=unit, note=note,
                                            waiting_on_resident=waiting_on_resident), unit, key)


def request_extension(task: Envelope[Any], unit: str, amount: int, time_unit: str, reason: str,
                      key: str | None = None) -> Envelope[Any]:
    extra = ev.TimeLimitSpec.model_validate({"amount": amount, "unit": time_unit})
    return report(task, ev.ExtensionRequested(task_id=task.data.task_id, unit=unit, reason=reason, extra=extra), unit, key)


def return_task(task: Envelope[Any], unit: str, reason: str, suggested_unit: str | None = None,
                key: str | None = None) -> Envelope[Any]:
    return report(task, ev.TaskReturned(task_id=task.data.task_id, unit=unit, reason=reason, suggested_unit=suggested_unit),
                  unit, key)


def complete(task: Envelope[Any], unit: str, result: str, key: str | None = None) -> Envelope[Any]:
    return report(task, ev.TaskCompleted(task_id=task.data.task_id, unit=unit, result=result), unit, key)


def resolve_on_the_spot(task: Envelope[Any], unit: str, result: str, key: str | None = None) -> Envelope[Any]:
    """A grid worker closed a small matter where it was (就地解决): a completion marked as such."""
    return report(task, ev.TaskCompleted(task_id=task.data.task_id, unit=unit, result=result, resolved_on_the_spot=True),
                  unit, key)


def escalate(task: Envelope[Any], unit: str, to_level: str, reason: str, note: str,
             key: str | None = None) -> Envelope[Any]:
    """An area unit sends the matter up the area chain (上报) to `to_level` for `reason` (an EscalationReason);
    `note` says what the worker saw. Carried as a return marked with its target, on the path returns take."""
    returned = ev.TaskReturned(task_id=task.data.task_id, unit=unit, reason=note, escalate_to=ev.Level(to_level),
                               escalation_reason=ev.EscalationReason(reason))
    return report(task, returned, unit, key)


def opinion(consultation: Envelope[Any], unit: str, agrees: bool, proposed_lead: str | None = None,
            comment: str = "", key: str | None = None) -> Envelope[Any]:
    return report(consultation, ev.OpinionGiven(consultation_id=consultation.data.consultation_id, unit=unit, agrees=agrees,
                                                proposed_lead=proposed_lead, comment=comment), unit, key)
