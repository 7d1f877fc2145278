"""Triage decisions: which category, which route, whether the parties must consult, or a person must decide.
Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts import events as ev
from domain.catalogue import Catalogue
from domain.consultation import consultation_cue
from domain.grid_workers import areas_below

CATALOGUE_REASON = "the catalogue requires consultation"


@dataclass(frozen=True)
class CategoryChoice:
    category: str | None
    confidence: float
    method: str
    candidates: tuple[tuple[str, float], ...]
    reason: str = ""
    consultation_reason: str | None = None  # set when the text says several parties must agree


def choose_category(ticket: ev.RegisteredTicket, classifier: Any, catalogue: Catalogue, min_confidence: float) -> CategoryChoice:
    """The operator's choice wins; otherwise the classifier's, if it is sure enough and the catalogue knows it.

    A text that says several parties must agree (domain.consultation) goes to consultation whatever its
    category; an unsure classifier then does not send it to manual triage, where an operator could only
    convene the same consultation: its best catalogue category routes it, and the parties settle the plan."""
    consult = text_consultation_reason(ticket)
    if ticket.category and catalogue.has_category(ticket.category):
        return CategoryChoice(ticket.category, 1.0, "rule" if ticket.proactive_rule else "operator", (),
                              consultation_reason=consult)
    p = classifier.predict(ticket.text)
    candidates = ((p.category, round(p.confidence, 4)), *((c, round(x, 4)) for c, x in p.alternatives[:2]))
    if not catalogue.has_category(p.category):
        return CategoryChoice(None, p.confidence, "model", candidates, f"model label {p.category!r} is not in the catalogue")
    if p.confidence < min_confidence:
        low = f"low confidence {p.confidence:.2f} < {min_confidence:.2f}"
        if consult is None:
            return CategoryChoice(None, p.confidence, "model", candidates, low)
        consult = f"{consult} ({low}: the consultation settles the plan)"
    return CategoryChoice(p.category, p.confidence, "model", candidates, consultation_reason=consult)


def text_consultation_reason(ticket: ev.RegisteredTicket) -> str | None:
    """Why the ticket's text needs consultation, or None."""
    cue = consultation_cue(ticket.text)
    return cue.reason if cue else None


def limits_of(catalogue: Catalogue, category: str) -> ev.Limits:
    lim = catalogue.category(category).limits
    spec = lambda t: ev.TimeLimitSpec(amount=t.amount, unit=t.unit)  # noqa: E731
    return ev.Limits(sign_for=spec(lim.sign_for), response=spec(lim.response), resolution=spec(lim.resolution))


def classified(ticket: ev.RegisteredTicket, category: str, confidence: float, method: str, catalogue: Catalogue,
               excluding: tuple[str, ...] = (), consultation_reason: str | None = None,
               model_version: str | None = None,
               escalation_reason: ev.EscalationReason | None = None) -> ev.TicketClassified:
    """The classification event; ``consultation_reason`` convenes the parties whatever the catalogue says."""
    route = catalogue.route(category, ticket.location, excluding=excluding)
    reason = consultation_reason or (CATALOGUE_REASON if route.needs_consultation else None)
    routing = ev.Routing(lead=route.lead, co_units=tuple(route.co_units), level=route.level)
    grid = proactive_grid(ticket, catalogue, excluding)
    if grid is not None:
        # The policy finds the person: the resident's grid worker goes to the door, the department assists.
        routing = ev.Routing(lead=grid, co_units=tuple(u for u in (route.lead, *route.co_units) if u != grid), level="grid")
        reason = consultation_reason
    return ev.TicketClassified(
        category=category, confidence=confidence, method=method, catalogue_version=catalogue.version,
        routing=routing,
        needs_consultation=reason is not None, limits=limits_of(catalogue, category),
        excluded_units=tuple(excluding), ticket=ticket, model_version=model_version, consultation_reason=reason,
        escalation_reason=escalation_reason,
    )


def proactive_grid(ticket: ev.RegisteredTicket, catalogue: Catalogue, excluding: tuple[str, ...]) -> str | None:
    """The unit of the resident's grid for a proactive ticket (None: not proactive, no known grid, or the
    grid returned it, which then goes the category's way)."""
    if not ticket.proactive_rule:
        return None
    grid = next((a.id for a in catalogue.area_chain(ticket.location) if a.level == "grid"), None)
    if grid is None or grid in excluding:
        return None
    try:
        return catalogue.unit(grid).id
    except LookupError:
        return None


def escalation_exclusions(catalogue: Catalogue, location: ev.Location, to_level: str) -> tuple[str, ...]:
    """The area units below `to_level` in the ticket's area chain: excluding them routes an area matter to the
    area of `to_level` (the catalogue's routing climbs the chain past excluded areas)."""
    chain = [(area.id, area.level) for area in catalogue.area_chain(location)]
    return areas_below(chain, to_level)
