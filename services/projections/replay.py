"""Supervisor replays: one ticket's story, the events of a time range, and state as of a past time.

Each can read the log itself (Kafka, or the archive after a broker was replaced) or the stored
timelines of a projection store; both go through the same fold, so they agree. As-of results are
a function of the log up to the time asked for (events with event time <= T), not of the wall
clock of whoever processed them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from contracts import events as ev
from contracts.envelope import Envelope, Event
from services.common.progress import Meter, NullMeter

from . import queries
from .domain import (PROJECTED_TYPES, Fact, Folded, Holding, Ranked, aggregate, as_utc, event_units, fold, holdings,
                     parse_facts, rank, task_row, ticket_row, timeline_row)
from .logsource import KafkaLog, LogRecord, LogSource, Position, decode_wanted
from .queries import ENTRY_COLUMNS, EventFilter

_WANTED = frozenset(t.encode() for t in PROJECTED_TYPES)


# ---------------------------------------------------------------------------------------------- scanning the log

async def scan(log: LogSource, *, meter: Meter | None = None, keep: Callable[[LogRecord], bool] | None = None,
               start: dict[Position, int] | None = None, batch: int = 5000,
               label: str = "scan") -> AsyncIterator[tuple[LogRecord, Envelope[Any]]]:
    """Every decodable ticket event of the log (from `start`, default the beginning), with its record."""
    meter = meter or NullMeter()
    first, end = await log.bounds()
    begin = {tp: max((start or {}).get(tp, first.get(tp, 0)), first.get(tp, 0)) for tp in end}
    meter.phase(label, sum(max(end[tp] - begin[tp], 0) for tp in end))
    try:
        async for records, positions in log.batches(begin, end, batch):
            wanted = [r for r in records if keep is None or keep(r)]
            decoded, _ = decode_wanted(wanted, _WANTED)
            for record, envelope in decoded:
                yield record, envelope
            meter.advance(sum(positions[tp] - begin[tp] for tp in positions))
            begin.update(positions)
    finally:
        meter.close()
        await log.close()


def _key_is(ticket_id: str) -> Callable[[LogRecord], bool]:
    key = ticket_id.encode()
    return lambda r: r.key == key or r.header("ce_ticketid") == key


# ---------------------------------------------------------------------------------------------- story

@dataclass
class Story:
    """A ticket's whole story: every event in order, who held it and for how long, where it stands."""

    ticket_id: str
    source: str
    entries: list[dict[str, Any]]
    folded: Folded | None

    @property
    def holdings(self) -> list[Holding]:
        return holdings(self.folded) if self.folded else []

    def holdings_until(self, now: datetime) -> list[Holding]:
        return holdings(self.folded, now) if self.folded else []

    def as_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "ticket_id": self.ticket_id, "source": self.source,
            "state": ticket_row(self.folded.ticket) if self.folded else None,
            "tasks": [task_row(k) for k in self.folded.tasks] if self.folded else [],
            "events": self.entries,
            "holders": [{"holder": h.holder, "kind": h.kind, "clock": h.clock, "role": h.role, "round": h.round,
                         "start": h.start, "end": h.end, "to": h.end or now, "open": h.end is None,
                         "seconds": round(h.duration(now).total_seconds()), "ended_by": h.ended_by}
                        for h in self.holdings_until(now)],
        }


def _entry(fact: Fact, position: str | None = None, *, refused: bool = False) -> dict[str, Any]:
    row = timeline_row(fact)
    entry = {name: row[name] for name in ENTRY_COLUMNS}
    if refused:  # on the log, but not the task's unit's to send: the fold left it out (domain.reports)
        entry["summary"] = f"{REFUSED}{entry['summary']}"
    if position is not None:
        entry["position"] = position
    return entry


REFUSED = "refused, not the task's unit: "


def story_from_facts(ticket_id: str, source: str, facts: Iterable[tuple[Fact, str | None]]) -> Story:
    unique: dict[str, tuple[Fact, str | None]] = {}
    for fact, position in facts:
        unique.setdefault(fact.id, (fact, position))  # a redelivered copy adds nothing to the story
    ordered = sorted(unique.values(), key=lambda item: item[0].sort_key)
    folded = fold([f for f, _ in ordered], ticket_id)
    folded_ids = {f.id for f in folded.facts} if folded else set()
    return Story(ticket_id, source, [_entry(f, p, refused=f.id not in folded_ids) for f, p in ordered], folded)


