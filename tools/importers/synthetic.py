"""A deterministic synthetic workflow history: complete ticket lifecycles as the services would log them.

For demos, benchmarks and tests of the read models and replays before (or besides) the real
services: each ticket is submitted, registered (or merged into an earlier one), triaged (by the
model, an operator, or the manual queue), sometimes consulted on or decided by a supervisor,
dispatched to the units the responsibility catalogue names, signed for, reminded, breached,
extended, returned and rerouted, completed, called back, reopened, and closed. Events after the
end of the window are not emitted, so the last tickets are still in flight and units have queues.

Same seed, same events, same ids: publishing a history twice is a redelivery, not new tickets.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts import events as ev
from contracts.envelope import Envelope, Event, derive_event_id
from contracts.topics import topic_for_event
from domain.catalogue import Catalogue, load_catalogue

DEFAULT_START = datetime(2026, 5, 4, 0, 0, tzinfo=UTC)
_NS = "cityops-synthetic"

_PLACES_ZH = ("我家楼下", "小区门口", "单元楼里", "路口", "菜市场边上", "学校旁边")
_PLEAS_ZH = ("请尽快处理", "希望有关部门管一管", "麻烦派人来看看")
_PLACES_EN = ("outside my building", "at the corner of my street", "near the school", "by the market")


def _task_id(s: _Ticket, unit: str) -> str:
    return f"{s.ticket_id}:{unit}:{s.dispatches}"


def _minutes(rng: random.Random, low: float, high: float) -> timedelta:
    return timedelta(minutes=rng.uniform(low, high))


def _limits(catalogue: Catalogue, code: str) -> ev.Limits:
    limits = catalogue.category(code).limits

    def spec(x: Any) -> ev.TimeLimitSpec:
        return ev.TimeLimitSpec(amount=x.amount, unit=x.unit)
    return ev.Limits(sign_for=spec(limits.sign_for), response=spec(limits.response), resolution=spec(limits.resolution))


@dataclass
class _Ticket:
    """Writes one ticket's chain of events; each event is caused by the one before it."""

    ticket_id: str
    rng: random.Random
    end: datetime
    out: list[Envelope[Any]]
    now: datetime
    last: Envelope[Any] | None = None
    index: int = 0
    dispatches: int = 0
    registered: ev.RegisteredTicket | None = field(default=None)

    def wait(self, low_min: float, high_min: float) -> None:
        self.now = self.now + _minutes(self.rng, low_min, high_min)

    def emit(self, data: Event, source: str) -> bool:
        """Log the event unless it lies after the window's end; False stops the story there."""
        if self.now > self.end:
            return False
        if self.last is None:
            envelope = Envelope.origin(data, source=source, ticket_id=self.ticket_id, time=self.now,
                                       event_id=derive_event_id(_NS, data.event_type, 0, self.ticket_id))
        else:
            envelope = self.last.caused(data, source=source, index=self.index, time=self.now)
        self.index += 1
        self.out.append(envelope)
        self.last = envelope
        return True

    def emit_together(self, datas: Sequence[Event], source: str) -> bool:
        """Several events from one cause at one instant, as a handler emits them (e.g. one dispatch)."""
        if self.now > self.end or self.last is None:
            return False
        cause = self.last
        for number, data in enumerate(datas):
            envelope = cause.caused(data, source=source, index=number, time=self.now, id_extra=str(self.index))
            self.out.append(envelope)
            self.last = envelope
        self.index += 1
        return True


