from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class TicketStatus(SQLModel, table=True):
    """The hotline's own view of where each ticket is (for operators and the Open311 edge)."""

    __tablename__ = "intake_ticket_status"

    ticket_id: str = Field(primary_key=True, description="Ticket id.")
    status: str = Field(index=True, description="A domain.statuses.TicketStatus: registered, merged, manual-triage, consulting, supervisor-review, "
                        "dispatched, rerouting, handled, reopened, closed.")
    category: str | None = Field(default=None, description="Catalogue category once known.")
    lead: str | None = Field(default=None, description="Lead unit once dispatched.")
    co_units: str = Field(default="", description="Comma-separated co-units.")
    master_ticket_id: str | None = Field(default=None, description="Master when merged.")
    consultation_id: str | None = Field(default=None, description="Open consultation, if any.")
    round: int = Field(default=1, description="Handling round.")
    text: str = Field(default="", description="Request text (no personal data).")
    district: str | None = Field(default=None, description="District id.")
    grid: str | None = Field(default=None, description="Grid id.")
    address: str | None = Field(default=None, description="Address as given.")
    lat: float | None = Field(default=None, description="Latitude.")
    lon: float | None = Field(default=None, description="Longitude.")
    outcome: str | None = Field(default=None, description="Closing outcome.")
    requested_at: datetime | None = Field(default=None, description="When submitted.")
    updated_at: datetime | None = Field(default=None, description="Last event time.")


class SubmittingClient(SQLModel, table=True):
    """Which app (its token's client id) submitted a ticket: an app reads back its own requests only.

    Written by the HTTP API when an app submits, not folded from the log: the intake record carries no
    caller identity of the submitting system, so a rebuilt store starts this table empty (apps then see
    only what they submit afterwards; nobody sees more)."""

    __tablename__ = "intake_submitting_client"

    ticket_id: str = Field(primary_key=True, description="Ticket id.")
    client_id: str = Field(index=True, description="The submitting app's client id.")


class SubmissionKey(SQLModel, table=True):
    """An Idempotency-Key a submission came with (scoped to its caller) and a hash of what was submitted: a retry
    with the same body gets the same ticket, the same key with another body is refused (409) rather than dropped."""

    __tablename__ = "intake_submission_key"

    scoped_key: str = Field(primary_key=True, max_length=400, description="The caller's scope and the key.")
    fingerprint: str = Field(description="sha256 of the submission as validated (ComplaintIn).")
    ticket_id: str = Field(description="The ticket the key made.")


class Submitter(SQLModel, table=True):
    """Who submitted a ticket through the API (an operator's or grid worker's subject, an app's client): what
    `GET /tickets?mine=true` reads. Written by the HTTP API, not folded from the log (the intake record names
    no submitting person), so a rebuilt store starts it empty."""

    __tablename__ = "intake_submitter"

    ticket_id: str = Field(primary_key=True, description="Ticket id.")
    submitter: str = Field(index=True, max_length=400, description="The caller's scope: sub:<subject> or client:<client id>.")


class TriageCandidates(SQLModel, table=True):
    """The classifier's best guesses for a ticket in the manual-triage queue (from ManualTriageRequested), shown
    to the operator who decides."""

    __tablename__ = "intake_triage_candidates"

    ticket_id: str = Field(primary_key=True, description="Ticket id.")
    candidates: str = Field(default="[]", description='JSON list of [category, confidence] pairs, best first.')
    reason: str = Field(default="", description="Why it needs a person.")
