"""The city dimension of `cityops bench` (issue 14): the same hub on the small demo city and on the generated
Yantai-sized one (1,326 matters, 15,600 grids), side by side in one run on one broker.

Per city: the cost of its lookups in this process (catalogue load, route() calls per second over every
category at a sample of places, coordinates -> grid per second), then the hub started on it - start time until
every service has logged `service_started` and intake answers, resident memory of every service once started
and at the end of the burst - a warm-up to closed and the burst phase's figures (tickets/s, events/s).

Services are pointed at the city through the hub-wide city setting (CITYOPS_CITY, as `cityops up --city`).
Area units share one keyed task topic (contracts/topics.py AREA_TASKS), so the large catalogue needs 337 unit task
topics, not ~17,600; the run still creates and authorises only the own task topics of the units the workload routes
to (every lead and co-unit of its tickets, the district centres and the hotline) and the simulated units answer for
just those (CITYOPS_UNIT_UNITS), keeping their area units' records from the shared topic by key. Benchmark tickets
name a district, street and community but no grid (a grid would
merge repeats), so area matters go to the community's or street's unit.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from domain.catalogue import CITY_CATALOGUES, catalogue_path_for_city

CITY_NAMES = tuple(CITY_CATALOGUES)


# ============================================================================================ cities


@dataclass(frozen=True)
class City:
    name: str
    catalogue_path: Path

    def catalogue(self) -> Any:
        from domain.catalogue import load_catalogue

        return load_catalogue(self.catalogue_path)

    def grid_map(self) -> dict[str, Any]:
        """The city's GeoJSON (grid polygons at least)."""
        from domain.city.places import city_map_for

        return city_map_for(self.name)

    def service_env(self, units: Sequence[str]) -> dict[str, str]:
        """Settings that put every service on this city: its catalogue, and the simulated units it needs."""
        env = {"CITYOPS_CITY": self.name}
        if units:
            env["CITYOPS_UNIT_UNITS"] = json.dumps(sorted(units))
        return env


def city(name: str) -> City:
    try:
        return City(name, catalogue_path_for_city(name))
    except ValueError as exc:
        raise typer.BadParameter(f"--cities: {exc}") from None


def parse_cities(text: str) -> tuple[str, ...]:
    """`demo,yantai` -> ("demo", "yantai"); every name known, none twice, at least one."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise typer.BadParameter("--cities: name at least one city, e.g. demo,yantai")
    unknown = [n for n in names if n not in CITY_NAMES]
    if unknown:
        raise typer.BadParameter(f"--cities: unknown city {', '.join(unknown)}; known: {', '.join(CITY_NAMES)}")
    if len(set(names)) != len(names):
        raise typer.BadParameter(f"--cities: a city named twice in {text!r}")
    return names


# ============================================================================================ places and units


def sample_places(catalogue: Any, n: int, rng: random.Random) -> list[dict[str, str]]:
    """`n` places as a caller gives them: district, street and community (no grid), seeded."""
    communities = sorted(a.id for a in catalogue.areas if a.level == "community")
    places = []
    for area_id in (rng.choice(communities) for _ in range(n)):
        chain = catalogue.area_chain({"community": area_id})
        places.append({a.level: a.id for a in chain})
    return places


def working_units(catalogue: Any, codes: Iterable[str], places: Sequence[dict[str, str]]) -> list[str]:
    """Every unit a ticket of these categories at these places can be given a task by: leads, co-units (a
    returned task promotes them), the places' district centres and the hotline; sorted."""
    units = {catalogue.routing.unlocated_fallback}
    for place in places:
        units.add(catalogue.area_chain(place)[-1].id)  # the district operations centre
    for code in codes:
        for place in places:
            decision = catalogue.route(code, place)
            units.add(decision.lead)
            units.update(decision.co_units)
    return sorted(units)


# ============================================================================================ lookups


def rate_of(fn: Callable[[Any], Any], items: Sequence[Any]) -> dict[str, Any]:
    """Calls of `fn` over `items`: per second of wall and of CPU time."""
    wall, cpu = time.perf_counter(), time.process_time()
    for item in items:
        fn(item)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"calls": len(items), "seconds": round(wall, 3), "per_s": round(len(items) / wall) if wall else None,
            "cpu_per_s": round(len(items) / cpu) if cpu else None}


