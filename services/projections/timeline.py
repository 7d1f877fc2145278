"""The timeline: which units and round an event concerns, and its one-line summary."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

from contracts import events as ev
from contracts.envelope import Event

from .facts import KIND, TOPIC, TYPE_RANK, Fact, as_utc, db_time, stored_payload


def event_units(data: Event) -> tuple[str, ...]:
    """Every unit an event concerns, the principal one first."""
    if isinstance(data, (ev.TicketClassified, ev.PlanAgreed, ev.SupervisorDecided)):
        return (data.routing.lead, *data.routing.co_units)
    if isinstance(data, ev.ConsultationRequested):
        return tuple(dict.fromkeys((data.proposed.lead, *data.parties)))
    if isinstance(data, ev.SupervisorReviewRequested):
        return (data.proposed.lead, *data.proposed.co_units)
    if isinstance(data, (ev.TicketHandled, ev.CallbackRequested, ev.TicketReopened)):
        return tuple(data.units)
    if isinstance(data, ev.RerouteRequested):
        return tuple(data.excluded_units)
    if isinstance(data, ev.TicketEscalated):
        return (data.to_unit,) if data.to_unit else ()
    unit = data.unit if _has_field(type(data), "unit") else None  # type: ignore[attr-defined]  # _has_field checked it
    return (unit,) if isinstance(unit, str) else ()


def event_round(data: Event) -> int | None:
    """The handling round an event states (task reports do not: their task id carries a dispatch number)."""
    return data.round if _has_field(type(data), "round") else None  # type: ignore[attr-defined]  # _has_field checked it


@cache
def _has_field(model: type[Event], name: str) -> bool:
    # Cached: pydantic's `model_fields` goes through a (deprecation-checking) descriptor on each access.
    return name in model.model_fields


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _iso(moment: datetime) -> str:
    return as_utc(moment).strftime("%Y-%m-%d %H:%M")


_SUMMARIES: dict[type[Event], Callable[[Any], str]] = {
    ev.TicketSubmitted: lambda d: f"submitted via {d.channel.value}: {_short(d.text)}",
    # The registration is the first event the projections read of a ticket: it says how and what came in.
    ev.TicketRegistered: lambda d: (f"registered via {d.ticket.channel.value}: {_short(d.ticket.text)}"
                                    + (f" (a repeat of {d.master_ticket_id})" if d.master_ticket_id else "")),
    ev.TicketMerged: lambda d: f"merged into {d.master_ticket_id} (similarity {d.similarity:.2f}): {_short(d.reason)}",
    ev.SplitRequested: lambda d: f"split requested by {d.requested_by}: {_short(d.reason)}",
    ev.TicketSplit: lambda d: f"split from {d.former_master_ticket_id}: {_short(d.reason)}",
    ev.ManualTriageRequested: lambda d: f"manual triage needed: {_short(d.reason)}",
    ev.ManualTriageResolved: lambda d: f"operator {d.operator} chose {d.category}",
    ev.TicketClassified: lambda d: (f"classified {d.category} by {d.method} ({d.confidence:.2f}, catalogue "
                                    f"{d.catalogue_version}); lead {d.routing.lead}"
                                    + (f", co {','.join(d.routing.co_units)}" if d.routing.co_units else "")),
    ev.ConsultationRequested: lambda d: f"consultation with {', '.join(d.parties)}: {_short(d.reason)}",
    ev.OpinionGiven: lambda d: f"{d.unit} " + ("agrees" if d.agrees else f"disagrees, proposes {d.proposed_lead or '-'}"),
    ev.PlanAgreed: lambda d: f"plan agreed: lead {d.routing.lead}, due {_iso(d.deadline)}",
    ev.SupervisorReviewRequested: lambda d: f"supervisor review: {_short(d.reason)}",
    ev.SupervisorDecided: lambda d: f"supervisor {d.supervisor} decided: lead {d.routing.lead}",
    ev.TaskAssigned: lambda d: (f"task to {d.unit} as {d.role.value}, round {d.round}" + (", final" if d.final else "")
                                + (f", due {_iso(d.resolution_due)}" if d.resolution_due else "")),
    ev.TaskSignedFor: lambda d: f"{d.unit} signed for" + (f" ({d.handler})" if d.handler else ""),
    ev.ProgressReported: lambda d: f"{d.unit}: {_short(d.note)}" + (" (waiting on resident)" if d.waiting_on_resident else ""),
    ev.ExtensionRequested: lambda d: f"{d.unit} asks +{d.extra.amount}{d.extra.unit}: {_short(d.reason)}",
    ev.ExtensionDecided: lambda d: f"extension +{d.extra.amount}{d.extra.unit} for {d.unit} " + ("approved" if d.approved else "refused"),
    ev.TaskReturned: lambda d: f"{d.unit} returned it: {_short(d.reason)}",
    ev.ReturnRejected: lambda d: f"return by {d.unit} rejected: {_short(d.reason)}",
    ev.RerouteRequested: lambda d: f"reroute without {', '.join(d.excluded_units)} (return #{d.returns})",
    ev.TaskCompleted: lambda d: f"{d.unit} completed: {_short(d.result)}",
    ev.TicketHandled: lambda d: f"handled (round {d.round}) by {', '.join(d.units)}",
    ev.CallbackRequested: lambda d: f"callback requested (round {d.round})",
    ev.CallbackRecorded: lambda d: (f"callback: {'resolved' if d.resolved else 'unresolved'}, {d.satisfaction.value}"
                                    + ("" if d.reasonable_demand else " (unreasonable demand)")),
    ev.TicketReopened: lambda d: f"reopened for round {d.round}: {_short(d.reason)}",
    ev.TicketClosed: lambda d: f"closed: {d.outcome}" + (f", {d.satisfaction.value}" if d.satisfaction else ""),
    ev.SlaReminderSent: lambda d: f"reminder to {d.unit}: {d.clock} clock {d.fraction:.0%} used, due {_iso(d.deadline)}",
    ev.SlaBreached: lambda d: f"{d.clock} deadline {_iso(d.deadline)} passed ({d.unit})",
    ev.TicketEscalated: lambda d: f"escalated to {d.to_unit or (d.to_level.value if d.to_level else '?')}: {d.reason}",
}


def summary(data: Event) -> str:
    render = _SUMMARIES.get(type(data))
    return _short(render(data), 300) if render else type(data).__name__


def timeline_row(fact: Fact) -> dict[str, Any]:
    units = event_units(fact.data)
    return {
        "event_id": fact.id, "ticket_id": fact.ticket_id, "time": db_time(fact.time),
        "type_rank": TYPE_RANK.get(fact.type, 99), "type": fact.type, "kind": KIND.get(fact.type, fact.type),
        "topic": TOPIC[fact.type], "unit": units[0] if units else None,
        "units": f",{','.join(units)}," if units else "", "round": event_round(fact.data),
        "summary": summary(fact.data), "source": fact.source, "correlation_id": fact.correlation_id,
        "causation_id": fact.causation_id, "payload": stored_payload(fact.data),
    }
