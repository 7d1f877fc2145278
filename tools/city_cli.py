"""`cityops city`: generate the city of the real size (catalogue and map) and ask it "where is it?".

The hub's default stays the small 16-grid catalogue; this city is used with `--path`/`--catalogue` where offered.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(help="Generate the city of the real size; locate coordinates and addresses in it.", no_args_is_help=True,
                  add_completion=False)
console = Console()


@app.command()
def generate(
    seed: int = typer.Option(2026, "--seed", help="Seed of the generator; 2026 is the committed city."),
    catalogue: Path | None = typer.Option(None, "--catalogue", help="Where to write the catalogue YAML (default: the packaged file)."),
    map_out: Path | None = typer.Option(None, "--map", help="Also write the map (gzipped GeoJSON) here."),
    no_catalogue: bool = typer.Option(False, "--no-catalogue", help="Write only the map."),
) -> None:
    """Write the catalogue (areas, units, 1,326 matters) and optionally the map; prints each file's sha256."""
    from domain.city.generate import CITY_CATALOGUE_PATH, write_city

    target = None if no_catalogue else (catalogue or CITY_CATALOGUE_PATH)
    for path, sha in write_city(target, map_out, seed).items():
        console.print(f"{path}  sha256 {sha}")


@app.command(name="map")
def map_file(
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Cache folder (default $CITYOPS_CITY_CACHE or .cache/city)."),
) -> None:
    """Print the path of the map (generating it into the cache on first use, checked against its committed digest)."""
    from domain.city import city_map_path

    console.print(str(city_map_path(cache_dir)))


@app.command()
def where(
    lon: float | None = typer.Option(None, "--lon", help="Longitude (WGS84)."),
    lat: float | None = typer.Option(None, "--lat", help="Latitude (WGS84)."),
    address: str | None = typer.Option(None, "--address", help="Free-text address, e.g. 芝罘区阳光花园3号楼."),
    grid: str | None = typer.Option(None, "--grid", help="A grid id already known."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Map cache folder."),
) -> None:
    """The most precise place known from coordinates, an address and/or area ids, as JSON."""
    from dataclasses import asdict

    from domain.catalogue import load_catalogue
    from domain.city import CITY_CATALOGUE_PATH, Gazetteer, GridLocator, load_city_map, most_precise_place

    if (lon is None) != (lat is None):
        raise typer.BadParameter("give both --lon and --lat", param_hint="--lon/--lat")
    city_map = load_city_map(cache_dir)
    place = most_precise_place(
        load_catalogue(CITY_CATALOGUE_PATH),
        {"lon": lon, "lat": lat, "address": address, "grid": grid},
        locator=GridLocator.from_geojson(city_map),
        gazetteer=Gazetteer.from_geojson(city_map),
    )
    console.print_json(json.dumps(asdict(place), ensure_ascii=False))
