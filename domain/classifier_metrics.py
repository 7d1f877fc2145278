"""How good is the classifier on labelled text, and how sure may it be before a person must look?

Pure functions over predictions (no model, no I/O): top-1 and top-3 accuracy, macro-F1, the most frequent
confusions, the expected calibration error of the reported probabilities, and the manual-triage threshold:
the lowest confidence at which the tickets the model keeps are right often enough, with the share it sends
to people. ``cityops triage evaluate`` prints them; triage's ``min_confidence`` default comes from them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CalibrationBin",
    "ConfusionPair",
    "Scores",
    "ThresholdChoice",
    "ThresholdRow",
    "calibration_bins",
    "choose_threshold",
    "expected_calibration_error",
    "macro_f1",
    "score",
    "threshold_table",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ConfusionPair(_Frozen):
    true: str = Field(description="The true label.")
    predicted: str = Field(description="The label predicted instead.")
    count: int = Field(description="How many texts made this mistake.")


class Scores(_Frozen):
    """A classifier's answers on labelled texts, measured."""

    n: int = Field(description="Texts evaluated.")
    top1: float = Field(description="Share whose best label is the true one.")
    top3: float = Field(description="Share whose true label is among the three best.")
    macro_f1: float = Field(description="F1 per true label, averaged with equal weight (rare labels count as much).")
    ece: float | None = Field(
        description="Expected calibration error of the top-1 probability (10 bins); None without probabilities."
    )
    confusions: tuple[ConfusionPair, ...] = Field(
        description="The most frequent (true, predicted) mistakes, most frequent first."
    )


class CalibrationBin(_Frozen):
    low: float = Field(description="Lower edge of the confidence bin (inclusive).")
    high: float = Field(description="Upper edge (exclusive, except 1.0).")
    n: int = Field(description="Predictions in the bin.")
    confidence: float = Field(description="Their mean reported probability.")
    accuracy: float = Field(description="Their share of correct answers.")


class ThresholdRow(_Frozen):
    threshold: float = Field(description="Predictions below this confidence go to a person.")
    to_people: float = Field(description="Share of tickets sent to manual triage.")
    accuracy_of_rest: float = Field(description="Accuracy of the tickets classified automatically (1.0 if none).")


class ThresholdChoice(_Frozen):
    target_accuracy: float = Field(description="The accuracy the automatically classified tickets must reach.")
    chosen: ThresholdRow = Field(description="The lowest threshold that reaches it (the most tickets kept automatic).")
    reached: bool = Field(description="False if no threshold reaches the target (then the chosen row sends all to people).")


def score(
    truth: Sequence[str],
    ranked: Sequence[Sequence[str]],
    confidences: Sequence[float] | None = None,
    max_confusions: int = 10,
) -> Scores:
    """Scores of predictions: ``ranked[i]`` lists the labels for text i, best first; ``confidences[i]`` is
    the probability the classifier gave its best label (omit when it has none, as the baseline SVM)."""
    if len(truth) != len(ranked) or (confidences is not None and len(confidences) != len(truth)):
        raise ValueError("truth, ranked and confidences must have the same length")
    n = len(truth)
    best = [r[0] if r else "" for r in ranked]
    correct = [t == b for t, b in zip(truth, best)]
    mistakes = Counter((t, b) for t, b in zip(truth, best) if t != b)
    return Scores(
        n=n,
        top1=_share(sum(correct), n),
        top3=_share(sum(t in r[:3] for t, r in zip(truth, ranked)), n),
        macro_f1=round(macro_f1(truth, best), 4),
        ece=None if confidences is None else round(expected_calibration_error(confidences, correct), 4),
        confusions=tuple(ConfusionPair(true=t, predicted=p, count=c) for (t, p), c in mistakes.most_common(max_confusions)),
    )


def macro_f1(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """Mean over the true labels of F1 = 2PR/(P+R); a label never predicted has F1 0."""
    labels = sorted(set(truth))
    if not labels:
        return 0.0
    total = 0.0
    for label in labels:
        tp = sum(t == label and p == label for t, p in zip(truth, predicted))
        fp = sum(t != label and p == label for t, p in zip(truth, predicted))
        fn = sum(t == label and p != label for t, p in zip(truth, predicted))
        total += 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return total / len(labels)


def calibration_bins(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> list[CalibrationBin]:
    """Predictions grouped by reported confidence into equal-width bins (empty bins left out)."""
    grouped: dict[int, list[int]] = {}
    for i, confidence in enumerate(confidences):
        grouped.setdefault(min(int(confidence * bins), bins - 1), []).append(i)
    return [
        CalibrationBin(
            low=b / bins,
            high=(b + 1) / bins,
            n=len(members),
            confidence=round(sum(confidences[i] for i in members) / len(members), 4),
            accuracy=round(sum(correct[i] for i in members) / len(members), 4),
        )
        for b, members in sorted(grouped.items())
    ]


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """Sum over bins of (share of predictions in the bin) x |mean confidence - accuracy|: how far "90 % sure"
    is from "right 90 % of the time". 0 is perfectly calibrated."""
    n = len(confidences)
    if n == 0:
        return 0.0
    return sum(b.n / n * abs(b.confidence - b.accuracy) for b in calibration_bins(confidences, correct, bins))


def threshold_table(
    confidences: Sequence[float], correct: Sequence[bool], thresholds: Sequence[float] | None = None
) -> list[ThresholdRow]:
    """For each threshold: the share of tickets a person gets (confidence below it) and the accuracy of
    those the model keeps."""
    n = len(confidences)
    if thresholds is None:
        thresholds = [round(0.05 * i, 2) for i in range(20)]
    rows = []
    for threshold in thresholds:
        kept = [ok for c, ok in zip(confidences, correct) if c >= threshold]
        rows.append(ThresholdRow(
            threshold=threshold,
            to_people=_share(n - len(kept), n),
            accuracy_of_rest=_share(sum(kept), len(kept)) if kept else 1.0,
        ))
    return rows


def choose_threshold(
    confidences: Sequence[float],
    correct: Sequence[bool],
    target_accuracy: float,
    thresholds: Sequence[float] | None = None,
) -> ThresholdChoice:
    """The lowest threshold whose automatically classified tickets are right at least ``target_accuracy``
    of the time: every ticket above it that a person is spared is one the target allows to spare."""
    if not 0.0 < target_accuracy <= 1.0:
        raise ValueError("target_accuracy must be in (0, 1]")
    table = threshold_table(confidences, correct, thresholds)
    for row in table:
        if row.to_people < 1.0 and row.accuracy_of_rest >= target_accuracy:
            return ThresholdChoice(target_accuracy=target_accuracy, chosen=row, reached=True)
    everyone = ThresholdRow(threshold=1.0, to_people=1.0, accuracy_of_rest=1.0)
    return ThresholdChoice(target_accuracy=target_accuracy, chosen=everyone, reached=False)


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0
