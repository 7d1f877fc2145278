"""The generated city's map (GeoJSON of areas, compounds and buildings), generated on first use into a cache.

Why not commit it: the map is derived data (1.6 MB of gzip that would churn with every generator change), and the
seeded generator makes it in about a second, less than reading and checking it costs. What must not drift is
checked instead: ``MAP_SHA256`` is the digest of the map for the default seed, verified whenever the map is written
or read, and tests/unit/test_city_generator.py regenerates it. The catalogue YAML, which people read and edit, is
committed (``CITY_CATALOGUE_PATH``).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

from .generate import DEFAULT_SEED, GENERATOR_VERSION, digest, geojson_gz_bytes
from .layout import generate_layout

# sha256 of geojson_gz_bytes(generate_layout(DEFAULT_SEED)); update together with the committed catalogue.
MAP_SHA256 = "cd80b9b08dd643e42bf40e08de352e9f228a33143a07b8ff0a3f858dd2e8f9e6"

DEFAULT_CACHE_DIR = Path(__file__).resolve().parents[2] / ".cache" / "city"


class MapChecksumError(ValueError):
    """The map made or read is not the one whose digest is committed: the generator drifted, or the file is damaged."""


def city_map_path(cache_dir: Path | None = None, seed: int = DEFAULT_SEED) -> Path:
    """The map file for ``seed``, generated into ``cache_dir`` (default ``$CITYOPS_CITY_CACHE`` or .cache/city) if
    absent. The write is atomic, so two processes starting together never read half a file."""
    folder = Path(cache_dir or os.environ.get("CITYOPS_CITY_CACHE") or DEFAULT_CACHE_DIR)
    # Named by the committed digest: a regenerated city never meets the cached map of an older generator.
    tag = MAP_SHA256[:12] if seed == DEFAULT_SEED else f"v{GENERATOR_VERSION}"
    path = folder / f"yantai-{seed}-{tag}.geojson.gz"
    if not path.exists():
        data = geojson_gz_bytes(generate_layout(seed))
        _check(data, seed, "generated")
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def load_city_map(cache_dir: Path | None = None, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """The map as a GeoJSON FeatureCollection (checked against ``MAP_SHA256`` for the default seed)."""
    raw = city_map_path(cache_dir, seed).read_bytes()
    _check(raw, seed, "cached")
    loaded: dict[str, Any] = json.loads(gzip.decompress(raw))
    return loaded


def _check(data: bytes, seed: int, what: str) -> None:
    if seed == DEFAULT_SEED and digest(data) != MAP_SHA256:
        raise MapChecksumError(
            f"the {what} map's sha256 {digest(data)[:16]}... is not the committed {MAP_SHA256[:16]}...: regenerate the "
            "catalogue and update MAP_SHA256 together (`cityops city generate`), or delete the damaged cache file"
        )
