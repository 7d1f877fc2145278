"""QuickScorer (domain.quick_scores): the classifier's few-text path gives scikit-learn's scores exactly, for every
model shape the classifier trains, and steps aside for any pipeline it does not know."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from domain import quick_scores
from domain.classifier import QUICK_MAX_TEXTS, ComplaintClassifier, _scores
from domain.quick_scores import QuickScorer

DATA = Path(__file__).resolve().parents[2] / "data"

TRAIN = [
    ("小区路灯坏了好几天了", "street-light"), ("路灯不亮，晚上很黑", "street-light"), ("The street light is out", "street-light"),
    ("楼下烧烤店油烟太大", "smoke"), ("饭店油烟直排扰民", "smoke"), ("Smoke from the restaurant every night", "smoke"),
    ("工地夜间施工噪音很大", "noise"), ("楼上装修太吵了", "noise"), ("Loud construction noise after 10pm", "noise"),
    ("停水一整天了", "water"), ("自来水发黄不能喝", "water"), ("No water in the building since morning", "water"),
]


def _texts() -> list[str]:
    """Texts the models never saw: real complaints in both languages, plus the awkward ones."""
    texts = ["", "   ", "12345 678", "！！！", "路灯", "street", "完全陌生的词语组合 zyxw qqq"]
    with (DATA / "teddycup2020" / "messages.csv").open(encoding="utf-8") as f:
        texts += [" ".join(row) for _, row in zip(range(60), csv.reader(f))]
    with (DATA / "nyc311" / "nyc311_2026_subset.csv").open(encoding="utf-8") as f:
        texts += [" ".join(row[:8]) for _, row in zip(range(60), csv.reader(f))]
    return texts


def _trained(**params: object) -> ComplaintClassifier:
    texts, labels = zip(*TRAIN, strict=True)
    return ComplaintClassifier(calibrate=False, **params).fit(list(texts), list(labels))  # type: ignore[arg-type]


@pytest.mark.parametrize("params", [{"nb_weighting": True}, {"nb_weighting": False}, {"hierarchical": True}],
                         ids=["nb-svm", "linear-svm", "domain-item"])
def test_quick_scores_equal_scikit_learns_for_every_model_shape(params: dict[str, object]) -> None:
    classifier = _trained(**params)
    scorer = QuickScorer.for_pipeline(classifier._pipeline)
    assert scorer is not None
    texts = _texts()
    np.testing.assert_allclose(scorer.scores(texts), _scores(classifier._pipeline, texts), rtol=0, atol=1e-9)


def test_a_two_label_model_keeps_scikit_learns_single_margin() -> None:
    texts, labels = zip(*[(t, label) for t, label in TRAIN if label in ("noise", "water")], strict=True)
    classifier = ComplaintClassifier(calibrate=False, nb_weighting=False).fit(list(texts), list(labels))
    scorer = QuickScorer.for_pipeline(classifier._pipeline)
    assert scorer is not None
    got = scorer.scores(["楼上太吵", "停水了"])
    assert got.shape == (2,)
    np.testing.assert_allclose(got, classifier._pipeline.decision_function(["楼上太吵", "停水了"]), atol=1e-9)


def test_one_ticket_is_predicted_as_a_large_batch_would_predict_it() -> None:
    classifier = _trained()
    texts = _texts()
    assert len(texts) > QUICK_MAX_TEXTS  # this call takes scikit-learn's path ...
    in_bulk = classifier.probabilities(texts)
    one_by_one = np.vstack([classifier.probabilities([t]) for t in texts])  # ... these the quick one
    assert isinstance(classifier._quick, QuickScorer)
    np.testing.assert_allclose(one_by_one, in_bulk, rtol=0, atol=1e-9)
    assert [p.category for p in classifier.predict_many(texts)] == [classifier.predict(t).category for t in texts]


def test_a_saved_and_loaded_model_builds_its_quick_path_again(tmp_path: Path) -> None:
    classifier = _trained()
    classifier.predict("路灯坏了")
    loaded = ComplaintClassifier.load(classifier.save(tmp_path / "m.model"))
    assert loaded._quick is False  # built on first use, never read from the file
    assert loaded.predict("路灯坏了") == classifier.predict("路灯坏了")
    assert isinstance(loaded._quick, QuickScorer)


def test_a_pipeline_of_another_shape_keeps_scikit_learns_path() -> None:
    classifier = _trained()
    vectorizer = classifier._pipeline.named_steps["features"].transformer_list[0][1]
    vectorizer.set_params(norm="l1")  # arithmetic QuickScorer does not do
    assert QuickScorer.for_pipeline(classifier._pipeline) is None
    assert classifier.predict("路灯坏了").category  # still predicts, the slow way
    assert classifier._quick is None


def test_a_scorer_that_disagrees_with_the_pipeline_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    classifier = _trained()
    original = quick_scores._tfidf_row

    def off_by_a_little(block: object, text: str) -> object:
        columns, values = original(block, text)  # type: ignore[arg-type]
        return columns, (values * 1.001 if columns else values)

    monkeypatch.setattr(quick_scores, "_tfidf_row", off_by_a_little)
    assert QuickScorer.for_pipeline(classifier._pipeline) is None
