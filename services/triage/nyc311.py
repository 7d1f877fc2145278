"""NYC 311 requests as complaint texts, for demos and for measuring the classifier on real data.

NYC rows carry no free text, so a row's text is built from its structured fields, e.g.
``"Noise - Residential: Loud Music/Party at Residential Building/House"``. Labels are either our catalogue
codes (via ``domain/catalogue/nyc311_mapping.v1.yaml``) or NYC's raw complaint types.

Data attribution: NYC Open Data, 311 Service Requests (erm2-nwe9); a subset ships as data/nyc311/ (see its PROVENANCE.md).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from domain.catalogue import CATALOGUE_V1_PATH

# Shipped next to the catalogue it maps into (package data of domain.catalogue).
NYC_MAPPING_V1_PATH = CATALOGUE_V1_PATH.with_name("nyc311_mapping.v1.yaml")

# Descriptors that say nothing; they would only add noise to the text.
_EMPTY_DESCRIPTORS = {"", "n/a", "na", "none", "other", "other/unknown"}

__all__ = [
    "NYC_MAPPING_V1_PATH",
    "NycTrainingSet",
    "iter_csv_rows",
    "load_nyc_mapping",
    "nyc_row_text",
    "nyc_training_set",
]


def load_nyc_mapping(path: Path | None = None) -> dict[str, str | None]:
    """NYC complaint type -> catalogue category code, or None where no category fits."""
    with open(path or NYC_MAPPING_V1_PATH, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    return {str(k): (str(v) if v else None) for k, v in (data.get("mapping") or {}).items()}


def nyc_row_text(row: Mapping[str, str], include_type: bool = True) -> str:
    """An English complaint text from an NYC row: ``complaint_type: descriptor at location_type``.

    ``include_type=False`` leaves out the complaint type, which otherwise gives the raw-type label away."""
    descriptor = (row.get("descriptor") or "").strip()
    location = (row.get("location_type") or "").strip()
    complaint_type = (row.get("complaint_type") or "").strip()
    parts = []
    if include_type and complaint_type:
        parts.append(complaint_type)
    if descriptor.lower() not in _EMPTY_DESCRIPTORS:
        parts.append(descriptor)
    text = ": ".join(parts) if parts else complaint_type
    if location and location.lower() not in _EMPTY_DESCRIPTORS:
        text = f"{text} at {location}" if text else location
    return text


@dataclass
class NycTrainingSet:
    """Texts and labels from NYC rows, and what was skipped."""

    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    skipped_unmapped: int = 0  # rows whose complaint type maps to no category (mapped mode only)
    skipped_empty: int = 0  # rows with no complaint type or no usable text


def nyc_training_set(
    rows: Iterable[Mapping[str, str]],
    mapping: Mapping[str, str | None] | None = None,
    raw_labels: bool = False,
    include_type: bool = True,
) -> NycTrainingSet:
    """Turn NYC rows into (text, label) pairs: label = the mapped catalogue code, or the raw complaint type
    with ``raw_labels``. Types missing from the mapping count as unmapped."""
    if mapping is None and not raw_labels:
        mapping = load_nyc_mapping()
    result = NycTrainingSet()
    for row in rows:
        complaint_type = (row.get("complaint_type") or "").strip()
        text = nyc_row_text(row, include_type=include_type)
        if not complaint_type or not text:
            result.skipped_empty += 1
            continue
        label = complaint_type if raw_labels else (mapping or {}).get(complaint_type)
        if label is None:
            result.skipped_unmapped += 1
            continue
        result.texts.append(text)
        result.labels.append(label)
    return result


def iter_csv_rows(path: Path, on_bytes: Callable[[int], None] | None = None) -> Iterator[dict[str, str]]:
    """Rows of a UTF-8 CSV file as dicts; ``on_bytes(n)`` is called as the file is read (for progress bars)."""
    with open(path, "rb") as raw:
        yield from csv.DictReader(_decoded_lines(raw, on_bytes))


def _decoded_lines(raw: io.BufferedReader, on_bytes: Callable[[int], None] | None) -> Iterator[str]:
    first = True
    for line in raw:
        if on_bytes is not None:
            on_bytes(len(line))
        # A BOM from spreadsheet exports would otherwise end up in the first column's name.
        yield line.decode("utf-8-sig" if first else "utf-8")
        first = False
