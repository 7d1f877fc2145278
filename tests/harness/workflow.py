"""Drive tickets through the workflow services on one log, with the services' own handlers.

The `Hub` runs discover, triage, consult, act, evaluate and sla (built by `tests.harness.pipeline.start`) and
hands each of them the log's records on its topics until none publishes anything new. Residents,
operators, units and supervisors are played by the test: it adds their events with the helpers below
(unit reports through the unit SDK's own functions, so their ids are derived as a real unit's are).
Operators, supervisors and callback operators act as they do at the hotline: intake puts their decision
on its command topic (built by intake's own `_command`) and the step it is addressed to writes the fact.
With the simulated units in the hub, their hotline staff post to intake's real API (`Hub.call_hotline`).

`stories(hub)` drives one ticket down every branch of the lifecycle; the log it leaves is the
realistic input of the property tests: cut into batches (test_batch_split_properties.py) and delivered
in any order Kafka could deliver it in (`must_come_after`, `delivery_order`,
test_delivery_order_properties.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import httpx

from contracts import events as ev
from contracts.envelope import Envelope, derive_event_id, utcnow
from domain.catalogue import load_catalogue
from domain.classifier import Prediction
from domain.privacy import mask_phone, pseudonym
from services.intake.api import _command as intake_command
from services.intake.api import build_api
from services.units import sdk
from services.units.hotline import StaffTokens, post_due

from .auth import token, verifier
from .pipeline import Clock, Log, Record, ServiceHarness, record_of, start

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2025, 11, 3, 9, 0, tzinfo=SH)  # a Monday, a working day
GRID = "grid-east-1-a-1"
WORKFLOW = ("discover", "triage", "consult", "act", "evaluate", "sla")
# The simulated hotline staff's own tokens, as `cityops up` gives them to the units service.
STAFF_TOKENS = StaffTokens(operator=token("operator", "simulated-callback-desk"),
                           supervisor=token("supervisor", "simulated-supervisor"))

# ---------------------------------------------------------------------------------------------- a classifier


class KeywordClassifier:
    """A stand-in for the trained classifier (triage's app takes one): sure of a category when the text
    names one of its keywords, unsure otherwise. Deterministic and instant."""

    KEYWORDS: ClassVar[dict[str, str]] = {"garbage": "city-management.garbage-collection", "manhole": "city-management.manhole-cover"}

    def predict(self, text: str) -> Prediction:
        for word, category in self.KEYWORDS.items():
            if word in text.lower():
                return Prediction(category=category, confidence=0.92, alternatives=(("city-management.street-cleaning", 0.05),))
        return Prediction(category="city-management.street-cleaning", confidence=0.12,
                          alternatives=(("city-management.garbage-collection", 0.10), ("water.supply-outage", 0.08)))

    def predict_many(self, texts: Sequence[str]) -> list[Prediction]:
        return [self.predict(t) for t in texts]


# ---------------------------------------------------------------------------------------------- origin events


def _origin(data: ev.Event, ticket_id: str, source: str, name: str) -> Envelope[Any]:
    """An event a person or a register starts a chain with. Stamped with the wall clock, as the services stamp
    what they produce: their event times then follow the order things happened in (the status view relies
    on it). Stable ids: the same story gives the same log in every run (handlers derive theirs from these)."""
    return Envelope.origin(data, source=source, ticket_id=ticket_id, time=utcnow(),
                           event_id=derive_event_id(f"test:{ticket_id}", data.event_type, 0, name))


def submitted(ticket_id: str, text: str, *, category: str | None = None, grid: str | None = GRID, at: datetime = T0,
              phone: str | None = "13812345678", lat: float | None = None, lon: float | None = None,
              name: str = "") -> Envelope[Any]:
    """An intake record as intake writes it: the caller sealed away (not needed here), a masked phone and pseudonym."""
    location = ev.Location(grid=grid, lat=lat, lon=lon, address="桂花路 1 号")
    ref = (ev.CallerRef(pseudonym=pseudonym("test-key", phone), masked_phone=mask_phone(phone)) if phone
           else ev.CallerRef(anonymous=True))
    data = ev.TicketSubmitted(channel=ev.Channel.phone, text=text, caller_ref=ref,
                              location=location, category=category, submitted_at=at)
    return _origin(data, ticket_id, "/cityops/intake", name)


def life_event(resident: str, kind: str, *, age: int | None = None, at: datetime = T0) -> Envelope[Any]:
    data = ev.ResidentLifeEventRecorded(resident_ref=resident, kind=kind, age=age, occurred_on=at,
                                        location=ev.Location(grid=GRID))
    return _origin(data, resident, "/cityops/registers", kind)


def _command(data: ev.Event, ticket_id: str, name: str) -> Envelope[Any]:
    """A person's decision as intake puts it on the command topic (intake's own `_command`), sent with an
    Idempotency-Key so its id is stable across runs; the step it is addressed to writes the fact."""
    return intake_command(data, ticket_id, utcnow(), f"test:{ticket_id}:{name}")


def split_submitted(ticket_id: str) -> Envelope[Any]:
    """An operator undoes a merge (POST /tickets/{id}/split); discover writes SplitRequested."""
    return _command(ev.SplitSubmitted(requested_by="op-7", reason="a different manhole"), ticket_id, "split")


def manual_triage_submitted(ticket_id: str, category: str) -> Envelope[Any]:
    """An operator chooses the category (POST /triage/{id}/resolve); triage writes ManualTriageResolved."""
    return _command(ev.ManualTriageSubmitted(category=category, operator="op-7"), ticket_id, "manual")


def supervisor_decision_submitted(ticket_id: str, lead: str, *, co_units: Iterable[str] = (), level: str = "street",
                                  consultation_id: str | None = None) -> Envelope[Any]:
    """A supervisor decides (POST /supervisor/decisions); consult writes SupervisorDecided."""
    data = ev.SupervisorDecisionSubmitted(consultation_id=consultation_id, supervisor="sup-1",
                                          routing=ev.Routing(lead=lead, co_units=tuple(co_units), level=level), note="decided")
    return _command(data, ticket_id, f"decided:{consultation_id}")


def callback_submitted(ticket_id: str, round: int, *, satisfied: bool) -> Envelope[Any]:
    """A callback operator records the resident's verdict (POST /callbacks); evaluate writes CallbackRecorded."""
    data = ev.CallbackSubmitted(round=round, resolved=satisfied,
                                satisfaction=ev.Satisfaction.satisfied if satisfied else ev.Satisfaction.unsatisfied)
    return _command(data, ticket_id, f"callback:{round}")


