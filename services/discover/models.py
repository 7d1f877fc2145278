from __future__ import annotations

from datetime import date, datetime

from sqlmodel import Field, SQLModel


class KnownTicket(SQLModel, table=True):
    """Tickets discover has registered: the candidates for repeat detection, and merge state."""

    __tablename__ = "discover_tickets"

    ticket_id: str = Field(primary_key=True)
    place_key: str | None = Field(default=None, index=True, description="Grid or coordinate cell, for repeat lookup.")
    text: str = Field(description="Request text.")
    category: str | None = Field(default=None, description="Operator's or triage's category.")
    lat: float | None = None
    lon: float | None = None
    submitted_at: datetime = Field(index=True)
    open: bool = Field(default=True, index=True, description="False once closed: closed tickets take no repeats.")
    master_ticket_id: str | None = Field(default=None, description="Set while merged into another ticket.")
    registered_json: str = Field(description="The RegisteredTicket, for a later split.")


class ResidentRow(SQLModel, table=True):
    """The register's latest base record of each resident (cityops.residents.base.v1), for the daily scan."""

    __tablename__ = "discover_residents"

    resident_id: str = Field(primary_key=True)
    grid_id: str = Field(index=True)
    record_json: str = Field(description="The ResidentBaseRecorded payload.")


class WeatherAlertRow(SQLModel, table=True):
    __tablename__ = "discover_weather_alerts"

    alert_id: str = Field(primary_key=True)
    ends: date = Field(index=True)
    alert_json: str = Field(description="The WeatherAlertIssued payload.")


class ProactiveRaised(SQLModel, table=True):
    """Who was contacted for what: one row per firing key (resident|rule|occasion), so nobody is asked twice."""

    __tablename__ = "discover_proactive_raised"

    key: str = Field(primary_key=True)
    ticket_id: str
    rule_id: str = Field(index=True)
    resident_id: str = Field(index=True)
    raised_at: datetime


class ProactiveScan(SQLModel, table=True):
    """The days the daily scan has run for (a restart the same day does not scan again)."""

    __tablename__ = "discover_proactive_scans"

    day: date = Field(primary_key=True)
    raised: int = 0
    seconds: float = 0.0
