"""Column mappings: how the columns of a city's 311 export become an intake record.

A mapping is data (YAML for `cityops import csv --mapping FILE`); the NYC and Baltimore samples
have built-in ones. Example:

    source: nyc311                 # goes into ticket ids (nyc311-<id>) and external ids
    id: unique_key                 # the row's id in the source system
    created: created_date          # creation time column
    created_format: null           # strptime format; null = ISO 8601
    timezone: America/New_York     # zone of times written without an offset
    text: "{complaint_type}[: {descriptor}][ at {location_type}]"
    lat: latitude
    lon: longitude
    address: "{incident_address}[, {city}]"
    area: borough                  # -> a district of our catalogue
    sub_area: incident_zip         # -> a grid inside that district
    areas: {MANHATTAN: district-west}   # explicit area -> district choices (others: stable hash)
    null_values: ["", "N/A", "Unspecified"]

In `text` and `address`, `{column}` is the cell; a `[...]` part is dropped when a cell in it is
empty or one of `null_values`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

_OPTIONAL = re.compile(r"\[([^\[\]]*)\]")
_FIELD = re.compile(r"\{([^{}]+)\}")


class CsvMapping(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Short source name: part of ticket ids and external ids.")
    id: str = Field(description="Column with the row's id in the source system.")
    created: str = Field(description="Column with the creation time.")
    created_format: str | None = Field(default=None, description="strptime format of `created`; None for ISO 8601.")
    timezone: str = Field(default="UTC", description="Zone of times written without an offset.")
    text: str = Field(description="Template of the complaint text, e.g. '{type}[: {descriptor}]'.")
    language: str | None = Field(default="en", description="Language of the text.")
    lat: str | None = Field(default=None, description="Latitude column.")
    lon: str | None = Field(default=None, description="Longitude column.")
    placeholder_coordinates: tuple[tuple[float, float], ...] = Field(default=(), description="(lat, lon) values that mean 'unknown'.")
    address: str | None = Field(default=None, description="Template of the address.")
    area: str | None = Field(default=None, description="Column whose value picks a district of our catalogue.")
    sub_area: str | None = Field(default=None, description="Column whose value picks a grid inside that district.")
    areas: dict[str, str] = Field(default_factory=dict, description="Explicit area value -> district id.")
    null_values: tuple[str, ...] = Field(default=("", "N/A", "NA", "None", "null", "Unspecified", "Other"),
                                         description="Cell values that mean 'nothing'.")
    attribution: str = Field(default="", description="Where the data comes from; shown by the importer.")

    def is_null(self, value: str | None) -> bool:
        return value is None or value.strip().lower() in _lowered(self.null_values)

    def render(self, template: str, row: Mapping[str, str]) -> str:
        """Fill a template; drop each [optional part] whose cells are empty."""
        def optional(match: re.Match[str]) -> str:
            part = match.group(1)
            cells = [row.get(name) for name in _FIELD.findall(part)]
            return "" if any(self.is_null(c) for c in cells) else _fill(part, row)
        return " ".join(_fill(_OPTIONAL.sub(optional, template), row, self).split())


@lru_cache(maxsize=32)
def _lowered(values: tuple[str, ...]) -> frozenset[str]:
    return frozenset(v.lower() for v in values)


def _fill(template: str, row: Mapping[str, str], mapping: CsvMapping | None = None) -> str:
    def cell(match: re.Match[str]) -> str:
        value = (row.get(match.group(1)) or "").strip()
        return "" if mapping is not None and mapping.is_null(value) else value
    return _FIELD.sub(cell, template)


def load_mapping(path: Path) -> CsvMapping:
    with open(path, encoding="utf-8") as handle:
        return CsvMapping.model_validate(yaml.safe_load(handle))


NYC = CsvMapping(
    source="nyc311", id="unique_key", created="created_date", timezone="America/New_York",
    # The same wording the triage classifier is measured on (services.triage.nyc311.nyc_row_text).
    text="{complaint_type}[: {descriptor}][ at {location_type}]", language="en",
    lat="latitude", lon="longitude", address="[{incident_zip}, ]{city}[, {borough}]",
    area="borough", sub_area="incident_zip",
    areas={"MANHATTAN": "district-west", "BRONX": "district-west", "BROOKLYN": "district-east",
           "QUEENS": "district-east", "STATEN ISLAND": "district-east"},
    null_values=("", "N/A", "NA", "Unspecified", "Other", "Other/Unknown", "None"),
    attribution="NYC Open Data, 311 Service Requests (erm2-nwe9); see data/nyc311/PROVENANCE.md",
)

BALTIMORE = CsvMapping(
    source="bal311", id="ServiceRequestNum", created="CreatedDate", created_format="%m/%d/%Y %I:%M:%S %p",
    timezone="America/New_York", text="{SRType}[ ({Agency})]", language="en", lat="Latitude", lon="Longitude",
    placeholder_coordinates=((39.0, -77.0),), address="{Address}", area="Neighborhood", sub_area="Neighborhood",
    attribution="City of Baltimore, Open Baltimore 311 (311 Customer Service Requests), via "
                "github.com/city-of-baltimore/city-R-training-series; see data/baltimore311/PROVENANCE.md",
)