def fact_of(command: Envelope[Any], source: str) -> Envelope[Any]:
    """The fact the addressed step (CloudEvents `source`) writes for a command, built as the step builds it, for
    a test that feeds the fact to a reader without running the step."""
    return command.caused(ev.fact_of(command.data), source=source, time=command.time)


# ---------------------------------------------------------------------------------------------- the hub


class Hub:
    """The workflow services on one log."""

    def __init__(self, directory: Path, *, services: Sequence[str] = WORKFLOW, clock: Clock | None = None,
                 **settings: dict[str, Any]) -> None:
        if "units" in services and "intake-status" not in services:
            services = (*services, "intake-status")  # the simulated hotline staff post to intake, which checks its view
        self.clock = clock or Clock()
        self.log = Log()
        self.services: dict[str, ServiceHarness] = {}
        for name in services:
            extra = dict(settings.get(name, {}))
            if name == "triage":
                extra.setdefault("classifier", KeywordClassifier())
            self.services[name] = start(name, directory, clock=self.clock, **extra)
        self._read = dict.fromkeys(self.services, 0)
        self._hotline: tuple[Any, list[tuple[str, Envelope[Any]]]] | None = None

    def add(self, *envelopes: Envelope[Any]) -> list[Record]:
        """Put events on the log (each on its catalogue topic) and let the services handle what follows."""
        added = [self.log.append(record_of(e)) for e in envelopes]
        self.settle()
        return added

    def settle(self) -> None:
        """Feed each service what it has not read yet, until nothing new is published, and let the simulated
        hotline staff post their due decisions to intake (when the units run), until they have none left."""
        while True:
            busy = True
            while busy:
                busy = False
                for name, svc in self.services.items():
                    new = [r for r in self.log.records[self._read[name]:] if svc.wants(r)]
                    self._read[name] = len(self.log.records)
                    if new:
                        busy = True
                        for out in svc.feed(new):
                            self.log.append(out)
            if not self.call_hotline():
                return

    def call_hotline(self) -> bool:
        """One round of the units service's hotline loop (services/units/hotline.py): the simulated callback
        operators' and supervisor's due decisions posted to intake's real API, which puts its commands on the
        log (its status view, a service of the hub, answers whether it knows the ticket). True if any was."""
        units, status = self.services.get("units"), self.services.get("intake-status")
        if units is None or status is None:
            return False
        if self._hotline is None:
            published: list[tuple[str, Envelope[Any]]] = []

            async def publish(topic: str, envelope: Envelope[Any]) -> None:
                published.append((topic, envelope))
            self._hotline = build_api(publish=publish, engine=status.engine, catalogue=load_catalogue(), now=self.clock,
                                      verifier=verifier()), published
        api, published = self._hotline

        async def post() -> None:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://intake") as client:
                await post_due(client, units.engine, self.clock(), tokens=STAFF_TOKENS)
        asyncio.run(post())
        posted = [self.log.append(record_of(envelope, topic=topic)) for topic, envelope in published]
        published.clear()
        return bool(posted)

    # ------------------------------------------------------------ looking at the log

    def events(self, event_type: type[ev.Event] | None = None, ticket_id: str | None = None) -> list[Envelope[Any]]:
        """The log's events (each once: a task's record on the unit's topic is a copy of act's)."""
        seen, out = set(), []
        for r in self.log.records:
            wanted = (event_type is None or r.type == event_type.event_type) and ticket_id in (None, r.ticket_id)
            if wanted and r.id not in seen:
                seen.add(r.id)
                out.append(r.envelope())
        return out

    def last(self, event_type: type[ev.Event], ticket_id: str) -> Envelope[Any]:
        found = self.events(event_type, ticket_id)
        assert found, f"no {event_type.__name__} for {ticket_id} on the log"
        return found[-1]

    def open_tasks(self, ticket_id: str) -> list[Envelope[Any]]:
        """The TaskAssigned events of the ticket's last dispatch."""
        tasks = self.events(ev.TaskAssigned, ticket_id)
        if not tasks:
            return []
        last_cause = tasks[-1].causation_id
        return [t for t in tasks if t.causation_id == last_cause]

    # ------------------------------------------------------------ playing the units

    def work(self, ticket_id: str, *, complete: bool = True) -> None:
        """Every unit of the last dispatch signs for its task, reports progress and (unless told) completes."""
        for task in self.open_tasks(ticket_id):
            unit = task.data.unit
            self.add(sdk.sign_for(task, unit), sdk.progress(task, unit, "on site"))
            if complete:
                self.add(sdk.complete(task, unit, f"fixed by {unit}"))

    def answer(self, ticket_id: str, *, refuse: Iterable[str] = ()) -> None:
        """Every party answers the ticket's last consultation; those in `refuse` disagree."""
        request = self.last(ev.ConsultationRequested, ticket_id)
        refusing = set(refuse)
        for unit in request.data.parties:
            self.add(sdk.opinion(request, unit, unit not in refusing, proposed_lead="housing" if unit in refusing else None))


