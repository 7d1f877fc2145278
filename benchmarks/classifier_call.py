"""CPU per text of one classifier call, by how many texts the call holds: scikit-learn's pipeline against
QuickScorer (domain.quick_scores), same model, same texts, in one run; and the largest score difference.

Discover and triage classify the tickets of one batch per call: at a city's normal rate, one or two.

    PYTHONPATH=. .venv/bin/python benchmarks/classifier_call.py [--model FILE] [--texts 800]

Without --model, the catalogue-trained default is trained first (about a minute); `cityops bench` leaves one in
.cache/bench/triage-default-*.model.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(__file__).resolve().parents[1] / "data"


def real_texts(limit: int) -> list[str]:
    """Complaints in both languages from the repository's samples (message board, NYC 311)."""
    texts: list[str] = []
    for path, columns in ((DATA / "teddycup2020" / "messages.csv", slice(None)),
                          (DATA / "nyc311" / "nyc311_2026_subset.csv", slice(0, 8))):
        with path.open(encoding="utf-8") as f:
            texts += [" ".join(row[columns]) for _, row in zip(range(limit // 2), csv.reader(f))]
    return texts


def cpu_ms_per_text(call: object, texts: list[str], size: int, budget_texts: int = 600) -> float:
    batches = [texts[i:i + size] for i in range(0, min(len(texts), budget_texts), size)]
    started = time.process_time()
    for batch in batches:
        call(batch)  # type: ignore[operator]
    return (time.process_time() - started) / sum(len(b) for b in batches) * 1e3


def main() -> None:
    import numpy as np

    from domain.classifier import ComplaintClassifier, _scores, default_classifier
    from domain.quick_scores import QuickScorer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path)
    ap.add_argument("--texts", type=int, default=800)
    args = ap.parse_args()
    classifier = ComplaintClassifier.load(args.model) if args.model else default_classifier()
    pipeline = classifier._pipeline
    scorer = QuickScorer.for_pipeline(pipeline)
    if scorer is None:
        sys.exit("this model's pipeline has a shape QuickScorer does not take")
    texts = real_texts(args.texts)
    _scores(pipeline, texts[:50])  # warm up both paths (jieba's dictionary, caches)
    scorer.scores(texts[:50])
    difference = float(np.abs(_scores(pipeline, texts) - scorer.scores(texts)).max())
    print(f"{len(texts)} texts, largest score difference {difference:.1e}")
    print("texts per call | scikit-learn ms CPU/text | QuickScorer ms CPU/text | ratio")
    for size in (1, 2, 8, 32, 64, 128):
        slow = cpu_ms_per_text(lambda b: _scores(pipeline, b), texts, size)
        fast = cpu_ms_per_text(scorer.scores, texts, size)
        print(f"{size:>14} | {slow:>24.3f} | {fast:>23.3f} | {slow / fast:5.1f}x")


if __name__ == "__main__":
    main()
