"""The event catalogue of the five-step workflow, version 1.

Every payload is frozen, describes each field, and is registered under its CloudEvents type
`cityops.<area>.<subject>.<past-verb>.v1`. Within v1 models only grow: new fields are optional
(tests/contract/test_schemas.py compares each one with its frozen JSON Schema in contracts/schemas/).

Privacy by projection: only `TicketSubmitted` (the hotline's own intake record) carries the
caller's name and phone, sealed with that caller's data key (`SealedCaller`, only intake can open it;
records written before sealing carry them in `caller`). Every event carries `CallerRef`: a masked
phone and a pseudonym.

The models live in one module per workflow step (values: what they share); this package re-exports
every one, so `from contracts import events as ev; ev.TaskAssigned` and
`from contracts.events import TicketClosed` work as before. A new event goes into its step's module
AND into the imports and `__all__` below (contracts/registry.py finds event types here).
"""

from __future__ import annotations

from ..envelope import Event
from .act import (
    ExtensionDecided,
    ExtensionRequested,
    ProgressReported,
    RerouteRequested,
    ReturnRejected,
    TaskAssigned,
    TaskCompleted,
    TaskReturned,
    TaskSignedFor,
    TicketHandled,
)
from .audit import AuditRecorded
from .commands import (
    COMMAND_FACTS,
    CallbackSubmitted,
    ManualTriageSubmitted,
    SplitSubmitted,
    SupervisorDecisionSubmitted,
    fact_of,
)
from .consult import (
    ConsultationRequested,
    OpinionGiven,
    PlanAgreed,
    SupervisorDecided,
    SupervisorReviewRequested,
)
from .discover import (
    RegisteredTicket,
    ResidentLifeEventRecorded,
    SplitRequested,
    TicketMerged,
    TicketRegistered,
    TicketSplit,
    TicketSubmitted,
)
from .evaluate import (
    CallbackRecorded,
    CallbackRequested,
    TicketClosed,
    TicketReopened,
)
from .residents import ProactiveScanRequested, ResidentBaseRecorded, WeatherAlertIssued
from .sla import (
    SlaBreached,
    SlaReminderSent,
    TicketEscalated,
)
from .triage import (
    ManualTriageRequested,
    ManualTriageResolved,
    TicketClassified,
)
from .values import (
    Caller,
    CallerRef,
    Channel,
    EscalationReason,
    Level,
    Limits,
    Location,
    Role,
    Routing,
    Satisfaction,
    SealedCaller,
    TimeLimitSpec,
    Urgency,
    ValueObject,
)

# Event is re-exported because callers have used `ev.Event` as the base of every payload.
__all__ = [
    "Event",
    "Channel",
    "Urgency",
    "Level",
    "EscalationReason",
    "Satisfaction",
    "Role",
    "ValueObject",
    "Location",
    "Caller",
    "CallerRef",
    "SealedCaller",
    "TimeLimitSpec",
    "Limits",
    "Routing",
    "TicketSubmitted",
    "ResidentLifeEventRecorded",
    "ResidentBaseRecorded",
    "WeatherAlertIssued",
    "ProactiveScanRequested",
    "RegisteredTicket",
    "TicketRegistered",
    "TicketMerged",
    "SplitRequested",
    "TicketSplit",
    "TicketClassified",
    "ManualTriageRequested",
    "ManualTriageResolved",
    "ConsultationRequested",
    "OpinionGiven",
    "PlanAgreed",
    "SupervisorReviewRequested",
    "SupervisorDecided",
    "TaskAssigned",
    "TaskSignedFor",
    "ProgressReported",
    "ExtensionRequested",
    "ExtensionDecided",
    "TaskReturned",
    "ReturnRejected",
    "RerouteRequested",
    "TaskCompleted",
    "TicketHandled",
    "CallbackRequested",
    "CallbackRecorded",
    "TicketReopened",
    "ManualTriageSubmitted",
    "SplitSubmitted",
    "SupervisorDecisionSubmitted",
    "CallbackSubmitted",
    "COMMAND_FACTS",
    "fact_of",
    "TicketClosed",
    "SlaReminderSent",
    "SlaBreached",
    "TicketEscalated",
    "AuditRecorded",
]