# ---------------------------------------------------------------------------------------------- the stories


def stories(hub: Hub) -> dict[str, str]:
    """One ticket down each branch of the lifecycle; returns what each ticket id stands for."""
    at = T0
    # Classified by the model with confidence, handled, the resident satisfied: closed. A repeat merged into it
    # meanwhile is closed with it.
    hub.add(submitted("T-HAPPY", "垃圾没人收 garbage not collected for three days", at=at))
    hub.add(submitted("T-REPEAT", "垃圾没人收 garbage not collected for three days again", at=at + timedelta(minutes=20),
                      phone="13900001111"))
    hub.work("T-HAPPY")
    hub.add(callback_submitted("T-HAPPY", 1, satisfied=True))
    # A joint action (lead and a co-unit); unsatisfied at the callback: reopened, handled again, then closed.
    hub.add(submitted("T-JOINT", "manhole cover missing on the pavement", category="city-management.manhole-cover",
                      grid="grid-west-1-a-1", at=at + timedelta(minutes=5)))
    hub.add(submitted("T-SPLIT", "manhole cover missing on the pavement near the school", grid="grid-west-1-a-1",
                      category="city-management.manhole-cover", at=at + timedelta(minutes=30)))
    hub.add(split_submitted("T-SPLIT"))
    hub.work("T-JOINT")
    hub.add(callback_submitted("T-JOINT", 1, satisfied=False))
    hub.work("T-JOINT")
    hub.add(callback_submitted("T-JOINT", 2, satisfied=True))
    # Unsure classifier: the manual-triage queue; an operator decides.
    hub.add(submitted("T-MANUAL", "有个事情想反映一下 something odd", grid="grid-east-2-a-1", at=at + timedelta(minutes=7)))
    hub.add(manual_triage_submitted("T-MANUAL", "city-management.street-cleaning"))
    # A category that needs consultation: every party agrees, the plan is dispatched with its deadline.
    hub.add(submitted("T-CONSULT", "楼上漏水物业不管 property dispute over a leak", category="housing.property-dispute",
                      grid="grid-east-1-b-1", at=at + timedelta(minutes=9)))
    hub.answer("T-CONSULT")
    hub.work("T-CONSULT")
    # A refusal: a supervisor decides (final); the lead's return is then rejected.
    hub.add(submitted("T-DISPUTE", "小区公共绿地被占 shared green space occupied", category="housing.property-dispute",
                      grid="grid-west-2-a-1", at=at + timedelta(minutes=11)))
    hub.answer("T-DISPUTE", refuse=["housing"])
    review = hub.last(ev.SupervisorReviewRequested, "T-DISPUTE")
    hub.add(supervisor_decision_submitted("T-DISPUTE", "street-west-2", co_units=["housing"],
                                          consultation_id=review.data.consultation_id))
    lead = next(t for t in hub.open_tasks("T-DISPUTE") if t.data.role == ev.Role.lead)
    hub.add(sdk.return_task(lead, lead.data.unit, "not ours"))
    # A return: rerouted without the returning unit (its co-unit leads); the new lead asks for more time, completes.
    hub.add(submitted("T-RETURN", "有人乱倒建筑垃圾 illegal dumping of rubble", category="city-management.illegal-dumping",
                      grid="grid-east-2-b-1", at=at + timedelta(minutes=13)))
    first = next(t for t in hub.open_tasks("T-RETURN") if t.data.role == ev.Role.lead)
    hub.add(sdk.return_task(first, first.data.unit, "this is the environment bureau's job", suggested_unit="environment"))
    task = hub.open_tasks("T-RETURN")[0]
    hub.add(sdk.sign_for(task, task.data.unit), sdk.request_extension(task, task.data.unit, 2, "wd", "waiting for a truck"))
    hub.add(sdk.complete(task, task.data.unit, "cleared"))
    # Ping-pong: returned again and again; after the second return the parties are convened; the third return
    # makes sla escalate to arbitration, and consult asks a supervisor.
    hub.add(submitted("T-PINGPONG", "工地夜间施工噪音 construction noise at night", category="city-management.construction-noise",
                      grid="grid-west-1-b-1", at=at + timedelta(minutes=15)))
    for _ in range(2):
        lead = next(t for t in hub.open_tasks("T-PINGPONG") if t.data.role == ev.Role.lead)
        hub.add(sdk.return_task(lead, lead.data.unit, "not ours"))
    hub.answer("T-PINGPONG")
    lead = next(t for t in hub.open_tasks("T-PINGPONG") if t.data.role == ev.Role.lead)
    hub.add(sdk.return_task(lead, lead.data.unit, "not ours either"))
    # The policy finds the person: a resident turning 70 gets a proactive ticket.
    hub.add(life_event("R-42", "birthday", age=70, at=at + timedelta(hours=1)))
    return {"T-HAPPY": "closed by a satisfied callback", "T-REPEAT": "merged into T-HAPPY, closed with it",
            "T-JOINT": "lead + co-unit, reopened once, closed", "T-SPLIT": "merged, then split",
            "T-MANUAL": "manual triage", "T-CONSULT": "consultation agreed", "T-DISPUTE": "supervisor decided, return rejected",
            "T-RETURN": "returned, rerouted, extended, handled", "T-PINGPONG": "returned three times: arbitration"}


