"""The generated city of the real size (issue 14): reproducible, of the sizes asked, geometrically sound, and its
committed catalogue is exactly what the generator writes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import shapely
from typer.testing import CliRunner

from domain.catalogue import Catalogue, load_catalogue
from domain.city import CITY_CATALOGUE_PATH, DEFAULT_SEED, MAP_SHA256, MapChecksumError, city_map_path, load_city_map
from domain.city.generate import catalogue_yaml, digest, geojson_gz_bytes
from domain.city.layout import CityLayout, generate_layout, largest_remainder, split_rect
from domain.city.matters import BUREAUS, DOMAINS
from services.triage.cli import app as triage_app
from services.triage.nyc311 import load_nyc_mapping


@pytest.fixture(scope="module")
def layout() -> CityLayout:
    return generate_layout(DEFAULT_SEED)


@pytest.fixture(scope="module")
def big() -> Catalogue:
    return load_catalogue(CITY_CATALOGUE_PATH)


def test_same_seed_same_city_other_seed_other_city() -> None:
    """(The catalogue's determinism is the next test: the committed file against a fresh run.)"""
    first, again, other = generate_layout(7), generate_layout(7), generate_layout(8)
    assert digest(geojson_gz_bytes(first)) == digest(geojson_gz_bytes(again))
    assert digest(geojson_gz_bytes(first)) != digest(geojson_gz_bytes(other))
    assert [a.name for a in first.areas] != [a.name for a in other.areas]


def test_the_committed_catalogue_and_map_digest_are_what_the_generator_makes(layout: CityLayout) -> None:
    assert digest(CITY_CATALOGUE_PATH.read_text(encoding="utf-8")) == digest(catalogue_yaml(layout)), (
        "the committed catalogue drifted from the generator: run `cityops city generate` and commit both"
    )
    assert digest(geojson_gz_bytes(layout)) == MAP_SHA256


def test_sizes_are_those_of_the_real_city(layout: CityLayout, big: Catalogue) -> None:
    levels = Counter(a.level for a in big.areas)
    assert 14 <= levels["district"] <= 15
    assert 140 <= levels["street"] <= 160
    assert 1_400 <= levels["community"] <= 1_600
    assert 15_000 <= levels["grid"] <= 16_000
    assert len(big.categories) == 1_326
    assert 50_000 <= len(layout.buildings) <= 120_000
    assert {"芝罘区", "福山区", "牟平区", "莱山区", "蓬莱区", "龙口市", "莱阳市", "莱州市", "招远市", "栖霞市", "海阳市"} <= {
        a.name for a in big.areas if a.level == "district"
    }


def test_every_area_polygon_is_valid_and_inside_its_parent_and_siblings_tile_it(layout: CityLayout) -> None:
    boxes = {a.id: shapely.box(*a.rect) for a in layout.areas}
    children = [a for a in layout.areas if a.parent is not None]
    child_geoms = [boxes[a.id] for a in children]
    parent_geoms = [boxes[a.parent] for a in children if a.parent is not None]
    assert shapely.is_valid(list(boxes.values())).all()
    assert not any(g.is_empty or g.area <= 0 for g in boxes.values())
    assert shapely.covers(parent_geoms, child_geoms).all()
    # Covered and of the same total area: the children tile the parent, no overlaps, no holes.
    area_of_children: Counter[str] = Counter()
    for child, geom in zip(children, child_geoms):
        area_of_children[child.parent or ""] += geom.area
    for parent_id, total in area_of_children.items():
        assert total == pytest.approx(boxes[parent_id].area, rel=1e-6), parent_id


def test_every_building_is_inside_its_grid(layout: CityLayout) -> None:
    rects = {a.id: a.rect for a in layout.areas}
    for b in layout.buildings:
        x0, y0, x1, y1 = rects[b.grid]
        assert x0 < b.lon < x1 and y0 < b.lat < y1, b


def test_names_read_like_the_places_they_are(big: Catalogue) -> None:
    streets = [a for a in big.areas if a.level == "street"]
    assert all(a.name.endswith(("街道", "镇")) for a in streets)
    assert len({a.name for a in streets}) == len(streets)
    assert all(a.name.endswith(("社区", "村")) for a in big.areas if a.level == "community")
    assert all("网格" in a.name for a in big.areas if a.level == "grid")
    for community in (a for a in big.areas if a.level == "community"):
        assert community.parent is not None


def test_the_responsibility_list_is_grouped_by_domain_with_branch_leads(big: Catalogue) -> None:
    small = load_catalogue()
    assert set(small.category_codes()) <= set(big.category_codes())  # the NYC mapping and old models stay valid
    assert {code for code in load_nyc_mapping().values() if code} <= set(big.category_codes())
    prefixes = Counter(code.split(".")[0] for code in big.category_codes())
    assert {d.code for d in DOMAINS} <= set(prefixes)
    assert len({c.name for c in big.categories}) == len(big.categories)
    ways = Counter("branch" if c.lead_branch_of else "area" if c.lead_by_area else "city" for c in big.categories)
    assert min(ways.values()) >= 50, ways
    # Every bureau with branches has one in each core district, named after the district.
    branch = big.unit("housing-zhifu")
    assert (branch.branch_of, branch.branch_area, branch.name) == ("housing", "zhifu", "芝罘区住房和城乡建设局")
    assert big.unit("public-security-laishan").name == "市公安局（非紧急警务）莱山分局"
    assert len([u for u in big.units if u.branch_of]) >= 250
    assert {b.id for b in BUREAUS} <= {u.id for u in big.units}


def test_a_branch_matter_routes_to_the_branch_of_the_tickets_district(big: Catalogue) -> None:
    grid_in_longkou = next(a.id for a in big.areas if a.level == "grid" and a.id.startswith("longkou-"))
    decision = big.route("housing.lift-broken", {"grid": grid_in_longkou})
    assert (decision.lead, decision.basis, decision.level) == ("housing-longkou", "district-branch", "district")
    changdao = next(a.id for a in big.areas if a.level == "grid" and a.id.startswith("changdao-"))
    assert big.route("housing.lift-broken", {"grid": changdao}).lead == "housing"  # no branch there: the bureau


def test_catalogue_check_prints_the_size_by_level() -> None:
    result = CliRunner().invoke(triage_app, ["catalogue", "--check", "--path", str(CITY_CATALOGUE_PATH)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "1,326 categories" in text
    assert "14 districts, 150 streets, 1,500 communities, 15,600 grids" in text
    assert "district branches" in text
    small = CliRunner().invoke(triage_app, ["catalogue", "--check"])
    assert "2 districts, 4 streets, 8 communities, 16 grids" in " ".join(small.output.split())


def test_the_map_is_generated_once_into_the_cache_and_checked(tmp_path: Path) -> None:
    path = city_map_path(tmp_path)
    assert digest(path.read_bytes()) == MAP_SHA256
    mtime = path.stat().st_mtime_ns
    assert city_map_path(tmp_path).stat().st_mtime_ns == mtime  # not rewritten
    assert len(load_city_map(tmp_path)["features"]) > 17_000
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")  # a damaged cache file is refused, not read
    with pytest.raises(MapChecksumError, match="not the committed"):
        load_city_map(tmp_path)


def test_largest_remainder_and_treemap_split_keep_their_totals() -> None:
    assert sum(largest_remainder(15_600, [1.0, 2.5, 0.3, 7.0], minimum=2)) == 15_600
    assert min(largest_remainder(10, [100.0, 0.0001], minimum=2)) == 2
    with pytest.raises(ValueError, match="at least 2"):
        largest_remainder(3, [1.0, 1.0], minimum=2)
    pieces = split_rect((0.0, 0.0, 1.0, 1.0), [1.0, 1.0, 2.0])
    assert sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in pieces) == pytest.approx(1.0)
    assert (pieces[2][2] - pieces[2][0]) * (pieces[2][3] - pieces[2][1]) == pytest.approx(0.5, abs=1e-6)
