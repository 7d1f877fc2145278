"""What the hotline accepts, and how a submission becomes the intake record. Pure: no I/O."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts import events as ev
from contracts.envelope import Envelope, derive_event_id
from domain.catalogue import Catalogue
from domain.city.place import Place
from domain.privacy import mask_free_text
from services.common.inputs import Address, Id, LongText, Moment, Name, Ref

SOURCE = "/cityops/intake"
_TICKET_NAMESPACE = uuid.UUID("0b5e2a57-6a55-4a8a-9c42-9d7f1b0e4c11")


class LocationIn(BaseModel):
    """Where the problem is, as a caller gives it: area ids (checked against the catalogue by the API), a capped
    one-line address, a finite coordinate. Becomes the record's `Location`."""

    # Unknown keys are ignored, as the record's Location always did: a client may send more than we keep.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, allow_inf_nan=False, from_attributes=True)

    district: Id | None = Field(default=None, description="District id from the catalogue's areas, e.g. district-east.")
    street: Id | None = Field(default=None, description="Street office id, e.g. street-east-1.")
    community: Id | None = Field(default=None, description="Community id, e.g. community-east-1-a.")
    grid: Id | None = Field(default=None, description="Grid id, e.g. grid-east-1-a-1.")
    address: Address | None = Field(default=None, description="Free-text address as the caller gave it (one line).")
    lat: float | None = Field(default=None, ge=-90, le=90, description="Latitude (WGS84).")
    lon: float | None = Field(default=None, ge=-180, le=180, description="Longitude (WGS84).")

    def to_location(self) -> ev.Location:
        return ev.Location(**self.model_dump())

    def unknown_areas(self, catalogue: Catalogue) -> list[tuple[str, str]]:
        """(field, why) for every area id that is not an area of that level in the catalogue."""
        wrong = []
        for level in AREA_FIELDS:
            area_id = getattr(self, level)
            if area_id is None:
                continue
            try:
                area = catalogue.area(area_id)
            except KeyError:
                wrong.append((level, f"unknown {level} (not an area of the catalogue)"))
                continue
            if area.level != level:
                wrong.append((level, f"not a {level} but a {area.level}"))
        return wrong


AREA_FIELDS = ("district", "street", "community", "grid")


class ComplaintIn(BaseModel):
    """A complaint as an operator, an app or a grid worker submits it. Every string is capped and free of control
    characters (services/common/inputs.py), so the largest accepted ticket fits every record it leads to."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)

    text: LongText = Field(min_length=2, description="The request in the caller's words (Chinese or English).")
    channel: ev.Channel = Field(default=ev.Channel.phone, description="How it arrived.")
    caller_name: Name | None = Field(default=None, description="Caller's name (kept in the intake record only).")
    caller_phone: str | None = Field(default=None, max_length=32, pattern=r"^\+?[0-9 \-]{3,32}$",
                                     description="Caller's phone (kept in the intake record only).")
    location: LocationIn = Field(default_factory=LocationIn, description="district / street / community / grid and/or lat, lon.")
    category: Id | None = Field(default=None, description="Category code chosen by the operator (see GET /catalogue/categories).")
    urgency: ev.Urgency = Field(default=ev.Urgency.normal, description="normal, urgent or emergency.")
    submitted_at: Moment | None = Field(default=None, description="When the resident submitted it; default now. Must carry a "
                                        "timezone; between 2000 and 2100.")
    external_id: Ref | None = Field(default=None, description="Id in the submitting system.")
    reported_by: Id | None = Field(default=None, description="Grid worker id (roster) who found it on patrol; only with "
                                   "channel grid-patrol.")

    @field_validator("submitted_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("submitted_at must include a timezone offset")
        return value

    def fingerprint(self) -> str:
        """A hash of what was submitted: the same Idempotency-Key with another body is refused (409), not merged."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


