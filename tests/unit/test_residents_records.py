"""The residents' base-data CSV (domain.residents.records): each bad row is reported with its line and
field and skipped, the good rows still come through; names are never kept whole."""

from __future__ import annotations

from datetime import date

from domain.residents.generate import Site, generate
from domain.residents.records import RESIDENT_COLUMNS, Resident, RowError, display_name, read_residents

TODAY = date(2026, 6, 1)
HEADER = ",".join(RESIDENT_COLUMNS)
GOOD = "R1,张三,1950-03-04,M,HH1,H1,阳光花园1号楼,grid-east-1-a-1,,,,,,,1,,"


def read(*rows: str, grids: set[str] | None = None) -> list[Resident | RowError]:
    return list(read_residents([HEADER, *rows], TODAY, grids))


def test_a_good_row_keeps_only_the_surname() -> None:
    [r] = read(GOOD)
    assert isinstance(r, Resident)
    assert r.display_name == "张某" and r.lives_alone and r.household_registered and r.birth_date == date(1950, 3, 4)
    assert "张三" not in repr(r)


def test_bad_rows_are_reported_with_line_and_field_and_the_rest_still_read() -> None:
    out = read(GOOD, "R2,李四,1950-13-01,M,HH1,H1,x,grid-east-1-a-1,,,,,,,,,",
               "R3,王五,1950-01-01,X,HH1,H1,x,grid-east-1-a-1,,,,,,,,,",
               "R4,赵六,1950-01-01,F,HH1,H1,x,grid-east-1-a-1,physical,7,,,,,,,",
               "R5,孙七,1950-01-01,F,HH1,H1,x,grid-east-1-a-1,,,,,,,maybe,,",
               "R6,周八,1950-01-01,F,HH1,,x,grid-east-1-a-1,,,,,,,,,",
               "R1,张三,1950-03-04,M,HH1,H1,x,grid-east-1-a-1,,,,,,,,,",
               "R7,吴九,2030-01-01,F,HH1,H1,x,grid-east-1-a-1,,,,,,,,,",
               "R8,郑十,1960-01-01,F,HH1,H1,x,grid-east-1-a-1,,,2020-01-01,2026-13-40,,,,,")
    errors = [(e.line, e.field) for e in out if isinstance(e, RowError)]
    assert errors == [(3, "birth_date"), (4, "sex"), (5, "disability_grade"), (6, "lives_alone"), (7, "house_id"),
                      (8, "resident_id"), (9, "birth_date"), (10, "subsistence_recert_due")]
    assert [r.resident_id for r in out if isinstance(r, Resident)] == ["R1"]


def test_a_grid_the_city_lacks_is_refused() -> None:
    [e] = read(GOOD, grids={"grid-west-1-a-1"})
    assert isinstance(e, RowError) and e.field == "grid_id" and e.line == 2


def test_a_header_without_a_required_column_is_one_error() -> None:
    out = list(read_residents(["resident_id,name\n", "R1,张三\n"], TODAY))
    assert len(out) == 1 and isinstance(out[0], RowError) and out[0].line == 1 and out[0].field == "birth_date"


def test_display_names() -> None:
    assert display_name("欧阳娜娜") == "欧阳某" and display_name("李") == "李某" and display_name("wang fang") == "W."


def test_generated_rows_all_validate_and_every_rule_finds_someone() -> None:
    from domain.residents.rules import WeatherAlert, load_rules, scan

    residents_csv, houses_csv = generate([Site(f"g{i}", f"楼{i}") for i in range(20)], 3000, 1800, seed=7, today=TODAY)
    out = list(read_residents(residents_csv.splitlines(), TODAY))
    assert len(out) == 3000 and all(isinstance(r, Resident) for r in out)
    assert len(houses_csv.splitlines()) == 1801
    heat = WeatherAlert("heat-1", "heat-wave", TODAY, TODAY, None)
    rules = {f.rule.rule_id for f in scan([r for r in out if isinstance(r, Resident)], load_rules(), TODAY, alerts=(heat,))}
    assert rules >= {"old-age-allowance-70", "disability-care-subsidy", "subsistence-recertification",
                     "unemployment-registration", "elderly-alone-weather-visit"}
