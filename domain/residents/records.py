"""The residents' base-data CSV: one row per resident, validated row by row.

A bad row is reported with its line and field and skipped; the file never fails as a whole. The full name
is read but never kept: a base record holds the surname and 某 ("张某"), which is all a grid worker's task
needs to find the door (docs/privacy.md, docs/proactive.md).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date

RESIDENT_COLUMNS = (
    "resident_id", "name", "birth_date", "sex", "household_id", "house_id", "address", "grid_id",
    "disability_kind", "disability_grade", "subsistence_since", "subsistence_recert_due",
    "unemployed_since", "unemployment_registered", "lives_alone", "household_registered", "medical_insured",
)
REQUIRED = ("resident_id", "name", "birth_date", "sex", "house_id", "grid_id")
DISABILITY_KINDS = ("physical", "visual", "hearing", "speech", "intellectual", "mental", "multiple")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_TRUE, _FALSE = {"1", "y", "yes", "true", "是"}, {"", "0", "n", "no", "false", "否"}
# Two-character compound surnames keep both characters in the masked name (欧阳某, not 欧某).
_COMPOUND_SURNAMES = {"欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "令狐", "夏侯", "长孙",
                      "宇文", "司徒"}


@dataclass(frozen=True)
class Resident:
    """What the rules need of a resident, and no more (the name only as "张某")."""

    resident_id: str
    display_name: str
    birth_date: date
    sex: str
    household_id: str | None
    house_id: str
    address: str
    grid_id: str
    disability_kind: str | None = None
    disability_grade: int | None = None
    subsistence_since: date | None = None
    subsistence_recert_due: date | None = None
    unemployed_since: date | None = None
    unemployment_registered: bool = False
    lives_alone: bool = False
    household_registered: bool = True
    medical_insured: bool = True


@dataclass(frozen=True)
class RowError:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


class _Bad(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def display_name(name: str) -> str:
    """张三 -> 张某, 欧阳娜娜 -> 欧阳某; a Latin-script name keeps its first letter (Wang Fang -> W.)."""
    name = name.strip()
    if re.match(r"^[A-Za-z]", name):
        return name[0].upper() + "."
    surname = name[:2] if name[:2] in _COMPOUND_SURNAMES else name[:1]
    return surname + "某"


def _date(row: dict[str, str], field: str, required: bool = False) -> date | None:
    value = (row.get(field) or "").strip()
    if not value:
        if required:
            raise _Bad(field, "is required (YYYY-MM-DD)")
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _Bad(field, f"{value!r} is not a date (YYYY-MM-DD)") from None


def _flag(row: dict[str, str], field: str, default: bool) -> bool:
    value = (row.get(field) or "").strip().lower()
    if value == "" and field in row:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False if value else default
    raise _Bad(field, f"{value!r} is not a yes/no value (1/0, yes/no, true/false, 是/否)")


def _id(row: dict[str, str], field: str, required: bool) -> str | None:
    value = (row.get(field) or "").strip()
    if not value:
        if required:
            raise _Bad(field, "is required")
        return None
    if not _ID.match(value):
        raise _Bad(field, f"{value!r} is not an id (letters, digits, - and _, at most 64)")
    return value


def _disability(row: dict[str, str]) -> tuple[str | None, int | None]:
    kind = (row.get("disability_kind") or "").strip().lower() or None
    grade_text = (row.get("disability_grade") or "").strip()
    if kind is not None and kind not in DISABILITY_KINDS:
        raise _Bad("disability_kind", f"{kind!r} is not one of {', '.join(DISABILITY_KINDS)}")
    if not grade_text:
        if kind is not None:
            raise _Bad("disability_grade", "is required when disability_kind is given (1-4, 1 the most severe)")
        return None, None
    if grade_text not in {"1", "2", "3", "4"}:
        raise _Bad("disability_grade", f"{grade_text!r} is not a grade 1-4")
    if kind is None:
        raise _Bad("disability_kind", "is required when disability_grade is given")
    return kind, int(grade_text)


def parse_row(row: dict[str, str], today: date) -> Resident:
    """One CSV row as a resident, or `_Bad` naming the first wrong field."""
    for field in REQUIRED:
        if not (row.get(field) or "").strip():
            raise _Bad(field, "is required")
    birth = _date(row, "birth_date", required=True)
    assert birth is not None
    if birth > today or birth.year < today.year - 130:
        raise _Bad("birth_date", f"{birth} is not a plausible birth date")
    sex = row["sex"].strip().upper()
    if sex not in {"M", "F"}:
        raise _Bad("sex", f"{row['sex']!r} is not M or F")
    kind, grade = _disability(row)
    resident_id, house_id, grid_id = _id(row, "resident_id", True), _id(row, "house_id", True), _id(row, "grid_id", True)
    assert resident_id and house_id and grid_id
    return Resident(
        resident_id=resident_id, display_name=display_name(row["name"]), birth_date=birth, sex=sex,
        household_id=_id(row, "household_id", False), house_id=house_id, address=(row.get("address") or "").strip(),
        grid_id=grid_id, disability_kind=kind, disability_grade=grade,
        subsistence_since=_date(row, "subsistence_since"), subsistence_recert_due=_date(row, "subsistence_recert_due"),
        unemployed_since=_date(row, "unemployed_since"),
        unemployment_registered=_flag(row, "unemployment_registered", False), lives_alone=_flag(row, "lives_alone", False),
        household_registered=_flag(row, "household_registered", True), medical_insured=_flag(row, "medical_insured", True),
    )


def read_residents(lines: Iterable[str], today: date, known_grids: set[str] | None = None,
                   ) -> Iterator[Resident | RowError]:
    """Each data row as a Resident or a RowError (line numbers count the header as line 1). A file whose
    header lacks a required column yields one error for line 1 and nothing else. `known_grids`, when given,
    refuses a grid the city does not have."""
    reader = csv.DictReader(lines)
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or ())]
    if missing:
        yield RowError(1, missing[0], f"the header lacks the required column(s) {', '.join(missing)}")
        return
    seen: set[str] = set()
    for row in reader:
        line = reader.line_num
        try:
            resident = parse_row(row, today)
        except _Bad as bad:
            yield RowError(line, bad.field, str(bad))
            continue
        if known_grids is not None and resident.grid_id not in known_grids:
            yield RowError(line, "grid_id", f"{resident.grid_id!r} is not a grid of this city")
        elif resident.resident_id in seen:
            yield RowError(line, "resident_id", f"{resident.resident_id!r} appears twice")
        else:
            seen.add(resident.resident_id)
            yield resident
