"""`cityops discover repeats`: how well repeat detection (并单) merges repeats and keeps problems apart, measured
on a labelled set (data/repeats/: NYC 311's real same-address same-type same-day repeats, and paraphrases).

Heavy imports (scikit-learn, the catalogue) happen inside the command so that `cityops --help` stays fast.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from domain import repeats
from services.common.settings import REPO_ROOT

app = typer.Typer(help="Repeat detection (并单): measure it on a labelled set.", no_args_is_help=True, add_completion=False)
console = Console()

DEFAULT_SETS = (REPO_ROOT / "data" / "repeats" / "paraphrases.csv", REPO_ROOT / "data" / "repeats" / "nyc311_repeats.csv")
_START = datetime(2026, 5, 22, 8, tzinfo=UTC)


def _float(cell: str | None) -> float | None:
    return float(cell) if cell else None


def load_labelled(path: Path, guess: Callable[[list[str]], list[str | None]] | None) -> list[repeats.LabelledComplaint]:
    """A labelled set's rows (columns scenario, group, ticket, minutes, text, and address, grid, lat, lon when
    known); the source is the scenario's prefix (zh-01 -> zh). `guess` gives each text the category discover
    would guess at registration."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    categories = guess([r["text"] for r in rows]) if guess else [None] * len(rows)
    out = []
    for r, category in zip(rows, categories):
        complaint = repeats.Complaint(ticket_id=r["ticket"], text=r["text"], category=category,
                                      submitted_at=_START + timedelta(minutes=float(r["minutes"])),
                                      grid=r.get("grid") or None, address=r.get("address") or None,
                                      lat=_float(r.get("lat")), lon=_float(r.get("lon")))
        out.append(repeats.LabelledComplaint(r["scenario"].split("-")[0], r["scenario"], r["group"], complaint))
    return out


@app.command("repeats")
def repeats_command(
    csv_files: list[Path] = typer.Option(list(DEFAULT_SETS), "--csv", exists=True, dir_okay=False,
                                         help="Labelled set(s); default data/repeats/paraphrases.csv and nyc311_repeats.csv."),
    min_similarity: float | None = typer.Option(None, "--min-similarity", min=0.0, max=1.0,
                                                help="Text similarity threshold; default discover's setting."),
    no_guess: bool = typer.Option(False, "--no-guess", help="No category guess: place, time and text only."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Replay each scenario of the labelled set through discover's repeat rules (in arrival order, as discover
    sees them) and print pairwise precision, recall and F1 per source and overall."""
    from domain.catalogue import load_catalogue
    from services.discover.settings import DiscoverSettings

    settings = DiscoverSettings()
    catalogue = load_catalogue()
    rules = repeats.RepeatRules(window=timedelta(hours=settings.merge_window_hours), radius_m=settings.merge_radius_m,
                                min_similarity=settings.merge_similarity if min_similarity is None else min_similarity,
                                min_similarity_same_category=settings.merge_similarity_same_category)
    guess = None if no_guess else category_guesser(catalogue, settings.state_dir, settings.guess_min_confidence)
    rows = [row for path in csv_files for row in load_labelled(path, guess)]
    totals = repeats.measure(rows, similarity_for(catalogue), rules)
    result = {source: {"precision": round(c.precision, 4), "recall": round(c.recall, 4), "f1": round(c.f1, 4),
                       "pairs_merged_right": c.true_positive, "pairs_merged_wrong": c.false_positive,
                       "pairs_missed": c.false_negative, "pairs_kept_apart": c.true_negative,
                       "complaints": sum(1 for r in rows if source in ("all", r.source))}
              for source, c in sorted(totals.items(), key=lambda kv: (kv[0] == "all", kv[0]))}
    if as_json:
        print(json.dumps({"min_similarity": rules.min_similarity, "min_similarity_same_category": rules.min_similarity_same_category,
                          "category_guess": not no_guess, "sources": result}, indent=2))
        return
    table = Table(title=f"repeat detection: min similarity {rules.min_similarity} ({rules.min_similarity_same_category} within one "
                        f"category), category guess {'off' if no_guess else 'on'}")
    for column in ("source", "complaints", "precision", "recall", "F1", "pairs right", "pairs wrong", "missed"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for source, r in result.items():
        table.add_row(source, str(r["complaints"]), f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}",
                      str(r["pairs_merged_right"]), str(r["pairs_merged_wrong"]), str(r["pairs_missed"]))
    console.print(table)


def similarity_for(catalogue: object) -> repeats.TextSimilarity:
    from services.discover.domain import similarity_for as build

    return build(catalogue)  # type: ignore[arg-type]


def category_guesser(catalogue: object, state_dir: Path, min_confidence: float) -> Callable[[list[str]], list[str | None]]:
    from domain.classifier import cached_default_classifier
    from services.discover.app import guess_model_dir
    from services.discover.domain import confident_guesses

    classifier = cached_default_classifier(guess_model_dir(state_dir), catalogue)  # type: ignore[arg-type]
    return lambda texts: confident_guesses(classifier, texts, min_confidence)
