"""Write the small city's map (a GeoJSON polygon per area of the catalogue), seeded and repeatable.

    python -m tools.city_map [--seed 2026] [--catalogue PATH] [--out domain/catalogue/city_map.v1.geojson]

domain/catalogue/geo.py draws the polygons; a test checks the packaged file is what this writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from domain.catalogue import load_catalogue
from domain.catalogue.geo import CITY_MAP_V1_PATH, DEFAULT_SEED, generate_city_map


def dump(city_map: dict[str, object]) -> str:
    """The file's text: one feature per line, so a diff shows which area moved."""
    features = ",\n".join(json.dumps(f, ensure_ascii=False) for f in city_map["features"])  # type: ignore[attr-defined]
    head = {k: v for k, v in city_map.items() if k != "features"}
    return json.dumps(head, ensure_ascii=False)[:-1] + ', "features": [\n' + features + "\n]}\n"


def main(seed: int = typer.Option(DEFAULT_SEED, help="Seed of the split proportions."),
         catalogue: Path | None = typer.Option(None, help="Catalogue YAML (default: the packaged one)."),
         out: Path = typer.Option(CITY_MAP_V1_PATH, help="Where to write the GeoJSON.")) -> None:
    city_map = generate_city_map(load_catalogue(catalogue), seed=seed)
    out.write_text(dump(city_map), encoding="utf-8")
    typer.echo(f"{len(city_map['features'])} areas written to {out}")


if __name__ == "__main__":
    typer.run(main)