async def story_from_log(log: LogSource, ticket_id: str, meter: Meter | None = None) -> Story:
    """Read the ticket's events from the log itself (every partition of every workflow topic)."""
    found = [(Fact.from_envelope(env), f"{rec.topic}/{rec.partition}@{rec.offset}")
             async for rec, env in scan(log, meter=meter, keep=_key_is(ticket_id), label=f"story {ticket_id}")]
    return story_from_facts(ticket_id, log.description, found)


def story_from_store(engine: Engine, ticket_id: str) -> Story:
    facts = parse_facts(list(queries.stored_rows(engine, [ticket_id], None)))
    return story_from_facts(ticket_id, f"store {engine.url.render_as_string(hide_password=True)}",
                            [(f, None) for f in facts])


# ---------------------------------------------------------------------------------------------- events in a range

def location_of(data: Event) -> ev.Location | None:
    if isinstance(data, (ev.TicketSubmitted, ev.TicketHandled)):
        return data.location
    ticket = getattr(data, "ticket", None) if "ticket" in type(data).model_fields else None
    return ticket.location if isinstance(ticket, ev.RegisteredTicket) else None


async def events_from_log(log: LogSource, flt: EventFilter, meter: Meter | None = None) -> list[dict[str, Any]]:
    """Events of the log matching the filter, in time order, each with the ticket's district.

    A district filter needs each ticket's location, which its early events carry, so the scan then
    starts at the beginning; otherwise it starts at the records stamped at or after `since`
    (records are stamped when published, never before the event happened)."""
    start = None
    if flt.since is not None and flt.district is None and isinstance(log, KafkaLog):
        start = await log.offsets_at(int(as_utc(flt.since).timestamp() * 1000))
    types = flt.type_names() if flt.types else None
    district_of: dict[str, str | None] = {}
    found: dict[str, dict[str, Any]] = {}
    async for record, envelope in scan(log, meter=meter, start=start, label="events"):
        location = location_of(envelope.data)
        if location is not None and (location.district or envelope.ticket_id not in district_of):
            district_of[envelope.ticket_id] = location.district
        if not _matches(flt, types, envelope):
            continue
        entry = _entry(Fact.from_envelope(envelope), f"{record.topic}/{record.partition}@{record.offset}")
        found.setdefault(envelope.id, entry)
    rows = sorted(found.values(), key=lambda e: (e["time"], e["type"], e["event_id"]))
    for row in rows:
        row["district"] = district_of.get(row["ticket_id"])
    if flt.district:
        rows = [r for r in rows if r["district"] == flt.district]
    return rows[: flt.limit] if flt.limit else rows


def _matches(flt: EventFilter, types: set[str] | None, envelope: Envelope[Any]) -> bool:
    if not flt.in_range(envelope.time) or (types is not None and envelope.type not in types):
        return False
    if flt.ticket_id and envelope.ticket_id != flt.ticket_id:
        return False
    if flt.unit:
        return flt.unit in event_units(envelope.data)
    return True


# ---------------------------------------------------------------------------------------------- as of

@dataclass
class AsOf:
    """State as it stood at `at`: a ticket (with its tasks), a unit's queue, or the rankings."""

    at: datetime
    source: str
    ticket: dict[str, Any] | None = None
    tasks: list[dict[str, Any]] = field(default_factory=list)
    queue: list[dict[str, Any]] = field(default_factory=list)
    rankings: list[Ranked] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)  # with the rankings: how many tickets stood in each state

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at, "source": self.source, "ticket": self.ticket, "tasks": self.tasks, "queue": self.queue,
                "rankings": [r.as_dict() for r in self.rankings], "states": self.states}


@dataclass(frozen=True)
class AsOfQuestion:
    at: datetime
    ticket_id: str | None = None
    unit: str | None = None
    rankings: bool = False
    scope: str | None = None
    min_n: int = 20


@dataclass(frozen=True)
class Settled:
    """What the tickets not folded add to an as-of answer: their states, summed metric contributions and the unit's
    open tasks (read from the stored rows, which are the fold of the same events), and which folded tickets those
    already count."""

    states: dict[str, int]
    contributions: list[tuple[str, str, dict[str, int]]]
    queue: list[dict[str, Any]]
    counted: Callable[[str], bool]