class ResidentEventIn(BaseModel):
    """A resident's life event as a register reports it; becomes `ResidentLifeEventRecorded`."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, allow_inf_nan=False)

    resident_ref: Ref = Field(min_length=1, description="Pseudonymous resident id from the register.")
    kind: Literal["birthday", "newborn", "unemployed", "disability-registered"] = Field(description="What happened.")
    age: int | None = Field(default=None, ge=0, le=150, description="Age reached, for birthdays.")
    occurred_on: Moment = Field(description="When it happened (between 2000 and 2100).")
    location: LocationIn = Field(default_factory=LocationIn, description="Where the resident lives.")

    def to_event(self) -> ev.ResidentLifeEventRecorded:
        return ev.ResidentLifeEventRecorded(resident_ref=self.resident_ref, kind=self.kind, age=self.age,
                                            occurred_on=self.occurred_on, location=self.location.to_location())


def ticket_id_for(idempotency_key: str | None) -> str:
    """A retried submit with the same key gets the same ticket id (and so the same event id)."""
    if idempotency_key:
        return "T-" + uuid.uuid5(_TICKET_NAMESPACE, idempotency_key).hex[:16].upper()
    return "T-" + uuid.uuid4().hex[:16].upper()


# Seals a caller for a ticket: (the sealed name and phone, the masked phone and pseudonym). Intake's key store.
Sealer = Callable[[ev.Caller, str], tuple[ev.SealedCaller | None, ev.CallerRef]]


def masked_location(given: LocationIn, names: tuple[str, ...]) -> ev.Location:
    location = given.to_location()
    if not location.address:
        return location
    return location.model_copy(update={"address": mask_free_text(location.address, names=names)})


PlaceOf = Callable[[LocationIn], Place]  # what a location's ids, coordinates and address agree on (CityPlaces.place)


def placed(location: LocationIn, place_of: PlaceOf) -> LocationIn:
    """A location with the areas of the most precise place known filled in: an app's pin or an Open311 lat/long
    gives the grid (point in polygon), an address the area the gazetteer finds, so triage routes it to the grid's
    chain. A caller's grid id is kept as given, and so is a location whose pin or address names an area off the
    chain of the ids the caller gave (an operator's choice wins over a sloppy pin). A point outside the city and
    an address the gazetteer does not know leave the location as it was: triage routes it by what is left, and
    a location with no area at all goes to the hotline to be placed by hand (route basis "unlocated")."""
    if location.grid or (location.lat is None and not location.address):
        return location
    place = place_of(location)
    if place.basis not in ("coordinates", "address") or place.conflicts:
        return location
    return location.model_copy(update={level: getattr(place, level) for level in AREA_FIELDS})


def submission_event(complaint: ComplaintIn, *, now: datetime, idempotency_key: str | None,
                     ticket_id: str | None = None) -> Envelope[Any]:
    """The intake record of a complaint, phone and ID numbers (and the caller's own name) masked in its
    free text. Its caller is still in the clear: `sealed_submission` seals it before it leaves intake."""
    ticket_id = ticket_id or ticket_id_for(idempotency_key)
    names = (complaint.caller_name,) if complaint.caller_name else ()
    data = ev.TicketSubmitted(
        channel=complaint.channel, text=mask_free_text(complaint.text, names=names),
        caller=ev.Caller(name=complaint.caller_name, phone=complaint.caller_phone),
        location=masked_location(complaint.location, names), category=complaint.category, urgency=complaint.urgency,
        submitted_at=complaint.submitted_at or now, external_id=complaint.external_id,
        idempotency_key=idempotency_key, reported_by=complaint.reported_by,
    )
    event_id = derive_event_id("intake", data.event_type, 0, idempotency_key) if idempotency_key else None
    return Envelope.origin(data, source=SOURCE, ticket_id=ticket_id, time=now, event_id=event_id)


def sealed_submission(envelope: Envelope[Any], seal: Sealer) -> Envelope[Any]:
    """The same record (same id) with its caller sealed: the clear name and phone are gone from it."""
    data: ev.TicketSubmitted = envelope.data
    sealed, ref = seal(data.caller, envelope.ticket_id)
    clean = data.model_copy(update={"caller": ev.Caller(), "sealed_caller": sealed, "caller_ref": ref})
    return envelope.model_copy(update={"data": clean})


# ---------------------------------------------------------------- Open311 GeoReport v2

class Open311Request(BaseModel):
    """POST requests: the GeoReport v2 fields we accept."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, allow_inf_nan=False)

    service_code: Id = Field(min_length=1, description="Catalogue category code (GET services).")
    description: LongText = Field(min_length=2, description="What is wrong.")
    lat: float | None = Field(default=None, ge=-90, le=90, description="Latitude.")
    long: float | None = Field(default=None, ge=-180, le=180, description="Longitude.")
    address_string: Address | None = Field(default=None, description="Address.")
    first_name: Annotated[Name, Field(max_length=49)] | None = Field(default=None, description="Caller's first name.")
    last_name: Annotated[Name, Field(max_length=50)] | None = Field(default=None, description="Caller's last name.")
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 \-()]{3,32}$", description="Caller's phone.")
    device_id: Ref | None = Field(default=None, description="Submitting device.")

    @field_validator("phone")
    @classmethod
    def _dialable(cls, value: str | None) -> str | None:
        if value is not None and sum(c.isdigit() for c in value) < 3:
            raise ValueError("a phone number has at least 3 digits")
        return value

    def to_complaint(self) -> ComplaintIn:
        name = " ".join(p for p in (self.first_name, self.last_name) if p) or None
        phone = "".join(c for c in self.phone if c.isdigit() or c == "+") if self.phone else None
        return ComplaintIn(text=self.description, channel=ev.Channel.open311, caller_name=name, caller_phone=phone,
                           location=LocationIn(lat=self.lat, lon=self.long, address=self.address_string),
                           category=self.service_code, external_id=self.device_id)


class UnknownArea(ValueError):
    """A location naming an area the catalogue does not have (the message names the field, never the value)."""


def channel_record_to_event(value: bytes, key: bytes | None, topic: str, partition: int, offset: int,
                            now: datetime, catalogue: Catalogue | None = None,
                            place_of: PlaceOf | None = None) -> Envelope[Any]:
    """A machine channel's JSON body becomes an intake record; its key (the channel's message id)
    is the idempotency key, so a channel that re-sends gets one ticket. With `place_of` a pin or an address is
    placed in the city as at the HTTP door."""
    complaint = ComplaintIn.model_validate_json(value)
    if place_of is not None:
        complaint = complaint.model_copy(update={"location": placed(complaint.location, place_of)})
    wrong = complaint.location.unknown_areas(catalogue) if catalogue is not None else []
    if wrong:
        raise UnknownArea("; ".join(f"location.{field}: {why}" for field, why in wrong))
    idem = f"channel:{key.decode(errors='replace')}" if key else f"channel:{topic}:{partition}:{offset}"
    return submission_event(complaint, now=now, idempotency_key=idem)
