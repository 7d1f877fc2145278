"""Synthetic workflow events for one ticket, for drills, demos and tests of the SLA service.

`TicketStory` writes the events the workflow services would publish (discover, triage, consult, act, units,
evaluate), each caused by the previous one, stamped with the time you give: time is yours to control.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from contracts import events as ev
from contracts.envelope import Envelope
from contracts.topics import topic_for_event

DEFAULT_LIMITS = ev.Limits(sign_for=ev.TimeLimitSpec(amount=1, unit="wd"),
                           response=ev.TimeLimitSpec(amount=2, unit="wd"),
                           resolution=ev.TimeLimitSpec(amount=4, unit="wd"))


@dataclass
class TicketStory:
    ticket_id: str
    category: str = "city-management.street-light"
    location: ev.Location = field(default_factory=lambda: ev.Location(
        district="district-east", street="street-east-1", community="community-east-1-a", grid="grid-east-1-a-1"))
    limits: ev.Limits = DEFAULT_LIMITS
    events: list[Envelope[Any]] = field(default_factory=list)

    # ----- plumbing

    def _ticket(self, at: datetime) -> ev.RegisteredTicket:
        return ev.RegisteredTicket(channel=ev.Channel.phone, text="路灯不亮 / street light out", caller=ev.CallerRef(anonymous=True),
                                   location=self.location, category=self.category, urgency=ev.Urgency.normal, submitted_at=at)

    def add(self, data: ev.Event, at: datetime, source: str) -> Envelope[Any]:
        if self.events:
            envelope = self.events[-1].caused(data, source=source, time=at, index=len(self.events))
        else:
            envelope = Envelope.origin(data, source=source, ticket_id=self.ticket_id, time=at)
        self.events.append(envelope)
        return envelope

    def records(self) -> list[tuple[str, Envelope[Any]]]:
        """(topic, envelope) of every event, as the workflow would publish them."""
        return [(topic_for_event(e.type), e) for e in self.events]

    # ----- discover, triage, consult

    def registered(self, at: datetime) -> Envelope[Any]:
        return self.add(ev.TicketRegistered(ticket=self._ticket(at)), at, "/cityops/discover")

    def classified(self, at: datetime, lead: str, level: ev.Level = ev.Level.city, consult: bool = False) -> Envelope[Any]:
        data = ev.TicketClassified(category=self.category, confidence=0.9, method="model", catalogue_version="test",
                                   routing=ev.Routing(lead=lead, level=level), needs_consultation=consult,
                                   limits=self.limits, ticket=self._ticket(at))
        return self.add(data, at, "/cityops/triage")

    def consultation_requested(self, at: datetime, parties: tuple[str, ...], due: datetime) -> Envelope[Any]:
        data = ev.ConsultationRequested(consultation_id=f"C-{self.ticket_id}", parties=parties,
                                        proposed=ev.Routing(lead=parties[0], level=ev.Level.city), reason="several units",
                                        opinions_due=due, category=self.category, limits=self.limits, ticket=self._ticket(at))
        return self.add(data, at, "/cityops/consult")

    def plan_agreed(self, at: datetime, lead: str, deadline: datetime) -> Envelope[Any]:
        data = ev.PlanAgreed(consultation_id=f"C-{self.ticket_id}", routing=ev.Routing(lead=lead, level=ev.Level.city),
                             deadline=deadline, category=self.category, limits=self.limits, ticket=self._ticket(at))
        return self.add(data, at, "/cityops/consult")

    def supervisor_decided(self, at: datetime, lead: str, level: ev.Level = ev.Level.city) -> Envelope[Any]:
        data = ev.SupervisorDecided(consultation_id=f"C-{self.ticket_id}", supervisor="supervisor-1",
                                    routing=ev.Routing(lead=lead, level=level))
        return self.add(data, at, "/cityops/consult")

    # ----- act and the units

    def assigned(self, at: datetime, unit: str, round: int = 1, role: ev.Role = ev.Role.lead,
                 limits: ev.Limits | None = None, resolution_due: datetime | None = None, final: bool = False) -> str:
        task_id = f"{self.ticket_id}:{unit}:{round}"
        data = ev.TaskAssigned(task_id=task_id, unit=unit, role=role, round=round, final=final, category=self.category,
                               limits=limits or self.limits, resolution_due=resolution_due, ticket=self._ticket(at))
        self.add(data, at, "/cityops/act")
        return task_id

    @staticmethod
    def _unit_of(task_id: str) -> str:
        return task_id.split(":")[1]

    def signed_for(self, at: datetime, task_id: str) -> Envelope[Any]:
        return self.add(ev.TaskSignedFor(task_id=task_id, unit=self._unit_of(task_id)), at, "/cityops/units")

    def progress(self, at: datetime, task_id: str, waiting_on_resident: bool = False) -> Envelope[Any]:
        data = ev.ProgressReported(task_id=task_id, unit=self._unit_of(task_id), note="on it",
                                   waiting_on_resident=waiting_on_resident)
        return self.add(data, at, "/cityops/units")

    def extension_requested(self, at: datetime, task_id: str, amount: int = 2, unit: str = "wd") -> Envelope[Any]:
        data = ev.ExtensionRequested(task_id=task_id, unit=self._unit_of(task_id),
                                     extra=ev.TimeLimitSpec(amount=amount, unit=unit), reason="parts on order")
        return self.add(data, at, "/cityops/units")

    def extension_decided(self, at: datetime, task_id: str, approved: bool = True, amount: int = 2,
                          unit: str = "wd") -> Envelope[Any]:
        data = ev.ExtensionDecided(task_id=task_id, unit=self._unit_of(task_id), approved=approved,
                                   extra=ev.TimeLimitSpec(amount=amount, unit=unit), reason="reasonable")
        return self.add(data, at, "/cityops/act")

    def returned(self, at: datetime, task_id: str) -> Envelope[Any]:
        data = ev.TaskReturned(task_id=task_id, unit=self._unit_of(task_id), reason="not ours")
        return self.add(data, at, "/cityops/units")

    def return_rejected(self, at: datetime, task_id: str) -> Envelope[Any]:
        data = ev.ReturnRejected(task_id=task_id, unit=self._unit_of(task_id), reason="assigned final")
        return self.add(data, at, "/cityops/act")

    def reroute_requested(self, at: datetime, excluded: tuple[str, ...], returns: int) -> Envelope[Any]:
        data = ev.RerouteRequested(category=self.category, excluded_units=excluded, returns=returns, reason="not ours",
                                   ticket=self._ticket(at))
        return self.add(data, at, "/cityops/act")

    def completed(self, at: datetime, task_id: str) -> Envelope[Any]:
        return self.add(ev.TaskCompleted(task_id=task_id, unit=self._unit_of(task_id), result="fixed"), at, "/cityops/units")

    def handled(self, at: datetime, units: tuple[str, ...], round: int = 1) -> Envelope[Any]:
        data = ev.TicketHandled(round=round, units=units, results=tuple("fixed" for _ in units), category=self.category,
                                location=self.location)
        return self.add(data, at, "/cityops/act")

    # ----- evaluate

    def callback_requested(self, at: datetime, units: tuple[str, ...], round: int = 1) -> Envelope[Any]:
        data = ev.CallbackRequested(round=round, caller=ev.CallerRef(anonymous=True), units=units)
        return self.add(data, at, "/cityops/evaluate")

    def callback_recorded(self, at: datetime, resolved: bool = True, round: int = 1) -> Envelope[Any]:
        satisfaction = ev.Satisfaction.satisfied if resolved else ev.Satisfaction.unsatisfied
        return self.add(ev.CallbackRecorded(round=round, resolved=resolved, satisfaction=satisfaction), at, "/cityops/evaluate")

    def reopened(self, at: datetime, round: int, units: tuple[str, ...]) -> Envelope[Any]:
        return self.add(ev.TicketReopened(round=round, reason="unresolved", units=units), at, "/cityops/evaluate")

    def closed(self, at: datetime, rounds: int = 1) -> Envelope[Any]:
        return self.add(ev.TicketClosed(outcome="resolved", satisfaction=ev.Satisfaction.satisfied, rounds=rounds),
                        at, "/cityops/evaluate")