# ---------------------------------------------------------------------------------------------- reading a log


def inputs(svc: ServiceHarness, log: Log, *tickets: str) -> list[Record]:
    """The log's records a service reads (its topics), in log order; only these tickets' when named."""
    return [r for r in log.records if svc.wants(r) and (not tickets or r.ticket_id in tickets)]


def of_type(records: Iterable[Record], event_type: type[ev.Event], ticket_id: str | None = None) -> list[Envelope[Any]]:
    """The events of this type among the records, each once (an event sent to several topics is one event)."""
    seen: set[str | None] = set()
    out = []
    for r in records:
        if r.type == event_type.event_type and (ticket_id is None or r.ticket_id == ticket_id) and r.id not in seen:
            seen.add(r.id)
            out.append(r.envelope())
    return out


def one(records: Iterable[Record], event_type: type[ev.Event], ticket_id: str | None = None) -> Envelope[Any]:
    found = of_type(records, event_type, ticket_id)
    assert len(found) == 1, f"expected one {event_type.__name__} for {ticket_id}, got {len(found)}"
    return found[0]


def story_hub(directory: Path) -> Hub:
    hub = Hub(directory)
    stories(hub)
    return hub


# ---------------------------------------------------------------------------------------------- delivery orders

ORIGINS = (ev.TicketSubmitted.event_type, ev.ResidentLifeEventRecorded.event_type)
COMMANDS = {command.event_type: fact.event_type for command, fact in ev.COMMAND_FACTS.items()}  # command -> its fact


