"""Domain -> item classification (domain.hierarchical): chosen for a large list of catalogue codes, it predicts
like a classifier (every label scored, the right one first on what it learned) and survives save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from domain.catalogue import Catalogue, load_catalogue
from domain.classifier import HIERARCHY_MIN_LABELS, ComplaintClassifier, seed_examples, uses_hierarchy
from domain.hierarchical import HierarchicalLinearSVC, group_of


def test_only_a_large_list_of_dotted_codes_in_several_domains_trains_by_domain() -> None:
    many = [f"d{i % 7}.item-{i}" for i in range(HIERARCHY_MIN_LABELS)]
    assert uses_hierarchy(many)
    assert not uses_hierarchy(many[:-1])  # one label short
    assert not uses_hierarchy([f"d.item-{i}" for i in range(HIERARCHY_MIN_LABELS)])  # one domain: nothing to split
    assert not uses_hierarchy([*many, "Noise - Residential"])  # a label that is no catalogue code
    assert not uses_hierarchy([c.code for c in load_catalogue().categories])  # the small city: 68, flat as measured
    assert group_of("housing.lift-broken") == "housing" and group_of("Noise") == "Noise"


def _toy() -> tuple[sparse.csr_matrix, np.ndarray]:
    """One feature per label (plus one per domain): domain a has three items, b two, c one."""
    labels = ["a.x", "a.y", "a.z", "b.x", "b.y", "c.only"]
    domain_col = {"a": 6, "b": 7, "c": 8}
    rows, y = [], []
    for i, label in enumerate(labels):
        for _ in range(5):
            row = np.zeros(9)
            row[i] = 1.0
            row[domain_col[group_of(label)]] = 1.0
            rows.append(row)
            y.append(label)
    return sparse.csr_matrix(np.asarray(rows)), np.asarray(y)


def test_every_label_is_scored_and_the_learned_one_wins() -> None:
    x, y = _toy()
    model = HierarchicalLinearSVC().fit(x, list(y))
    assert list(model.classes_) == sorted(set(y))
    scores = model.decision_function(x)
    assert scores.shape == (len(y), 6)
    assert (model.classes_[scores.argmax(axis=1)] == y).all()
    assert sparse.issparse(model.item_coef_) and model.item_coef_.dtype == np.float32
    # An item's weights are zero on features its domain's texts never contain.
    a_x = list(model.classes_).index("a.x")
    assert set(model.item_coef_[a_x].indices) <= {0, 1, 2, 6}


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return load_catalogue()


def test_a_classifier_forced_to_train_by_domain_predicts_and_round_trips(cat: Catalogue, tmp_path: Path) -> None:
    examples = seed_examples(cat, per_keyword=2)
    model = ComplaintClassifier(nb_weighting=False, calibrate=False, hierarchical=True).fit(
        [e.text for e in examples], [e.category for e in examples])
    assert model.metadata["hierarchical"] is True
    unseen = seed_examples(cat, per_keyword=1, seed=11)
    predictions = model.predict_many([e.text for e in unseen])
    right = sum(p.category == e.category for p, e in zip(predictions, unseen)) / len(unseen)
    assert right > 0.8, right
    again = ComplaintClassifier.load(model.save(tmp_path / "model.joblib"))
    assert again.hierarchical is True
    texts = [e.text for e in unseen[:50]]
    assert np.allclose(again.probabilities(texts), model.probabilities(texts))
    assert "_weights_by_feature" not in again._pipeline.named_steps["model"].__getstate__()


def test_the_small_city_still_trains_one_flat_model(cat: Catalogue) -> None:
    examples = seed_examples(cat, per_keyword=1)
    model = ComplaintClassifier(nb_weighting=False, calibrate=False).fit(
        [e.text for e in examples], [e.category for e in examples])
    assert model.metadata["hierarchical"] is False
    assert type(model._pipeline.named_steps["model"]).__name__ == "LinearSVC"


def test_the_temperature_is_found_on_a_sample_of_a_large_score_matrix() -> None:
    """Above TEMPERATURE_CELLS the fit reads evenly spaced rows only, and still finds the temperature that
    generated the answers."""
    from domain.classifier import TEMPERATURE_CELLS, fit_temperature, softmax

    rng = np.random.default_rng(14)
    scores = rng.normal(0.0, 3.0, size=(4000, 1500))
    assert scores.size > TEMPERATURE_CELLS
    probabilities = softmax(scores, 0.8)
    truth = [int(rng.choice(1500, p=row)) for row in probabilities]
    assert fit_temperature(scores, truth) == pytest.approx(0.8, rel=0.1)