@dataclass
class SyntheticHistory:
    """Generates the events; `envelopes()` in time order, each with its topic via `topic_for_event`."""

    tickets: int
    seed: int = 2026
    start: datetime = DEFAULT_START
    span: timedelta = timedelta(days=14)
    prefix: str = "SYN"
    catalogue: Catalogue = field(default_factory=load_catalogue)

    def __post_init__(self) -> None:
        self.grids = [a for a in self.catalogue.areas if a.level == "grid"]
        self.codes = list(self.catalogue.category_codes())

    def envelopes(self) -> list[Envelope[Any]]:
        rng = random.Random(self.seed)
        out: list[Envelope[Any]] = []
        arrivals = sorted(self.start + self.span * rng.random() for _ in range(self.tickets))
        open_masters: list[str] = []
        for number, arrival in enumerate(arrivals):
            ticket_id = f"{self.prefix}-{number:07d}"
            ticket_rng = random.Random(f"{self.seed}:{ticket_id}")
            story = _Ticket(ticket_id, ticket_rng, self.start + self.span, out, arrival)
            self._tell(story, open_masters)
            open_masters = (open_masters + [ticket_id])[-50:]
        return sorted(out, key=lambda e: (e.time, e.id))

    def records(self) -> Iterator[tuple[str, Envelope[Any]]]:
        for envelope in self.envelopes():
            yield topic_for_event(envelope.type), envelope

    # -- one ticket ----------------------------------------------------------------------------

    def _location(self, rng: random.Random) -> ev.Location:
        if rng.random() < 0.05:
            return ev.Location(address="somewhere in town")
        grid = rng.choice(self.grids)
        chain = {a.level: a.id for a in self.catalogue.area_chain({"grid": grid.id})}
        return ev.Location(district=chain["district"], street=chain["street"], community=chain["community"],
                           grid=chain["grid"], lat=round(30 + rng.random(), 6), lon=round(120 + rng.random(), 6))

    def _text(self, rng: random.Random, code: str) -> tuple[str, str]:
        category = self.catalogue.category(code)
        if rng.random() < 0.7:
            return f"{rng.choice(_PLACES_ZH)}{rng.choice(category.keywords_zh)}，{rng.choice(_PLEAS_ZH)}", "zh"
        return f"There is {rng.choice(category.keywords_en)} {rng.choice(_PLACES_EN)}, please help.", "en"

    def _tell(self, s: _Ticket, open_masters: list[str]) -> None:
        rng = s.rng
        code = rng.choice(self.codes)
        location = self._location(rng)
        text, language = self._text(rng, code)
        operator_category = code if rng.random() < 0.05 else None
        phone = f"138{rng.randrange(10**8):08d}"
        submitted = ev.TicketSubmitted(channel=rng.choice(["phone", "phone", "web", "app", "grid-patrol"]), text=text,
                                       caller=ev.Caller(name="张三", phone=phone), location=location,
                                       category=operator_category, language=language, submitted_at=s.now)
        if not s.emit(submitted, "/cityops/intake"):
            return
        s.registered = ev.RegisteredTicket(
            channel=submitted.channel, text=text, location=location, category=operator_category,
            caller=ev.CallerRef(pseudonym=f"p-{phone[-6:]}", masked_phone=f"{phone[:3]}****{phone[-4:]}"),
            urgency=submitted.urgency, submitted_at=s.now)
        s.wait(0.05, 1)
        if open_masters and rng.random() < 0.05:
            self._merged(s, rng.choice(open_masters))
            return
        if not s.emit(ev.TicketRegistered(ticket=s.registered), "/cityops/discover"):
            return
        self._triage_and_handle(s, code, location, operator_category)

    def _merged(self, s: _Ticket, master: str) -> None:
        if not s.emit(ev.TicketRegistered(ticket=s.registered, master_ticket_id=master), "/cityops/discover"):
            return
        if not s.emit(ev.TicketMerged(master_ticket_id=master, similarity=0.93, reason="same place, category, window"),
                      "/cityops/discover"):
            return
        s.wait(60 * 24, 60 * 24 * 4)
        s.emit(ev.TicketClosed(outcome="merged", rounds=0, master_ticket_id=master), "/cityops/evaluate")

    def _triage_and_handle(self, s: _Ticket, code: str, location: ev.Location, operator_category: str | None) -> None:
        rng = s.rng
        s.wait(0.05, 2)
        method: str = "operator" if operator_category else "model"
        if not operator_category and rng.random() < 0.1:
            if not s.emit(ev.ManualTriageRequested(candidates=((code, 0.41), (rng.choice(self.codes), 0.33)),
                                                    reason="low confidence", ticket=s.registered), "/cityops/triage"):
                return
            s.wait(5, 90)
            if not s.emit(ev.ManualTriageResolved(category=code, operator="op-7"), "/cityops/triage"):
                return
            method = "manual"
        decision = self.catalogue.route(code, location)
        routing = ev.Routing(lead=decision.lead, co_units=decision.co_units, level=decision.level)
        confidence = 1.0 if method != "model" else round(rng.uniform(0.7, 0.99), 3)
        if not s.emit(self._classified(s, code, method, confidence, routing, decision.needs_consultation), "/cityops/triage"):
            return
        final, due = False, None
        if decision.needs_consultation or rng.random() < 0.04:
            outcome = self._consult(s, code, routing)
            if outcome is None:
                return
            routing, final, due = outcome
        self._rounds(s, code, routing, final, due, location)

    def _classified(self, s: _Ticket, code: str, method: str, confidence: float, routing: ev.Routing,
                    needs_consultation: bool, excluded: tuple[str, ...] = ()) -> ev.TicketClassified:
        return ev.TicketClassified(category=code, confidence=confidence, method=method,
                                   catalogue_version=self.catalogue.version, routing=routing,
                                   needs_consultation=needs_consultation, limits=_limits(self.catalogue, code),
                                   excluded_units=excluded, ticket=s.registered)

    def _consult(self, s: _Ticket, code: str, routing: ev.Routing) -> tuple[ev.Routing, bool, datetime | None] | None:
        rng = s.rng
        parties = (routing.lead, *routing.co_units) if routing.co_units else (routing.lead, "city-management")
        consultation = f"{s.ticket_id}:c1"
        s.wait(1, 10)
        if not s.emit(ev.ConsultationRequested(consultation_id=consultation, parties=parties, proposed=routing,
                                               reason="several units involved", opinions_due=s.now + timedelta(days=1),
                                               category=code, limits=_limits(self.catalogue, code), ticket=s.registered),
                      "/cityops/consult"):
            return None
        disagree = rng.random() < 0.3
        for number, unit in enumerate(parties):
            s.wait(10, 600)
            agrees = not (disagree and number == 0)
            if not s.emit(ev.OpinionGiven(consultation_id=consultation, unit=unit, agrees=agrees,
                                          proposed_lead=None if agrees else parties[-1]), f"/cityops/units/{unit}"):
                return None
        s.wait(1, 60)
        if disagree:
            if not s.emit(ev.SupervisorReviewRequested(consultation_id=consultation, reason="lead disputed",
                                                       opinions=tuple((u, u != parties[0], None) for u in parties),
                                                       proposed=routing), "/cityops/consult"):
                return None
            s.wait(30, 600)
            if not s.emit(ev.SupervisorDecided(consultation_id=consultation, supervisor="sup-1", routing=routing,
                                               note="catalogue lead keeps it"), "/cityops/consult"):
                return None
            return routing, True, None
        due = s.now + timedelta(days=rng.randint(3, 10))
        if not s.emit(ev.PlanAgreed(consultation_id=consultation, routing=routing, deadline=due, category=code,
                                    limits=_limits(self.catalogue, code), ticket=s.registered), "/cityops/consult"):
            return None
        return routing, False, due

    def _assign(self, s: _Ticket, code: str, routing: ev.Routing, round_: int, final: bool,
                due: datetime | None) -> list[tuple[str, str]] | None:
        """One dispatch, as act makes it: task ids carry the dispatch number, all tasks share one cause."""
        tasks = [(routing.lead, "lead")] + [(u, "co") for u in routing.co_units]
        s.wait(0.05, 3)
        s.dispatches += 1
        assigned = [ev.TaskAssigned(task_id=_task_id(s, unit), unit=unit, role=role, round=round_, final=final,
                                    category=code, limits=_limits(self.catalogue, code), resolution_due=due,
                                    joint_with=tuple(u for u, _ in tasks if u != unit), ticket=s.registered)
                    for unit, role in tasks]
        return tasks if s.emit_together(assigned, "/cityops/act") else None

    def _rounds(self, s: _Ticket, code: str, routing: ev.Routing, final: bool, due: datetime | None,
                location: ev.Location) -> None:
        rng, round_ = s.rng, 1
        excluded: tuple[str, ...] = ()
        while True:
            tasks = self._assign(s, code, routing, round_, final, due)
            if tasks is None:
                return
            work = self._work(s, code, tasks, round_, final, excluded)
            if work is None:
                return
            if work == "returned":
                excluded = (*excluded, routing.lead)
                decision = self.catalogue.route(code, location, excluding=excluded)
                routing = ev.Routing(lead=decision.lead, co_units=decision.co_units, level=decision.level)
                s.wait(0.1, 5)
                if not s.emit(self._classified(s, code, "reroute", 1.0, routing, decision.needs_consultation, excluded),
                              "/cityops/triage"):
                    return
                final = False
                continue
            if not s.emit(ev.TicketHandled(round=round_, units=tuple(u for u, _ in tasks),
                                           results=tuple("done" for _ in tasks), category=code, location=location),
                          "/cityops/act"):
                return
            verdict = self._callback(s, tasks, round_)
            if verdict is None:
                return
            resolved, satisfaction = verdict
            if (not resolved or satisfaction == "unsatisfied") and round_ < 3 and rng.random() < 0.6:
                s.wait(1, 30)
                if not s.emit(ev.TicketReopened(round=round_ + 1, reason="resident unsatisfied",
                                                units=tuple(u for u, _ in tasks)), "/cityops/evaluate"):
                    return
                round_ += 1
                continue
            s.wait(1, 30)
            s.emit(ev.TicketClosed(outcome="resolved" if resolved else "unresolved", satisfaction=satisfaction,
                                   rounds=round_), "/cityops/evaluate")
            return

    def _work(self, s: _Ticket, code: str, tasks: list[tuple[str, str]], round_: int, final: bool,
              excluded: tuple[str, ...]) -> str | None:
        """Each unit works its task; returns 'returned' when the lead sends it back, 'done', or None (window ended)."""
        rng = s.rng
        for unit, role in tasks:
            task_id = _task_id(s, unit)
            deadline = s.now + timedelta(hours=24)
            if rng.random() < 0.12:
                s.wait(60, 600)
                if not s.emit(ev.SlaReminderSent(task_id=task_id, unit=unit, clock="sign_for", fraction=0.75,
                                                 deadline=deadline), "/cityops/sla"):
                    return None
                if rng.random() < 0.4:
                    s.now = max(s.now, deadline) + _minutes(rng, 1, 60)
                    if not s.emit(ev.SlaBreached(task_id=task_id, unit=unit, clock="sign_for", deadline=deadline),
                                  "/cityops/sla"):
                        return None
                    if rng.random() < 0.5 and not s.emit(ev.TicketEscalated(
                            from_level="street", to_level="district", to_unit="district-east", reason="breach",
                            task_id=task_id), "/cityops/sla"):
                        return None
            s.wait(5, 480)
            if role == "lead" and rng.random() < 0.08 and len(excluded) < 2:
                if not s.emit(ev.TaskReturned(task_id=task_id, unit=unit, reason="not our responsibility"),
                              f"/cityops/units/{unit}"):
                    return None
                s.wait(0.1, 5)
                if final:
                    if not s.emit(ev.ReturnRejected(task_id=task_id, unit=unit, reason="assigned final by a supervisor"),
                                  "/cityops/act"):
                        return None
                else:
                    if not s.emit(ev.RerouteRequested(category=code, excluded_units=(*excluded, unit), returns=len(excluded) + 1,
                                                      reason="not our responsibility", ticket=s.registered), "/cityops/act"):
                        return None
                    return "returned"
            if not s.emit(ev.TaskSignedFor(task_id=task_id, unit=unit, handler="team-1"), f"/cityops/units/{unit}"):
                return None
            if not self._progress(s, task_id, unit):
                return None
        return "done"

    def _progress(self, s: _Ticket, task_id: str, unit: str) -> bool:
        rng = s.rng
        if rng.random() < 0.5:
            s.wait(30, 60 * 24)
            waiting = rng.random() < 0.2
            if not s.emit(ev.ProgressReported(task_id=task_id, unit=unit, note="on site", waiting_on_resident=waiting),
                          f"/cityops/units/{unit}"):
                return False
        if rng.random() < 0.08:
            s.wait(30, 600)
            extra = ev.TimeLimitSpec(amount=3, unit="wd")
            if not s.emit(ev.ExtensionRequested(task_id=task_id, unit=unit, extra=extra, reason="parts on order"),
                          f"/cityops/units/{unit}"):
                return False
            s.wait(10, 240)
            if not s.emit(ev.ExtensionDecided(task_id=task_id, unit=unit, approved=rng.random() < 0.7, extra=extra,
                                              reason="reasonable"), "/cityops/act"):
                return False
        deadline = s.now + timedelta(days=2)
        if rng.random() < 0.07:
            s.now = deadline + _minutes(rng, 10, 600)
            if not s.emit(ev.SlaBreached(task_id=task_id, unit=unit, clock="resolution", deadline=deadline), "/cityops/sla"):
                return False
        s.wait(60, 60 * 48)
        return s.emit(ev.TaskCompleted(task_id=task_id, unit=unit, result="fixed"), f"/cityops/units/{unit}")

    def _callback(self, s: _Ticket, tasks: list[tuple[str, str]], round_: int) -> tuple[bool, str] | None:
        rng = s.rng
        assert s.registered is not None, "a ticket is registered before it is dispatched, so before any callback"
        s.wait(1, 30)
        if not s.emit(ev.CallbackRequested(round=round_, caller=s.registered.caller, units=tuple(u for u, _ in tasks)),
                      "/cityops/evaluate"):
            return None
        s.wait(60, 60 * 24)
        resolved = rng.random() < 0.85
        satisfaction = rng.choices(["satisfied", "basically-satisfied", "unsatisfied"], [0.65, 0.2, 0.15])[0]
        if not s.emit(ev.CallbackRecorded(round=round_, resolved=resolved, satisfaction=satisfaction,
                                          reasonable_demand=rng.random() < 0.95), "/cityops/evaluate"):
            return None
        return resolved, satisfaction
