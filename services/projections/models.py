"""The projection tables. Every row is derived from the log; none carries a processing time.

Datetimes are aware UTC (SQLModel's UTCDateTime: `timestamptz` on PostgreSQL, UTC text on SQLite),
so the checksum reads the same value back from both stores.

The schema is owned by Alembic (`migrations/`); a test compares these models with the migrated
schema, so a model change without a migration fails.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, Text
from sqlmodel import Field, SQLModel

from services.common.batch_state import table_of


class ProjTicket(SQLModel, table=True):
    """A ticket's current state: where it is in its lifecycle, who holds it, its deadlines."""

    __tablename__ = "proj_tickets"
    __table_args__ = (Index("ix_proj_tickets_status", "status"), Index("ix_proj_tickets_district", "district"),
                      Index("ix_proj_tickets_lead_unit", "lead_unit"), Index("ix_proj_tickets_grid", "grid", "status", "overdue"),
                      Index("ix_proj_tickets_status_overdue", "status", "overdue"),
                      Index("ix_proj_tickets_submitted", "submitted_at", "ticket_id"),
                      Index("ix_proj_tickets_last_event", "last_event_at", "ticket_id"),
                      Index("ix_proj_tickets_proactive", "proactive_rule", "status"))

    ticket_id: str = Field(primary_key=True, description="Ticket id (the record key).")
    status: str = Field(description="Lifecycle state, see domain.STATUSES.")
    channel: str | None = Field(default=None, description="How the request arrived.")
    proactive_rule: str | None = Field(default=None, description="The proactive rule that raised it (the board's coverage).")
    external_id: str | None = Field(default=None, description="Id in the originating system (imports, Open311).")
    text: str | None = Field(default=None, sa_column=Column(Text), description="The request text (no caller details).")
    urgency: str | None = Field(default=None, description="normal / urgent / emergency.")
    category: str | None = Field(default=None, description="Catalogue category code.")
    catalogue_version: str | None = Field(default=None, description="Catalogue version of the last classification.")
    classified_by: str | None = Field(default=None, description="operator / model / manual / reroute / rule.")
    district: str | None = Field(default=None)
    street: str | None = Field(default=None)
    community: str | None = Field(default=None)
    grid: str | None = Field(default=None)
    lead_unit: str | None = Field(default=None, description="Lead unit (主办) of the current round.")
    co_units: str = Field(default="", description="Co-units (协办) of the current round, comma-separated.")
    level: str | None = Field(default=None, description="Level the ticket is handled at.")
    round: int = Field(default=0, description="Current handling round (0 before dispatch).")
    final: bool = Field(default=False, description="Assigned final by a supervisor: may not be returned.")
    master_ticket_id: str | None = Field(default=None, description="Master ticket while merged.")
    limits: str | None = Field(default=None, description="sign-for / response / resolution limits, e.g. 1wd/5wd/13wd.")
    sign_for_due: datetime | None = Field(default=None, description="Lead task's sign-for deadline, when the log states it.")
    response_due: datetime | None = Field(default=None, description="Lead task's response deadline, when the log states it.")
    resolution_due: datetime | None = Field(default=None, description="Lead task's resolution deadline (agreed or stated).")
    overdue: bool = Field(default=False, description="A clock of the ticket ran out.")
    breaches: int = Field(default=0)
    reminders: int = Field(default=0)
    escalations: int = Field(default=0)
    escalated_to: str | None = Field(default=None, description="Unit or level it was last escalated to.")
    reported_by: str | None = Field(default=None, description="Grid worker id who found it on patrol.")
    handled_level: str | None = Field(default=None, description="Level of the lead that handled the last round.")
    on_the_spot: bool = Field(default=False, description="A grid worker resolved it on the spot (就地解决).")
    escalated_up: bool = Field(default=False, description="An area unit escalated it up the area chain (上报).")
    returns: int = Field(default=0, description="Times a unit returned it.")
    reroutes: int = Field(default=0)
    reopens: int = Field(default=0, description="Times it was sent back for re-handling.")
    extensions: int = Field(default=0, description="Extensions granted.")
    outcome: str | None = Field(default=None, description="How it was closed.")
    resolved: bool | None = Field(default=None, description="Last callback: resolved?")
    satisfaction: str | None = Field(default=None, description="Last callback's satisfaction.")
    reasonable_demand: bool | None = Field(default=None, description="Last callback: was the demand reasonable?")
    submitted_at: datetime | None = Field(default=None)
    registered_at: datetime | None = Field(default=None)
    classified_at: datetime | None = Field(default=None)
    dispatched_at: datetime | None = Field(default=None, description="First task assigned.")
    signed_for_at: datetime | None = Field(default=None, description="First sign-for by the lead.")
    handled_at: datetime | None = Field(default=None, description="Last round handled.")
    closed_at: datetime | None = Field(default=None)
    last_event_at: datetime | None = Field(default=None)
    events: int = Field(default=0, description="Events in its timeline.")


