"""Triage decisions: which category, which route, or a person must decide. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts import events as ev
from domain.catalogue import Catalogue


@dataclass(frozen=True)
class CategoryChoice:
    category: str | None
    confidence: float
    method: str
    candidates: tuple[tuple[str, float], ...]
    reason: str = ""


def choose_category(ticket: ev.RegisteredTicket, classifier: Any, catalogue: Catalogue, min_confidence: float) -> CategoryChoice:
    """The operator's choice wins; otherwise the classifier's, if it is sure enough and the catalogue knows it."""
    if ticket.category and catalogue.has_category(ticket.category):
        return CategoryChoice(ticket.category, 1.0, "rule" if ticket.proactive_rule else "operator", ())
    p = classifier.predict(ticket.text)
    candidates = ((p.category, round(p.confidence, 4)), *((c, round(x, 4)) for c, x in p.alternatives[:2]))
    if not catalogue.has_category(p.category):
        return CategoryChoice(None, p.confidence, "model", candidates, f"model label {p.category!r} is not in the catalogue")
    if p.confidence < min_confidence:
        return CategoryChoice(None, p.confidence, "model", candidates, f"low confidence {p.confidence:.2f} < {min_confidence:.2f}")
    return CategoryChoice(p.category, p.confidence, "model", candidates)


def limits_of(catalogue: Catalogue, category: str) -> ev.Limits:
    lim = catalogue.category(category).limits
    spec = lambda t: ev.TimeLimitSpec(amount=t.amount, unit=t.unit)  # noqa: E731
    return ev.Limits(sign_for=spec(lim.sign_for), response=spec(lim.response), resolution=spec(lim.resolution))


def classified(ticket: ev.RegisteredTicket, category: str, confidence: float, method: str, catalogue: Catalogue,
               excluding: tuple[str, ...] = (), force_consultation: bool = False) -> ev.TicketClassified:
    route = catalogue.route(category, ticket.location, excluding=excluding)
    return ev.TicketClassified(
        category=category, confidence=confidence, method=method, catalogue_version=catalogue.version,
        routing=ev.Routing(lead=route.lead, co_units=tuple(route.co_units), level=route.level),
        needs_consultation=bool(route.needs_consultation or force_consultation), limits=limits_of(catalogue, category),
        excluded_units=tuple(excluding), ticket=ticket,
    )