def lookup_figures(c: City, n: int, seed: int = 14) -> dict[str, Any]:
    """Catalogue load, routing and locate rates of one city, in this process."""
    from shapely.geometry import shape

    from contracts.topics import all_topics
    from domain.catalogue import parse_catalogue, read_catalogue_data
    from domain.city import GridLocator

    rng = random.Random(seed)
    rss, wall = _rss(), time.perf_counter()
    # Parsed here rather than through load_catalogue's cache, so the load is measured even when cached.
    catalogue = parse_catalogue(read_catalogue_data(c.catalogue_path))
    out: dict[str, Any] = {"catalogue_load_s": round(time.perf_counter() - wall, 2),
                           "catalogue_rss_mib": round((_rss() - rss) / 2 ** 20, 1),
                           "categories": len(catalogue.categories), "units": len(catalogue.units),
                           "areas": len(catalogue.areas),
                           "deployment_topics": len(all_topics(catalogue.own_topic_units()))}
    codes = [cat.code for cat in catalogue.categories]
    places = sample_places(catalogue, 50, rng)
    calls = [(rng.choice(codes), rng.choice(places)) for _ in range(n)]
    out["routing"] = rate_of(lambda call: catalogue.route(*call), calls)
    grids = grid_features(c.grid_map())
    locator = GridLocator([(f["properties"]["id"], shape(f["geometry"])) for f in grids])
    boxes = [f["geometry"]["coordinates"][0] for f in grids]
    points = [_inside(rng.choice(boxes), rng) for _ in range(n)]
    out["locate"] = {**rate_of(lambda p: locator.locate(*p), points), "grids": len(locator)}
    return out


def grid_features(collection: dict[str, Any]) -> list[dict[str, Any]]:
    """The grid polygons of a map (the small city's map does not mark its features as areas; the large one's do)."""
    from domain.city.places import grid_features as of_map

    return of_map(collection)


def _rss() -> int:
    from tools.bench.measure import proc_status

    return proc_status(os.getpid()).get("VmRSS", 0)


def _inside(ring: Sequence[Sequence[float]], rng: random.Random) -> tuple[float, float]:
    """A random point of a grid's bounding box (grids are rectangles, so inside the grid)."""
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    return rng.uniform(min(lons), max(lons)), rng.uniform(min(lats), max(lats))


# ============================================================================================ the table


CITY_FIGURES: tuple[tuple[str, str, Callable[[dict[str, Any]], Any]], ...] = (
    ("categories", "", lambda r: r.get("lookups", {}).get("categories")),
    ("units", "", lambda r: r.get("lookups", {}).get("units")),
    ("topics of the deployment (area units share one task topic; DLQs included)", "",
     lambda r: r.get("lookups", {}).get("deployment_topics")),
    ("areas", "", lambda r: r.get("lookups", {}).get("areas")),
    ("catalogue load", "s", lambda r: r.get("lookups", {}).get("catalogue_load_s")),
    ("catalogue in memory", "MiB", lambda r: r.get("lookups", {}).get("catalogue_rss_mib")),
    ("routing: route() calls", "/s", lambda r: r.get("lookups", {}).get("routing", {}).get("per_s")),
    ("locate: point -> grid", "/s", lambda r: r.get("lookups", {}).get("locate", {}).get("per_s")),
    ("routing, per CPU second (the machine is shared)", "/s", lambda r: r.get("lookups", {}).get("routing", {}).get("cpu_per_s")),
    ("locate, per CPU second", "/s", lambda r: r.get("lookups", {}).get("locate", {}).get("cpu_per_s")),
    ("classifier trained (once, then cached)", "s CPU", lambda r: r.get("classifier", {}).get("train_cpu_s")),
    ("unit task topics created for the run", "", lambda r: r.get("hub", {}).get("unit_topics")),
    ("hub start: every service started", "s", lambda r: r.get("hub", {}).get("start_s")),
    ("pipeline tickets/s (intake -> closed)", "/s", lambda r: r.get("pipeline", {}).get("tickets_per_s")),
    ("pipeline events/s (all topics)", "/s", lambda r: r.get("pipeline", {}).get("events_per_s")),
    ("pipeline tickets closed", "", lambda r: _closed(r.get("pipeline", {}))),
)


def _closed(pipeline: dict[str, Any]) -> str | None:
    return f"{pipeline['closed']}/{pipeline['tickets']}" if "tickets" in pipeline else None


def city_table(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per figure, one column per city (in run order); memory per service after the fixed figures."""
    rows = [{"figure": f, "unit": u, "values": {name: get(r) for name, r in results.items()}} for f, u, get in CITY_FIGURES]
    services = dict.fromkeys(s for r in results.values() for s in r.get("memory", {}).get("started_bytes", {}))
    for moment, label in (("started_bytes", "RSS once started"), ("peak_bytes", "peak RSS by the end of the burst")):
        for service in services:
            values = {name: _mib(r.get("memory", {}).get(moment, {}).get(service)) for name, r in results.items()}
            rows.append({"figure": f"{label}: {service}", "unit": "MiB", "values": values})
        totals = {name: _mib(sum(r.get("memory", {}).get(moment, {}).values()) or None) for name, r in results.items()}
        rows.append({"figure": f"{label}: whole hub (sum)", "unit": "MiB", "values": totals})
    return rows


def _mib(value: int | None) -> float | None:
    return None if value is None else round(value / 2 ** 20, 1)


def format_city_table(rows: list[dict[str, Any]], cities: Sequence[str]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) >= 10 else f"{v:,.2f}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    header = ["figure", "unit", *cities]
    lines = [[r["figure"], r["unit"], *(fmt(r["values"].get(c)) for c in cities)] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) if i >= 2 else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))) for line in lines]
    return "\n".join(out)
