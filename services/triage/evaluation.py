"""`cityops triage evaluate`: measure a classifier on labelled real text, and against a baseline.

Two ways:
* a saved (or the default, seed-trained) model on every row of a labelled file; ``label_map`` translates the
  model's catalogue codes into the file's labels (probabilities of codes with the same label are added);
* a fresh classifier and the issue's baseline (character 1-2-gram TF-IDF + a linear SVM, library defaults)
  trained on the same stratified part of a file and scored on the same held-back rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from domain.classifier import ComplaintClassifier, holdout_split
from domain.classifier_metrics import (
    Scores,
    ThresholdChoice,
    ThresholdRow,
    calibration_bins,
    choose_threshold,
    score,
    threshold_table,
)

# The accuracy operators accept from tickets the model classifies alone (the rest go to manual triage).
DEFAULT_TARGET_ACCURACY = 0.9

__all__ = [
    "DEFAULT_TARGET_ACCURACY",
    "ModelRun",
    "SplitRun",
    "baseline_pipeline",
    "load_label_map",
    "run_model",
    "run_split",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Latency(_Frozen):
    n: int = Field(description="Texts classified one at a time, in-process.")
    p50_ms: float = Field(description="Median wall time of one classification.")
    p99_ms: float = Field(description="99th percentile wall time.")
    cpu_p50_ms: float = Field(description="Median CPU time of this thread for one classification.")
    cpu_p99_ms: float = Field(description="99th percentile CPU time: the model's own cost, whatever else the machine runs.")


class ModelRun(_Frozen):
    """One classifier's figures on one set of labelled texts."""

    name: str
    scores: Scores
    threshold: ThresholdChoice | None = Field(description="None for a model without probabilities.")
    thresholds: tuple[ThresholdRow, ...] = ()
    calibration: tuple[Any, ...] = ()
    latency: Latency | None = None
    train_seconds: float | None = None


class SplitRun(_Frozen):
    """Ours and the baseline on the same stratified split."""

    n_train: int
    n_test: int
    holdout: float
    seed: int
    ours: ModelRun
    baseline: ModelRun


def load_label_map(path: Path) -> dict[str, str | None]:
    """``mapping:`` of catalogue code or domain -> label (or null), from YAML."""
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    mapping = data.get("mapping")
    if not isinstance(mapping, dict):
        raise ValueError(f"{path}: expected a 'mapping:' of catalogue code -> label")
    return {str(k): (str(v) if v else None) for k, v in mapping.items()}


def _mapped(code: str, mapping: Mapping[str, str | None]) -> str | None:
    """The most specific entry: the code itself, else its domain (the part before the first dot)."""
    if code in mapping:
        return mapping[code]
    return mapping.get(code.split(".", 1)[0])


def run_model(
    classifier: ComplaintClassifier,
    texts: Sequence[str],
    labels: Sequence[str],
    name: str,
    label_map: Mapping[str, str | None] | None = None,
    target_accuracy: float = DEFAULT_TARGET_ACCURACY,
    latency_sample: int = 300,
) -> ModelRun:
    """Score ``classifier`` on every text; with ``label_map`` its labels are translated first."""
    probabilities = classifier.probabilities(texts)
    names: Sequence[str | None] = list(classifier.labels)
    if label_map is not None:
        names = [_mapped(label, label_map) for label in classifier.labels]
    ranked, confidences = _ranked(probabilities, names)
    correct = [bool(r) and r[0] == t for r, t in zip(ranked, labels)]
    return ModelRun(
        name=name,
        scores=score(labels, ranked, confidences),
        threshold=choose_threshold(confidences, correct, target_accuracy),
        thresholds=tuple(threshold_table(confidences, correct)),
        calibration=tuple(calibration_bins(confidences, correct)),
        latency=measure_latency(classifier, texts[:latency_sample]),
        train_seconds=classifier.metadata.get("train_seconds"),
    )


def _ranked(probabilities: Any, names: Sequence[str | None]) -> tuple[list[list[str]], list[float]]:
    """Per text, the labels best first with their summed probability; a column without a name (a code the
    map sends nowhere) still takes its probability mass, as the answer "none of these"."""
    ranked: list[list[str]] = []
    confidences: list[float] = []
    for row in probabilities:
        totals: dict[str, float] = {}
        for name, p in zip(names, row):
            key = name if name is not None else "(unmapped)"
            totals[key] = totals.get(key, 0.0) + float(p)
        order = sorted(totals, key=lambda k: -totals[k])
        ranked.append(order)
        confidences.append(totals[order[0]])
    return ranked, confidences


def measure_latency(classifier: ComplaintClassifier, texts: Sequence[str]) -> Latency | None:
    """Wall and CPU time of ``predict`` (one text at a time, as triage does without a batch), after one
    warm-up. CPU time too: on a shared machine wall time measures the neighbours as much as the model."""
    if not texts:
        return None
    classifier.predict(texts[0])
    wall, cpu = [], []
    for text in texts:
        started, started_cpu = time.perf_counter(), time.thread_time()
        classifier.predict(text)
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.thread_time() - started_cpu) * 1000)
    return Latency(n=len(texts), p50_ms=_percentile(wall, 0.5), p99_ms=_percentile(wall, 0.99),
                   cpu_p50_ms=_percentile(cpu, 0.5), cpu_p99_ms=_percentile(cpu, 0.99))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 3)


def baseline_pipeline() -> Any:
    """The issue's baseline: character 1-2-gram TF-IDF and a linear SVM, every other setting the library's."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    return make_pipeline(TfidfVectorizer(analyzer="char", ngram_range=(1, 2)), LinearSVC())


def _baseline_run(train_texts: list[str], train_labels: list[str], texts: list[str], labels: list[str]) -> ModelRun:
    import numpy as np

    started = time.perf_counter()
    pipeline = baseline_pipeline().fit(train_texts, train_labels)
    seconds = round(time.perf_counter() - started, 3)
    scores = np.atleast_2d(pipeline.decision_function(texts))
    classes = [str(c) for c in pipeline.classes_]
    if len(classes) == 2:  # one margin for two labels
        scores = np.column_stack([-scores.ravel(), scores.ravel()])
    ranked = [[classes[j] for j in np.argsort(-row)] for row in scores]
    return ModelRun(name="baseline: char 1-2-gram TF-IDF + LinearSVC", scores=score(labels, ranked),
                    threshold=None, train_seconds=seconds)


def run_split(
    texts: Sequence[str],
    labels: Sequence[str],
    holdout: float,
    seed: int,
    make_classifier: Callable[[], ComplaintClassifier] = ComplaintClassifier,
    target_accuracy: float = DEFAULT_TARGET_ACCURACY,
) -> SplitRun:
    """Train ours and the baseline on the same stratified ``1 - holdout`` of the rows; score both on the rest."""
    train, test = holdout_split(labels, holdout, seed)
    train_texts, train_labels = [texts[i] for i in train], [labels[i] for i in train]
    test_texts, test_labels = [texts[i] for i in test], [labels[i] for i in test]
    classifier = make_classifier().fit(train_texts, train_labels)
    ours = run_model(classifier, test_texts, test_labels, name="cityops classifier", target_accuracy=target_accuracy)
    baseline = _baseline_run(train_texts, train_labels, test_texts, test_labels)
    return SplitRun(n_train=len(train), n_test=len(test), holdout=holdout, seed=seed, ours=ours, baseline=baseline)
