"""A CSV row -> a `TicketSubmitted` envelope (pure, deterministic).

Same row, same ticket id, same event id: a re-import is a redelivery. Places are mapped onto our
catalogue's areas so that imported history routes like local tickets: the source's area (an NYC
borough, a Baltimore neighbourhood) picks a district, the finer key (a zip code) a grid in it.
The choice is a stable hash unless the mapping names the district, so it never depends on the
order rows arrive in. Without a catalogue, a location keeps only its coordinates and address.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from contracts import events as ev
from contracts.envelope import Envelope, derive_event_id
from domain.catalogue import Catalogue

from .mapping import CsvMapping

SOURCE = "/cityops/importers"
_MAX_TEXT = 5000


class SkipRow(ValueError):
    """A row that cannot become an intake record; the message says why (counted, not fatal)."""


def _stable(value: str) -> int:
    return int.from_bytes(hashlib.sha256(value.strip().upper().encode()).digest()[:8], "big")


@dataclass
class AreaMapper:
    """Source areas -> catalogue area ids (district, street, community, grid)."""

    catalogue: Catalogue | None
    explicit: Mapping[str, str]

    def __post_init__(self) -> None:
        areas = self.catalogue.areas if self.catalogue else ()
        self.districts = sorted(a.id for a in areas if a.level == "district")
        self.grids: dict[str, list[str]] = {d: [] for d in self.districts}
        for grid in sorted(a.id for a in areas if a.level == "grid"):
            district = self._district_of(grid)
            if district in self.grids:
                self.grids[district].append(grid)
        self._explicit = {k.strip().upper(): v for k, v in self.explicit.items()}
        self._paths: dict[str, dict[str, str]] = {}

    def _district_of(self, area_id: str) -> str | None:
        assert self.catalogue is not None
        return next((a.id for a in self.catalogue.area_chain({"grid": area_id}) if a.level == "district"), None)

    def areas_for(self, area: str | None, sub_area: str | None) -> dict[str, str]:
        if not self.districts or not area:
            return {}
        district = self._explicit.get(area.strip().upper())
        if district not in self.grids:
            district = self.districts[_stable(area) % len(self.districts)]
        if not sub_area or not self.grids[district]:
            return {"district": district}
        grid = self.grids[district][_stable(f"{area.strip()}/{sub_area.strip()}") % len(self.grids[district])]
        return self._path(grid)

    def _path(self, grid: str) -> dict[str, str]:
        if grid not in self._paths:
            assert self.catalogue is not None
            self._paths[grid] = {a.level: a.id for a in self.catalogue.area_chain({"grid": grid})}
        return dict(self._paths[grid])


def ticket_id_for(mapping: CsvMapping, record_id: str) -> str:
    return f"{mapping.source}-{record_id.strip()}"


def parse_created(mapping: CsvMapping, text: str) -> datetime:
    text = text.strip()
    moment = datetime.strptime(text, mapping.created_format) if mapping.created_format else datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(mapping.timezone))
    return moment.astimezone(UTC)


def _coordinates(mapping: CsvMapping, row: Mapping[str, str]) -> tuple[float | None, float | None]:
    if not (mapping.lat and mapping.lon):
        return None, None
    try:
        lat, lon = float(row.get(mapping.lat) or ""), float(row.get(mapping.lon) or "")
    except ValueError:
        return None, None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or (lat, lon) == (0.0, 0.0) or (lat, lon) in mapping.placeholder_coordinates:
        return None, None
    return lat, lon


def location_for(mapping: CsvMapping, row: Mapping[str, str], areas: AreaMapper) -> ev.Location:
    lat, lon = _coordinates(mapping, row)
    area = row.get(mapping.area) if mapping.area else None
    sub_area = row.get(mapping.sub_area) if mapping.sub_area else None
    address = mapping.render(mapping.address, row) if mapping.address else None
    return ev.Location(**areas.areas_for(None if mapping.is_null(area) else area,
                                         None if mapping.is_null(sub_area) else sub_area),
                       address=address or None, lat=lat, lon=lon)


def row_to_envelope(mapping: CsvMapping, row: Mapping[str, str], areas: AreaMapper) -> Envelope[Any]:
    """The intake record of one row; `SkipRow` when the row lacks an id, a time or any text."""
    record_id = (row.get(mapping.id) or "").strip()
    if not record_id:
        raise SkipRow("no id")
    try:
        created = parse_created(mapping, row.get(mapping.created) or "")
    except ValueError:
        raise SkipRow("no valid creation time") from None
    text = mapping.render(mapping.text, row)[:_MAX_TEXT]
    if not text:
        raise SkipRow("no text")
    external_id = f"{mapping.source}:{record_id}"
    data = ev.TicketSubmitted(channel=ev.Channel.import_, text=text, location=location_for(mapping, row, areas),
                              language=mapping.language, submitted_at=created, external_id=external_id,
                              idempotency_key=external_id)
    ticket_id = ticket_id_for(mapping, record_id)
    return Envelope.origin(data, source=SOURCE, ticket_id=ticket_id, time=created,
                           event_id=derive_event_id(f"import:{mapping.source}", data.event_type, 0, record_id))
