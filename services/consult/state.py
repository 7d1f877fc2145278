"""consult's working state for one batch: the routings and consultations its events touch, loaded with one
query per table, changed in memory as plain rows, written with one statement per table and kind of change
(services/common/batch_state.py; the pipeline runs the batch through the spec's `Batched` hooks).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam
from sqlalchemy.engine import Connection

from services.common.batch_state import TableRows, table_of
from services.common.direct_sql import select_rows

from .models import Consultation, RoutedTicket

_ROUTED = table_of(RoutedTicket)
_CONSULTATIONS = table_of(Consultation)
# The open consultations whose opinions are late (the tick's query), built once.
_OPEN_AND_DUE = _CONSULTATIONS.select().where(_CONSULTATIONS.c.status == "open",
                                             _CONSULTATIONS.c.opinions_due <= bindparam("now"))


@dataclass(slots=True)
class RoutedRow:
    """A row of consult_routed_tickets (same columns and defaults as `RoutedTicket`)."""

    ticket_id: str
    routing_json: str
    arbitrations: int = 0


@dataclass(slots=True)
class ConsultationRow:
    """A row of consultations (same columns and defaults as `Consultation`)."""

    consultation_id: str
    ticket_id: str
    status: str
    parties: str
    opinions_json: str
    opinions_due: datetime
    request_json: str


@dataclass
class ConsultBatch:
    """The routings and consultations of a batch (`TableRows` each). A ticket's consultations are loaded all
    together, so "the ticket's open consultations" is answered in memory, new ones of the batch included."""

    connection: Connection
    routed: TableRows[RoutedRow] = field(init=False)
    consultations: TableRows[ConsultationRow] = field(init=False)
    _tickets_loaded: set[str] = field(default_factory=set)  # tickets whose consultations are all in memory

    def __post_init__(self) -> None:
        self.routed = TableRows(self.connection, _ROUTED, RoutedRow)
        self.consultations = TableRows(self.connection, _CONSULTATIONS, ConsultationRow)

    def load(self, ticket_ids: Iterable[str], consultation_ids: Iterable[str | None] = ()) -> None:
        """Load these tickets' routings and consultations, and the named consultations (an opinion names its
        own, normally one of its ticket's: then nothing more is read)."""
        wanted = [t for t in dict.fromkeys(ticket_ids) if t not in self._tickets_loaded]
        if wanted:
            self.routed.load(wanted)
            self.consultations.load(wanted, by="ticket_id")
            self._tickets_loaded.update(wanted)
        named = [c for c in dict.fromkeys(consultation_ids) if c is not None and not self.consultations.known(c)]
        if named:
            self.consultations.load(named)

    def of_ticket(self, ticket_id: str, statuses: frozenset[str]) -> list[ConsultationRow]:
        """The ticket's consultations in one of these statuses, as the batch has them."""
        self.load([ticket_id])
        return [row for row in self.consultations.values() if row.ticket_id == ticket_id and row.status in statuses]

    def open_and_due(self, now: datetime) -> list[ConsultationRow]:
        """The open consultations whose opinions were due by `now` (the tick's)."""
        rows = []
        for values in select_rows(self.connection, _OPEN_AND_DUE, {"now": now}):
            row = self.consultations.rows.get(values[0])
            rows.append(row if row is not None else self.consultations.adopt(values))
        return rows

    def write(self) -> None:
        self.routed.write()
        self.consultations.write()
