"""Reading a catalogue file: the packaged v1 data beside this module, or any file of the same shape."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .catalogue import Catalogue

CATALOGUE_V1_PATH = Path(__file__).with_name("responsibility.v1.yaml")
# The cities the hub ships, by the name `CITYOPS_CITY` (or `cityops up --city`) takes: the small demo city
# (68 categories, 16 grids) and the generated city at real scale (1,326 matters, 15,612 grids; domain/city).
CITY_CATALOGUES = {
    "demo": CATALOGUE_V1_PATH,
    "yantai": Path(__file__).with_name("responsibility.yantai.v1.yaml"),
}
DEFAULT_CITY = "demo"


class UnknownCityError(ValueError):
    """A city name the hub does not ship a catalogue for."""


def catalogue_path_for_city(name: str) -> Path:
    """The catalogue file of a shipped city; an unknown name is an error that lists the known ones."""
    try:
        return CITY_CATALOGUES[name.strip().lower()]
    except KeyError:
        raise UnknownCityError(f"unknown city {name!r}: the known cities are {', '.join(sorted(CITY_CATALOGUES))} "
                               "(or set catalogue_path to a catalogue file of your own)") from None


def parse_catalogue(data: Mapping[str, Any]) -> Catalogue:
    """Validate already-parsed catalogue data (e.g. a modified copy for a what-if run)."""
    return Catalogue.model_validate(data)


def read_catalogue_data(path: Path | None = None) -> dict[str, Any]:
    """The raw YAML content of a catalogue file (the packaged v1 file by default)."""
    # The C loader is ~8x faster than the pure-Python one; both are "safe" (no arbitrary objects).
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path or CATALOGUE_V1_PATH, encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=loader)  # noqa: S506 - a safe loader
    if not isinstance(data, dict):
        raise ValueError(f"catalogue file {path or CATALOGUE_V1_PATH} does not hold a mapping")
    return data


def load_catalogue(path: Path | None = None) -> Catalogue:
    """Load and validate a catalogue (default: the packaged v1 file). Cached per file and modification time,
    so repeated calls are free and an edited file is re-read."""
    resolved = Path(path or CATALOGUE_V1_PATH).resolve()
    return _load_cached(str(resolved), resolved.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _load_cached(path: str, _mtime_ns: int) -> Catalogue:
    return parse_catalogue(read_catalogue_data(Path(path)))
