"""Make data/nyc311/nyc311_2026_subset.csv from the 100,000-row merged NYC 311 sample (see PROVENANCE.md).

    python data/nyc311/make_subset.py SOURCE.csv data/nyc311/nyc311_2026_subset.csv

Deterministic (no random state): the same source always gives the same bytes. It keeps
* every row created on CURVE_DAY, the sample's busiest day, so the benchmark's arrival-curve phase
  (`cityops bench`, default window 2026-05-22 12:20, peak minute 12:46) replays real arrivals;
* one row in KEEP_ONE_IN of every other day, chosen by a hash of unique_key (stratified by day);
* the earliest row of every complaint type the two rules above missed, so every type stays present.
Columns and their order are unchanged; rows stay sorted by created_date as in the source.
"""

from __future__ import annotations

import csv
import hashlib
import sys

CURVE_DAY = "2026-05-22"
KEEP_ONE_IN = 50


def chosen_by_hash(unique_key: str) -> bool:
    return int(hashlib.sha256(unique_key.encode()).hexdigest(), 16) % KEEP_ONE_IN == 0


def subset(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    keep = [r["created_date"].startswith(CURVE_DAY) or chosen_by_hash(r["unique_key"]) for r in rows]
    present = {r["complaint_type"] for r, k in zip(rows, keep) if k}
    for i, row in enumerate(rows):
        if row["complaint_type"] not in present:
            keep[i] = True
            present.add(row["complaint_type"])
    return [r for r, k in zip(rows, keep) if k]


def main(source: str, target: str) -> None:
    with open(source, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields, rows = list(reader.fieldnames or []), list(reader)
    kept = subset(rows)
    with open(target, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
    print(f"{len(kept)} of {len(rows)} rows -> {target}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
