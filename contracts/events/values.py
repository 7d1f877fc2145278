"""Value objects the events share: channels, urgency, levels, places, callers, time limits, routing."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Channel(StrEnum):
    phone = "phone"
    web = "web"
    app = "app"
    grid_patrol = "grid-patrol"
    open311 = "open311"
    proactive = "proactive"
    import_ = "import"


class Urgency(StrEnum):
    normal = "normal"
    urgent = "urgent"
    emergency = "emergency"


class Level(StrEnum):
    grid = "grid"
    community = "community"
    street = "street"
    district = "district"
    city = "city"


class EscalationReason(StrEnum):
    """Why a grid, community or street unit sends a matter up the area chain (上报)."""

    help_requested = "help-requested"
    beyond_powers = "beyond-powers"
    needs_enforcement = "needs-enforcement"
    multi_party = "multi-party"
    safety_risk = "safety-risk"


class Satisfaction(StrEnum):
    satisfied = "satisfied"
    basically_satisfied = "basically-satisfied"
    unsatisfied = "unsatisfied"


class Role(StrEnum):
    lead = "lead"
    co = "co"


class ValueObject(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Location(ValueObject):
    """Where the problem is: an administrative path and/or a coordinate."""

    district: str | None = Field(default=None, description="District id from the catalogue's areas, e.g. district-east.")
    street: str | None = Field(default=None, description="Street office id, e.g. street-east-1.")
    community: str | None = Field(default=None, description="Community id, e.g. community-east-1-a.")
    grid: str | None = Field(default=None, description="Grid id, e.g. grid-east-1-a-1.")
    address: str | None = Field(default=None, description="Free-text address as the caller gave it.")
    lat: float | None = Field(default=None, ge=-90, le=90, description="Latitude (WGS84).")
    lon: float | None = Field(default=None, ge=-180, le=180, description="Longitude (WGS84).")


class Caller(ValueObject):
    """The caller as the hotline records them: personal data, kept in the intake record only."""

    name: str | None = Field(default=None, max_length=100, description="Caller's name; may be withheld.")
    phone: str | None = Field(default=None, max_length=32, pattern=r"^\+?[0-9 \-]{3,32}$", description="Caller's phone number.")


class SealedCaller(ValueObject):
    """The caller's name and phone, encrypted by intake with a data key of that caller alone (AES-256-GCM).
    The key lives only in intake's key store: intake can open this, nothing else can, and once the key is
    destroyed (erasure) nobody can."""

    key_id: str = Field(description="Id of the caller's data key in intake's key store (random: says nothing about the caller).")
    algorithm: Literal["AES-256-GCM"] = Field(default="AES-256-GCM", description="Cipher of ciphertext.")
    nonce: str = Field(description="The cipher's 96-bit nonce, base64.")
    ciphertext: str = Field(
        description="Encrypted JSON {name, phone} with its authentication tag, base64; bound to the ticket id.")


class CallerRef(ValueObject):
    """What units, open data and logs see of a caller."""

    pseudonym: str | None = Field(
        default=None, description="Stable keyed hash of the phone: links repeat callers without revealing them.")
    masked_phone: str | None = Field(default=None, description="Phone with the middle digits masked, e.g. 138****5678.")
    anonymous: bool = Field(default=False, description="True when the caller gave no contact details.")


class TimeLimitSpec(ValueObject):
    """A time limit from the catalogue: an amount in working days, working hours, hours or minutes."""

    amount: int = Field(ge=0, description="How many units of time.")
    unit: Literal["wd", "wh", "h", "m"] = Field(
        description="wd working days, wh working hours, h natural hours, m natural minutes.")


class Limits(ValueObject):
    """The clocks of one assignment (separate response and resolution clocks)."""

    sign_for: TimeLimitSpec = Field(description="Limit for the unit to sign for the task.")
    response: TimeLimitSpec = Field(description="Limit for the first substantive response.")
    resolution: TimeLimitSpec = Field(description="Limit for completing the task.")


class Routing(ValueObject):
    """Who handles a ticket."""

    lead: str = Field(description="Unit id of the lead unit (主办).")
    co_units: tuple[str, ...] = Field(default=(), description="Unit ids of the co-handling units (协办).")
    level: Level = Field(description="Administrative level the ticket is handled at.")