def must_come_after(svc: ServiceHarness, records: Sequence[Record], log: Log) -> dict[str, set[str]]:
    """For each record the service reads, the ones it must have applied first in any order Kafka could deliver
    them in (topics are ordered one by one, not with each other):

    * the cause of anything the service itself published among the record and its ancestors (that could
      not have been produced before the service applied its cause);
    * for a person's action (a split, a decision, a callback: intake's command, an origin event other than an
      intake or a register's) and for the fact its step wrote for it, every record of its ticket logged
      before the command: the person acted on what the service had shown.
    """
    by_id = {}  # every event of the log: ancestries run through topics the service does not read
    position: dict[str | None, int] = {}
    for i, r in enumerate(log.records):
        by_id.setdefault(r.id, r.envelope())
        position.setdefault(r.id, i)
    ids = {r.id for r in records}
    after: dict[str, set[str]] = {}
    for r in records:
        needs: set[str] = set()
        seen: set[str] = set()
        event: str | None = r.id  # the record itself may be one the service published (it reads its own topic)
        while event and event in by_id and event not in seen:
            seen.add(event)
            ancestor = by_id[event]
            if ancestor.source == svc.source and ancestor.causation_id in ids:
                needs.add(ancestor.causation_id)
            event = ancestor.causation_id
        command = _persons_action(by_id, r.id)
        if command is not None:
            needs |= {x.id for x in records if x.ticket_id == r.ticket_id and position[x.id] < position[command]}
        after[r.id] = needs
    return after


def _persons_action(by_id: dict[str | None, Envelope[Any]], event_id: str | None) -> str | None:
    """The id of the person's command this event is, or is the fact of (the step's record of it), else None."""
    event = by_id[event_id]
    if event.causation_id is None:
        return event_id if event.type not in ORIGINS else None
    cause = by_id.get(event.causation_id)
    if cause is not None and cause.causation_id is None and cause.type in COMMANDS and event.type == COMMANDS[cause.type]:
        return event.causation_id
    return None


def delivery_order(records: Sequence[Record], after: dict[str, set[str]], rng: Any) -> list[Record]:
    """One order Kafka could deliver the records in: each topic's in its own order, topics interleaved in runs
    of random length, nothing before what it must come after (`must_come_after`)."""
    queues: dict[str, list[Record]] = {}
    for r in records:
        queues.setdefault(r.topic, []).append(r)
    done: set[str] = set()
    out: list[Record] = []
    while any(queues.values()):
        ready = [t for t, q in queues.items() if q and after[q[0].id] <= done]
        queue = queues[rng.choice(ready)]
        for _ in range(rng.randint(1, 6)):
            if not queue or not after[queue[0].id] <= done:
                break
            record = queue.pop(0)
            out.append(record)
            done.add(record.id)
    return out
