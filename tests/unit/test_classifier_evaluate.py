"""`cityops triage evaluate`, the metrics behind it, the calibration of the classifier's probabilities and
the choice of the manual-triage threshold (no Kafka)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from domain.classifier import ComplaintClassifier, fit_temperature, softmax
from domain.classifier_metrics import (
    calibration_bins,
    choose_threshold,
    expected_calibration_error,
    macro_f1,
    score,
    threshold_table,
)
from services.triage.cli import app
from services.triage.evaluation import load_label_map, run_model, run_split

WIDE = {"COLUMNS": "200"}

# A tiny labelled set in both languages: three labels, words that tell them apart, some overlap.
TINY = [
    ("路灯坏了晚上一片黑", "light"), ("路灯不亮好几天", "light"), ("小区路灯闪个不停", "light"),
    ("street light is out", "light"), ("the lamp post light is broken", "light"), ("路灯杆歪了", "light"),
    ("家里停水了", "water"), ("自来水没有水压", "water"), ("停水一整天没人管", "water"),
    ("no water in the building", "water"), ("water main break on my street", "water"), ("水管爆了到处是水", "water"),
    ("楼上装修噪音太大", "noise"), ("晚上广场舞太吵", "noise"), ("隔壁装修电钻噪音", "noise"),
    ("loud music from the bar", "noise"), ("noise from construction at night", "noise"), ("噪音吵得睡不着", "noise"),
]


def _write(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "category"])
        writer.writerows(rows)
    return path


# ---------------------------------------------------------------------- metrics


def test_score_counts_top1_top3_macro_f1_and_confusions_by_hand() -> None:
    truth = ["a", "a", "b", "c"]
    ranked = [["a", "b", "c"], ["b", "a", "c"], ["b", "c", "a"], ["a", "b", "d", "c"]]
    scores = score(truth, ranked, confidences=[0.9, 0.6, 0.8, 0.7])
    assert scores.top1 == 0.5  # texts 1 and 3
    assert scores.top3 == 0.75  # text 4's true label is only 4th
    # F1: a: tp1 fp1 fn1 -> 0.5; b: tp1 fp1 fn0 -> 2/3; c: tp0 -> 0
    assert scores.macro_f1 == round((0.5 + 2 / 3 + 0) / 3, 4)
    assert {(c.true, c.predicted, c.count) for c in scores.confusions} == {("a", "b", 1), ("c", "a", 1)}
    assert scores.ece is not None and score(truth, ranked).ece is None  # no probabilities, no ECE


def test_macro_f1_weights_a_rare_label_as_much_as_a_frequent_one() -> None:
    truth = ["big"] * 9 + ["rare"]
    always_big = ["big"] * 10
    assert macro_f1(truth, always_big) == pytest.approx((2 * 9 / (18 + 1) + 0) / 2)
    assert macro_f1(truth, truth) == 1.0


def test_expected_calibration_error_is_zero_when_confidence_matches_accuracy_and_grows_with_overconfidence() -> None:
    # 10 predictions at 0.8 confidence, 8 right: calibrated.
    assert expected_calibration_error([0.8] * 10, [True] * 8 + [False] * 2) == pytest.approx(0.0)
    # Same answers claimed at 0.95 plus 10 at 0.55 that are all right: |0.95-0.8| and |0.55-1.0|, half each.
    confidences = [0.95] * 10 + [0.55] * 10
    correct = [True] * 8 + [False] * 2 + [True] * 10
    assert expected_calibration_error(confidences, correct) == pytest.approx(0.5 * 0.15 + 0.5 * 0.45)
    bins = calibration_bins(confidences, correct)
    assert [(b.low, b.n, b.accuracy) for b in bins] == [(0.5, 10, 1.0), (0.9, 10, 0.8)]


def test_threshold_table_and_choice_keep_the_most_tickets_automatic_that_reach_the_target() -> None:
    confidences = [0.95, 0.9, 0.85, 0.6, 0.55, 0.4, 0.3, 0.2]
    correct = [True, True, True, True, False, True, False, False]
    table = {r.threshold: r for r in threshold_table(confidences, correct, [0.0, 0.5, 0.6, 0.9])}
    assert table[0.0].to_people == 0.0 and table[0.0].accuracy_of_rest == 0.625
    assert table[0.5].to_people == 0.375 and table[0.5].accuracy_of_rest == 0.8
    assert table[0.6].to_people == 0.5 and table[0.6].accuracy_of_rest == 1.0
    chosen = choose_threshold(confidences, correct, target_accuracy=0.9, thresholds=[0.0, 0.5, 0.6, 0.9])
    assert chosen.reached and chosen.chosen.threshold == 0.6 and chosen.chosen.to_people == 0.5
    lower = choose_threshold(confidences, correct, target_accuracy=0.75, thresholds=[0.0, 0.5, 0.6, 0.9])
    assert lower.chosen.threshold == 0.5


def test_no_threshold_reaching_the_target_sends_everything_to_people() -> None:
    choice = choose_threshold([0.9, 0.8], [False, False], target_accuracy=0.5)
    assert not choice.reached and choice.chosen.to_people == 1.0
    with pytest.raises(ValueError):
        choose_threshold([0.9], [True], target_accuracy=0.0)


# ---------------------------------------------------------------------- calibration


def test_temperature_scaling_fits_the_temperature_that_matches_confidence_to_accuracy() -> None:
    rng = np.random.default_rng(3)
    n, k, true_temperature = 3000, 4, 3.0
    scores = rng.normal(0, 4, (n, k))
    # The truth is drawn from softmax(scores / 3): scores read at T=1 are overconfident by that factor.
    truth_probabilities = softmax(scores, true_temperature)
    truth = np.array([rng.choice(k, p=row) for row in truth_probabilities])
    t = fit_temperature(scores, list(truth))
    assert 2.5 < t < 3.6
    probs = softmax(scores, t)
    assert np.allclose(probs.sum(axis=1), 1.0)
    confidences, correct = probs.max(axis=1), probs.argmax(axis=1) == truth
    raw = softmax(scores, 1.0)
    assert expected_calibration_error(list(confidences), list(correct)) < 0.05
    assert expected_calibration_error(list(raw.max(axis=1)), list(correct)) > 0.2


def test_the_classifier_reports_calibrated_probabilities_and_keeps_its_temperature_when_saved(tmp_path: Path) -> None:
    texts, labels = [t for t, _ in TINY], [label for _, label in TINY]
    classifier = ComplaintClassifier().fit(texts, labels)
    assert classifier.temperature != 1.0 and classifier.metadata["temperature"] == round(classifier.temperature, 4)
    probabilities = classifier.probabilities(["路灯又坏了", "no water again"])
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    prediction = classifier.predict("路灯又坏了")
    assert prediction.category == "light"
    assert math.isclose(prediction.confidence, float(probabilities[0].max()), abs_tol=1e-6)
    loaded = ComplaintClassifier.load(classifier.save(tmp_path / "m.joblib"))
    assert loaded.temperature == classifier.temperature
    assert loaded.predict("路灯又坏了") == prediction
    uncalibrated = ComplaintClassifier(calibrate=False).fit(texts, labels)
    assert uncalibrated.temperature == 1.0


# ---------------------------------------------------------------------- evaluation runs


def test_run_model_translates_catalogue_codes_with_a_label_map_adding_their_probabilities(tmp_path: Path) -> None:
    texts = ["路灯坏了", "路灯不亮", "street light out", "家里停水", "no water", "自来水停了", "wages unpaid", "拖欠工资"]
    codes = ["city-management.street-light"] * 3 + ["water.outage"] * 3 + ["social-security.unpaid-wages"] * 2
    classifier = ComplaintClassifier(calibrate=False).fit(texts, codes)
    label_map = tmp_path / "map.yaml"
    label_map.write_text("mapping:\n  city-management: 城乡建设\n  water: 城乡建设\n  social-security: null\n", encoding="utf-8")
    mapping = load_label_map(label_map)
    run = run_model(classifier, ["路灯坏了", "拖欠工资"], ["城乡建设", "劳动和社会保障"], name="m", label_map=mapping)
    # Two codes share 城乡建设: its probability is their sum, so it wins the first text outright.
    assert run.scores.top1 == 0.5
    assert run.scores.confusions[0].true == "劳动和社会保障" and run.scores.confusions[0].predicted == "(unmapped)"
    probabilities = classifier.probabilities(["路灯坏了"])[0]
    summed = sum(p for label, p in zip(classifier.labels, probabilities) if not label.startswith("social"))
    assert run.thresholds and run.latency is not None and run.latency.n == 2
    assert run.calibration[-1].confidence <= 1.0
    assert summed > 0.5


def test_run_split_scores_ours_and_the_baseline_on_the_same_held_back_rows() -> None:
    texts, labels = [t for t, _ in TINY], [label for _, label in TINY]
    split = run_split(texts, labels, holdout=0.34, seed=1)
    assert split.n_train + split.n_test == len(TINY)
    assert split.ours.scores.n == split.baseline.scores.n == split.n_test
    assert split.ours.scores.ece is not None and split.baseline.scores.ece is None
    assert split.baseline.name.startswith("baseline")


def test_cli_evaluate_a_saved_model_on_a_tiny_csv_prints_every_figure(tmp_path: Path) -> None:
    texts, labels = [t for t, _ in TINY], [label for _, label in TINY]
    model = ComplaintClassifier().fit(texts, labels).save(tmp_path / "m.joblib")
    test_rows = [("路灯晚上不亮", "light"), ("停水了好几天", "water"), ("装修太吵了", "noise"), ("水管坏了", "light")]
    data = _write(tmp_path / "eval.csv", test_rows)
    runner = CliRunner()
    as_json = runner.invoke(app, ["evaluate", "--csv", str(data), "--model", str(model), "--json"], env=WIDE)
    assert as_json.exit_code == 0, as_json.output
    result = json.loads(as_json.output)
    loaded = ComplaintClassifier.load(model)
    expected_top1 = sum(loaded.predict(t).category == y for t, y in test_rows) / len(test_rows)
    scores = result["model"]["scores"]
    assert scores["n"] == 4 and scores["top1"] == round(expected_top1, 4)
    assert {"top3", "macro_f1", "ece", "confusions"} <= set(scores)
    assert result["model"]["threshold"]["target_accuracy"] == 0.9
    text = runner.invoke(app, ["evaluate", "--csv", str(data), "--model", str(model)], env=WIDE)
    assert text.exit_code == 0, text.output
    for phrase in ("top-1", "top-3", "macro-F1", "ECE", "p99", "threshold" if "threshold" in text.output else "no threshold"):
        assert phrase in text.output


def test_cli_evaluate_holdout_prints_ours_and_the_baseline(tmp_path: Path) -> None:
    data = _write(tmp_path / "all.csv", TINY)
    result = CliRunner().invoke(app, ["evaluate", "--csv", str(data), "--holdout", "0.34", "--seed", "1"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "cityops classifier" in result.output and "baseline: char 1-2-gram TF-IDF + LinearSVC" in result.output
    assert result.output.count("top-1") == 2


def test_cli_evaluate_needs_exactly_one_data_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["evaluate"], env=WIDE)
    assert result.exit_code != 0 and "--csv or --nyc" in result.output


def test_cli_evaluate_repeat_scores_several_splits_and_prints_their_mean(tmp_path: Path) -> None:
    data = _write(tmp_path / "all.csv", TINY)
    args = ["evaluate", "--csv", str(data), "--holdout", "0.34", "--seed", "1", "--repeat", "3", "--json"]
    result = CliRunner().invoke(app, args, env=WIDE)
    assert result.exit_code == 0, result.output
    repeats = json.loads(result.output)["repeats"]
    assert [r["seed"] for r in repeats["per_seed"]] == [1, 2, 3]
    assert repeats["mean_ours"] == round(sum(r["ours"] for r in repeats["per_seed"]) / 3, 4)


def test_the_shipped_chinese_evaluation_set_matches_its_provenance() -> None:
    path = Path(__file__).resolve().parents[2] / "data" / "teddycup2020" / "messages.csv"
    with open(path, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["category"]] = counts.get(row["category"], 0) + 1
    assert len(rows) == 495 and all(row["text"].strip() for row in rows)
    assert counts == {"劳动和社会保障": 104, "城乡建设": 101, "教育文体": 96, "卫生计生": 58, "交通运输": 55,
                      "商贸旅游": 48, "环境保护": 33}
    mapping = load_label_map(path.with_name("catalogue_mapping.yaml"))
    assert {label for label in mapping.values() if label} == set(counts)
