"""The pure heart of the projections, split by concern; this module gathers their public names.

* `facts`: what the fold needs of one event, the lifecycle order, time helpers;
* `state`: the ticket and task rows the fold produces;
* `fold`: events -> state, tasks and metric contributions (order-independent, total);
* `timeline`: per-event units, round and summary;
* `holders`: who held the ticket when (the rule of `domain.holders`);
* `rankings`: rates and rankings from summed counters (the rates of `domain.rates`).

No I/O here; `store` writes the results, `replay` reads them.
"""

from __future__ import annotations

from domain.statuses import OPEN_TASK_STATES, TaskStatus, TicketStatus

from .facts import KIND, PROJECTED_TYPES, TOPIC, TYPE_RANK, Fact, as_utc, db_time, is_projected, parse_facts, stored_payload
from .fold import fold, nominal_due, use_calendar
from .holders import Holding, holdings
from .rankings import RATES, Ranked, aggregate, rank, rates_of, score_of
from .state import Callback, Folded, TaskState, TicketState, task_row, ticket_row
from .timeline import event_round, event_units, summary, timeline_row

# Ticket states in lifecycle order (`domain.statuses.TicketStatus` defines and documents each).
STATUSES: tuple[str, ...] = tuple(s.value for s in TicketStatus)

__all__ = [
    "KIND", "OPEN_TASK_STATES", "PROJECTED_TYPES", "RATES", "STATUSES", "TOPIC", "TYPE_RANK", "Callback", "Fact",
    "Folded", "Holding", "Ranked", "TaskState", "TaskStatus", "TicketState", "TicketStatus", "aggregate", "as_utc",
    "db_time", "event_round", "event_units", "fold", "holdings", "is_projected", "nominal_due", "parse_facts", "rank",
    "rates_of", "score_of", "stored_payload", "summary", "task_row", "ticket_row", "timeline_row", "use_calendar",
]