def answer_from_groups(question: AsOfQuestion, source: str, groups: Iterable[list[Fact]],
                       settled: Settled | None = None) -> AsOf:
    """Fold each ticket's facts up to the time and read off what was asked (with `settled`, the rankings and states
    of the tickets it counts come from it, not from their folds)."""
    at = as_utc(question.at)
    answer = AsOf(at, source)
    contributions: list[tuple[str, str, dict[str, int]]] = list(settled.contributions) if settled else []
    queue: list[dict[str, Any]] = list(settled.queue) if settled else []
    states: Counter[str] = Counter(settled.states if settled else {})
    for facts in groups:
        folded = fold([f for f in facts if f.time <= at])
        if folded is None:
            continue
        if question.ticket_id and folded.ticket.ticket_id == question.ticket_id:
            answer.ticket = ticket_row(folded.ticket)
            answer.tasks = [task_row(k) for k in folded.tasks]
        if settled and settled.counted(folded.ticket.ticket_id):
            continue
        if question.unit:
            queue += [task_row(k) for k in folded.tasks if k.unit == question.unit and k.open]
        if question.rankings:
            contributions += [(s, k, c) for (s, k), c in folded.metrics.items() if question.scope in (None, s)]
            states[str(folded.ticket.status.value)] += 1
    answer.states = dict(sorted(states.items()))
    answer.queue = sorted(queue, key=lambda k: (k["assigned_at"] or at, k["task_id"]))
    if question.rankings:
        answer.rankings = rank(aggregate(contributions), question.min_n)
    return answer


def _grouped(facts: Iterable[Fact]) -> list[list[Fact]]:
    groups: dict[str, list[Fact]] = defaultdict(list)
    for fact in facts:
        groups[fact.ticket_id].append(fact)
    return [groups[k] for k in sorted(groups)]


def as_of_store(engine: Engine, question: AsOfQuestion) -> AsOf:
    """As of, from the stored timelines of a projection store.

    A unit's queue and the city (rankings) fold only the tickets with events after the time: a ticket whose every
    event is by then stood as it stands now, so its stored rows (the fold of those same events) are read in SQL.
    Folding them all took minutes for the city, seconds for a busy unit's queue, at 100,000 tickets."""
    at = as_utc(question.at)
    source = f"store {engine.url.render_as_string(hide_password=True)}"
    asked = {question.ticket_id} if question.ticket_id else set()
    if not (question.rankings or question.unit):
        return answer_from_groups(question, source, _stream_groups(queries.stored_rows(engine, sorted(asked), at)))
    later = set(queries.ticket_ids_active_after(engine, at))
    states, sums = queries.settled_by(engine, at, question.scope) if question.rankings else ({}, [])
    queue = queries.settled_queue(engine, question.unit, at) if question.unit else []
    settled = Settled(states, sums, queue, counted=lambda ticket_id: ticket_id not in later)
    refold = later if question.rankings else \
        later & set(queries.ticket_ids_with_unit(engine, question.unit or "", at, open_only=True))
    groups = _stream_groups(queries.stored_rows(engine, sorted(refold | asked), at))
    return answer_from_groups(question, source, groups, settled)


def _stream_groups(rows: Iterable[Any]) -> Iterable[list[Fact]]:
    """Rows arrive ordered by ticket: fold one ticket at a time instead of holding the whole log."""
    current: list[Any] = []
    for row in rows:
        if current and row["ticket_id"] != current[-1]["ticket_id"]:
            yield parse_facts(current)
            current = []
        current.append(dict(row))
    if current:
        yield parse_facts(current)


async def as_of_log(log: LogSource, question: AsOfQuestion, meter: Meter | None = None) -> AsOf:
    """As of, from the log itself."""
    at = as_utc(question.at)
    keep = _key_is(question.ticket_id) if question.ticket_id and not (question.unit or question.rankings) else None
    facts = [Fact.from_envelope(env) async for _, env in scan(log, meter=meter, keep=keep, label="as-of")
             if as_utc(env.time) <= at]
    return answer_from_groups(question, log.description, _grouped(facts))