class ProjTask(SQLModel, table=True):
    """One unit's task on a ticket (one per unit and round); the open ones form the unit's queue."""

    __tablename__ = "proj_tasks"
    __table_args__ = (Index("ix_proj_tasks_unit_open", "unit", "open"), Index("ix_proj_tasks_ticket_id", "ticket_id"))

    task_id: str = Field(primary_key=True)
    ticket_id: str
    unit: str
    role: str = Field(description="lead or co.")
    round: int
    final: bool = Field(default=False)
    category: str | None = Field(default=None)
    status: str = Field(description="assigned / signed-for / in-progress / waiting-on-resident / completed / returned / withdrawn / closed.")
    open: bool = Field(description="Still in the unit's queue.")
    dispatch_id: str | None = Field(default=None, description="Id of the event that dispatched it; tasks of one dispatch share it.")
    assigned_at: datetime | None = Field(default=None)
    signed_for_at: datetime | None = Field(default=None)
    first_progress_at: datetime | None = Field(default=None)
    completed_at: datetime | None = Field(default=None)
    ended_at: datetime | None = Field(default=None, description="When it left the queue.")
    limits: str | None = Field(default=None)
    sign_for_due: datetime | None = Field(default=None)
    response_due: datetime | None = Field(default=None)
    resolution_due: datetime | None = Field(default=None)
    breached: str = Field(default="", description="Clocks that ran out, comma-separated.")
    reminders: int = Field(default=0)
    returns: int = Field(default=0, description="Return attempts (a rejected one included).")
    extensions_requested: int = Field(default=0)
    extensions_granted: int = Field(default=0)


class ProjTimelineEntry(SQLModel, table=True):
    """One event of a ticket: the ticket's timeline, and the stored log a refold reads."""

    __tablename__ = "proj_timeline"
    __table_args__ = (Index("ix_proj_timeline_ticket_id", "ticket_id"), Index("ix_proj_timeline_time", "time"),
                      Index("ix_proj_timeline_unit", "unit"), Index("ix_proj_timeline_kind_time", "kind", "time"))

    event_id: str = Field(primary_key=True)
    ticket_id: str
    time: datetime = Field(description="When the fact happened (event time, UTC).")
    type_rank: int = Field(description="Lifecycle rank of the type: breaks ties between events of the same instant.")
    type: str = Field(description="CloudEvents type.")
    kind: str = Field(description="Short name of the type, e.g. TaskAssigned.")
    topic: str = Field(description="Catalogue topic the type travels on.")
    unit: str | None = Field(default=None, description="The unit the event is about, if any.")
    units: str = Field(default="", description="Every unit involved, as ,a,b, (for filtering).")
    round: int | None = Field(default=None)
    summary: str = Field(sa_column=Column(Text, nullable=False))
    source: str
    correlation_id: str
    causation_id: str | None = Field(default=None)
    payload: str = Field(sa_column=Column(Text, nullable=False), description="Event data as JSON, caller details removed.")


_COUNTER_COLUMNS = ("tasks", "response_n", "responded", "returned", "completed", "on_time", "handled", "rehandled",
                    "callbacks", "resolved", "rated", "satisfied")


class ProjTicketMetric(SQLModel, table=True):
    """One ticket's contribution to the evaluation metrics of one unit, grid or district.

    Rankings are sums of these; keeping contributions per ticket lets a refold replace a ticket's
    share exactly, in any order.
    """

    __tablename__ = "proj_ticket_metrics"
    # Covering: the rankings' sums per (scope, key) and the trend's per-ticket join read no table row (0003).
    __table_args__ = (Index("ix_proj_ticket_metrics_scope_key", "scope", "key"),
                      Index("ix_proj_ticket_metrics_sums", "scope", "key", *_COUNTER_COLUMNS),
                      Index("ix_proj_ticket_metrics_by_ticket", "ticket_id", "scope", *_COUNTER_COLUMNS))

    ticket_id: str = Field(primary_key=True)
    scope: str = Field(primary_key=True, description="unit, grid or district.")
    key: str = Field(primary_key=True, description="The unit, grid or district id.")
    tasks: int = Field(default=0, description="Tasks assigned.")
    response_n: int = Field(default=0, description="Tasks whose sign-for is decided (signed, or its clock ran out).")
    responded: int = Field(default=0, description="Tasks signed for within the sign-for limit.")
    returned: int = Field(default=0, description="Returns (退单).")
    completed: int = Field(default=0, description="Tasks completed.")
    on_time: int = Field(default=0, description="Tasks completed without breaching the resolution limit.")
    handled: int = Field(default=0, description="Handling rounds completed.")
    rehandled: int = Field(default=0, description="Rounds sent back for re-handling (重办).")
    callbacks: int = Field(default=0, description="Callbacks recorded.")
    resolved: int = Field(default=0, description="Callbacks: resolved.")
    rated: int = Field(default=0, description="Callbacks on reasonable demands (counted for satisfaction).")
    satisfied: int = Field(default=0, description="Rated callbacks: satisfied or basically satisfied.")


class ProjRebuildPosition(SQLModel, table=True):
    """Where a rebuild has read to, per partition, committed with the rows it loaded (resumable)."""

    __tablename__ = "proj_rebuild_positions"

    topic: str = Field(primary_key=True)
    partition: int = Field(primary_key=True)
    next_offset: int = Field(sa_type=BigInteger, description="First offset not yet loaded.")


class ProjRebuildPending(SQLModel, table=True):
    """Tickets a rebuild has loaded events for but not folded yet."""

    __tablename__ = "proj_rebuild_pending"

    ticket_id: str = Field(primary_key=True)


class ProjMeta(SQLModel, table=True):
    """Facts about this projection store (e.g. that it is a rebuild, and of what)."""

    __tablename__ = "proj_meta"

    key: str = Field(primary_key=True)
    value: str = Field(sa_column=Column(Text, nullable=False))


VIEW_TABLES = [table_of(ProjTicket), table_of(ProjTask), table_of(ProjTimelineEntry), table_of(ProjTicketMetric)]
REBUILD_TABLES = [table_of(ProjRebuildPosition), table_of(ProjRebuildPending), table_of(ProjMeta)]
PROJECTION_TABLES = VIEW_TABLES + REBUILD_TABLES
PROJECTION_TABLE_NAMES = frozenset(t.name for t in PROJECTION_TABLES)
METRIC_COUNTERS = _COUNTER_COLUMNS
