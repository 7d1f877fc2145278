"""Make data/teddycup2020/messages.csv from the 2020 Teddy Cup "智慧政务" 附件2.xlsx (see PROVENANCE.md).

    python data/teddycup2020/make_subset.py 附件2.xlsx data/teddycup2020/messages.csv

Deterministic (no random state): the same workbook always gives the same bytes. Reads the .xlsx with the
standard library (an .xlsx is zipped XML), so no spreadsheet package is needed. It keeps every labelled row,
in the workbook's order, as three columns:
* message_id - 留言编号, unchanged;
* category - 一级分类 (the first-level label), unchanged;
* text - 留言主题 and 留言详情 joined by a newline, each with its runs of white space (the workbook pads the
  details with tabs and newlines) collapsed to one space and trimmed.
留言用户 (the poster's id) and 留言时间 (when) are left out: the classifier needs neither.
"""

from __future__ import annotations

import csv
import re
import sys
import xml.etree.ElementTree as ET
import zipfile

_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
HEADER = {"A": "留言编号", "C": "留言主题", "E": "留言详情", "F": "一级分类"}


def _shared_strings(book: zipfile.ZipFile) -> list[str]:
    if "xl/sharedStrings.xml" not in book.namelist():
        return []
    root = ET.fromstring(book.read("xl/sharedStrings.xml"))
    return ["".join(t.text or "" for t in si.iter(f"{_NS}t")) for si in root.findall(f"{_NS}si")]


def sheet_rows(path: str) -> list[dict[str, str]]:
    """The first sheet's rows as {column letter: cell text}."""
    with zipfile.ZipFile(path) as book:
        strings = _shared_strings(book)
        root = ET.fromstring(book.read("xl/worksheets/sheet1.xml"))
    rows = []
    for row in root.iter(f"{_NS}row"):
        cells = {}
        for cell in row.findall(f"{_NS}c"):
            column = re.match(r"[A-Z]+", cell.get("r", "")).group()  # type: ignore[union-attr]
            value = cell.find(f"{_NS}v")
            kind = cell.get("t")
            if kind == "s" and value is not None:
                cells[column] = strings[int(value.text or 0)]
            elif kind == "inlineStr":
                cells[column] = "".join(t.text or "" for t in cell.iter(f"{_NS}t"))
            else:
                cells[column] = value.text or "" if value is not None else ""
        rows.append(cells)
    return rows


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def subset(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    header, *body = rows
    if any(header.get(column) != name for column, name in HEADER.items()):
        raise SystemExit(f"unexpected header {header}; expected columns {HEADER}")
    kept = []
    for row in body:
        subject, details, category = _clean(row.get("C", "")), _clean(row.get("E", "")), _clean(row.get("F", ""))
        if category and (subject or details):
            kept.append({"message_id": _clean(row.get("A", "")), "category": category, "text": f"{subject}\n{details}"})
    return kept


def main(source: str, target: str) -> None:
    kept = subset(sheet_rows(source))
    with open(target, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["message_id", "category", "text"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
    print(f"{len(kept)} labelled rows -> {target}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
