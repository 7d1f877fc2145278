"""Derive NYC 311's real repeats from the vendored subset: python data/repeats/make_nyc_repeats.py

NYC geocodes each request to its address, so requests with the same coordinate were made about the same
address. Every address-day with two or more requests is a scenario; requests of the same complaint type in
it are one problem (a repeat group), different complaint types at it are different problems. The text is the
one the hub's NYC importer submits (services.triage.nyc311.nyc_row_text). Deterministic; rows left out only.

Data attribution: NYC Open Data, 311 Service Requests (erm2-nwe9); see data/nyc311/PROVENANCE.md.
"""

from __future__ import annotations

import csv
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from services.triage.nyc311 import nyc_row_text  # noqa: E402

SOURCE = ROOT / "data" / "nyc311" / "nyc311_2026_subset.csv"
TARGET = ROOT / "data" / "repeats" / "nyc311_repeats.csv"
COLUMNS = ["scenario", "group", "ticket", "minutes", "address", "grid", "lat", "lon", "text"]


def main() -> None:
    with open(SOURCE, newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["latitude"] and r["longitude"] and r["complaint_type"]]
    scenarios: dict[tuple[str, str, str], list[dict[str, str]]] = {}
    for r in rows:
        scenarios.setdefault((r["latitude"], r["longitude"], r["created_date"][:10]), []).append(r)
    out = []
    for n, (key, members) in enumerate(sorted((k, v) for k, v in scenarios.items() if len(v) > 1)):
        members.sort(key=lambda r: (r["created_date"], r["unique_key"]))
        start = datetime.fromisoformat(members[0]["created_date"])
        for r in members:
            minutes = (datetime.fromisoformat(r["created_date"]) - start).total_seconds() / 60
            out.append({"scenario": f"nyc-{key[2]}-{n:04d}", "group": r["complaint_type"], "ticket": f"nyc-{r['unique_key']}",
                        "minutes": f"{minutes:.1f}", "address": f"{r['incident_zip']} {r['city']}".strip(), "grid": "",
                        "lat": r["latitude"], "lon": r["longitude"], "text": nyc_row_text(r)})
    with open(TARGET, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(out)
    print(f"{TARGET.relative_to(ROOT)}: {len(out)} requests in {len({o['scenario'] for o in out})} address-days")


if __name__ == "__main__":
    main()
