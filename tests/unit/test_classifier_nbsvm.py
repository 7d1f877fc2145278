"""NB-SVM (domain/nbsvm.py): the naive-Bayes ratios folded into the weights give the per-label SVMs' own scores,
trained models use it and keep it through save/load, the catalogue-trained default keeps the plain SVM."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.svm import LinearSVC

from domain.classifier import ComplaintClassifier
from domain.nbsvm import NBLinearSVC

TEXTS = ["停水了 no water", "家里没水 water off", "自来水停了好几天", "路灯不亮 light out", "路灯坏了 dark street",
         "街灯一直不亮", "楼下噪音太大", "半夜施工噪音扰民"]
LABELS = ["water", "water", "water", "light", "light", "light", "noise", "noise"]


def test_folded_weights_score_like_each_labels_svm_on_ratio_scaled_features():
    rng = np.random.default_rng(7)
    x = sparse.csr_matrix(rng.random((30, 12)) * (rng.random((30, 12)) > 0.6))
    y = np.array(["a", "b", "c"] * 10)
    model = NBLinearSVC(c=1.0).fit(x, y)
    for j, label in enumerate(model.classes_):
        mine = y == label
        present = (x > 0).astype(float)
        p, q = 1 + np.asarray(present[mine].sum(0)).ravel(), 1 + np.asarray(present[~mine].sum(0)).ravel()
        ratio = np.log((p / p.sum()) / (q / q.sum()))
        svm = LinearSVC(C=1.0, class_weight="balanced", max_iter=5000).fit(x.multiply(ratio).tocsr(), mine)
        np.testing.assert_allclose(model.decision_function(x)[:, j], svm.decision_function(x.multiply(ratio).tocsr()), atol=1e-6)


def test_a_trained_model_uses_nb_weighting_and_keeps_it_through_save_and_load(tmp_path):
    model = ComplaintClassifier().fit(TEXTS, LABELS)
    assert type(model._pipeline.named_steps["model"]) is NBLinearSVC
    assert model.predict("路灯又不亮了").category == "light"
    loaded = ComplaintClassifier.load(model.save(tmp_path / "m.joblib"))
    assert loaded.nb_weighting and loaded.predict("家里停水").category == model.predict("家里停水").category
    plain = ComplaintClassifier(nb_weighting=False).fit(TEXTS, LABELS)
    assert type(plain._pipeline.named_steps["model"]) is LinearSVC
    assert not ComplaintClassifier.load(plain.save(tmp_path / "p.joblib")).nb_weighting


def test_the_catalogue_trained_default_keeps_the_plain_svm():
    from tests.harness.pipeline import default_classifier

    model = default_classifier()
    assert not model.nb_weighting and type(model._pipeline.named_steps["model"]) is LinearSVC
