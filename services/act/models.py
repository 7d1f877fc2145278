from __future__ import annotations

from sqlmodel import Field, SQLModel


class ActTicket(SQLModel, table=True):
    __tablename__ = "act_tickets"

    ticket_id: str = Field(primary_key=True)
    classified_json: str = Field(description="Last TicketClassified (ticket, category, limits).")
    round: int = Field(default=1, description="Handling round.")
    dispatches: int = Field(default=0, description="How many times it was dispatched.")
    returns: int = Field(default=0, description="Accepted returns so far.")
    excluded: str = Field(default="", description="Comma-separated units that returned it.")
    lead: str | None = Field(default=None, description="Current lead.")
    co_units: str = Field(default="", description="Current co-units.")
    final: bool = Field(default=False, description="Assigned by a supervisor.")
    status: str = Field(default="waiting", description="waiting, dispatched, handled.")


class Task(SQLModel, table=True):
    __tablename__ = "act_tasks"

    task_id: str = Field(primary_key=True)
    ticket_id: str = Field(index=True)
    unit: str = Field(index=True)
    role: str
    round: int
    dispatch_no: int
    final: bool = False
    status: str = Field(default="assigned", description="A domain.statuses.TaskStatus: assigned, signed-for, in-progress, waiting-on-resident, returned, withdrawn, completed.")
    extensions: int = 0
    result: str | None = None
