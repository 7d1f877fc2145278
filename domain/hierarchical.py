"""Domain -> item linear SVMs for a large responsibility list, a pipeline step of domain.classifier.

Its own module for the reason domain.nbsvm is: a scikit-learn estimator subclasses scikit-learn's classes, and
domain.classifier must import without scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import SGDClassifier
from sklearn.svm import LinearSVC


def group_of(label: str) -> str:
    """A catalogue code's domain: the part before its first dot (`housing.lift-broken` -> `housing`)."""
    return label.split(".", 1)[0]


class HierarchicalLinearSVC(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """One linear SVM that picks the domain, and one per domain that picks the item among that domain's items,
    trained only on that domain's texts. A label's score is its domain's score plus its own.

    Why: a flat one-against-the-rest SVM fits one model per label over every text, so its cost is labels x
    texts - at the large city's 1,326 items and 34,000 seed sentences, about 3 CPU minutes a fit and 4 fits
    with the calibration (measured: docs/city-scale.md). Here the domain model (hinge loss fitted by SGD) sees
    every text but only ~35 labels, and each item model ~40 labels over ~1/35 of the texts.
    An item model's weights are zero for every feature its domain's texts never contain, so they are kept
    sparse (float32): the model is a few MB where the flat one is labels x features dense."""

    def __init__(self, c: float = 5.0, max_iter: int = 5000, balanced: bool = True) -> None:
        self.c, self.max_iter, self.balanced = c, max_iter, balanced

    def _svm(self) -> LinearSVC:
        return LinearSVC(C=self.c, max_iter=self.max_iter, class_weight="balanced" if self.balanced else None)

    def fit(self, x: Any, y: Sequence[str], sample_weight: Sequence[float] | None = None) -> HierarchicalLinearSVC:
        labels = np.asarray(y)
        weights = np.ones(len(labels)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        self.classes_ = np.unique(labels)
        groups = np.asarray([group_of(str(label)) for label in labels])
        self.groups_ = np.unique(groups)
        x = sparse.csr_matrix(x)
        domain_coef, domain_intercept = self._fit_domains(x, groups, weights)
        self.domain_coef_ = domain_coef.astype(np.float32)
        self.domain_intercept_ = domain_intercept.astype(np.float32)
        group_index = {g: i for i, g in enumerate(self.groups_)}
        self.label_group_ = np.asarray([group_index[group_of(str(label))] for label in self.classes_])
        rows: list[Any] = [None] * len(self.classes_)
        intercepts = np.zeros(len(self.classes_), dtype=np.float32)
        label_index = {label: i for i, label in enumerate(self.classes_)}
        for group in self.groups_:
            mine = groups == group
            members = np.unique(labels[mine])
            if len(members) == 1:  # a domain of one item: the domain's score decides
                rows[label_index[members[0]]] = sparse.csr_matrix((1, x.shape[1]), dtype=np.float32)
                continue
            svm = self._svm().fit(x[mine], labels[mine], sample_weight=weights[mine])
            coef = svm.coef_ if len(members) > 2 else np.vstack([-svm.coef_[0] / 2, svm.coef_[0] / 2])
            inter = svm.intercept_ if len(members) > 2 else np.asarray([-svm.intercept_[0] / 2, svm.intercept_[0] / 2])
            for row, label in enumerate(svm.classes_):
                rows[label_index[label]] = sparse.csr_matrix(coef[row].astype(np.float32))
                intercepts[label_index[label]] = inter[row]
        self.item_coef_ = sparse.vstack(rows).tocsr()
        self.item_coef_.eliminate_zeros()
        self.item_intercept_ = intercepts
        return self

    def _fit_domains(self, x: Any, groups: Any, weights: Any) -> tuple[Any, Any]:
        if len(self.groups_) == 1:
            return np.zeros((1, x.shape[1])), np.zeros(1)
        # Stochastic gradient descent on the same hinge loss: liblinear took 130-180 s CPU on the 34,000 seed
        # sentences' 35 domains (its dual solver converges slowly on a noisy few-class problem), SGD 13 s at
        # 99.9 % domain accuracy on re-worded seed sentences (20 epochs; alpha 1e-5 beat 1e-4 by 0.3 points).
        svm = SGDClassifier(loss="hinge", alpha=1e-5, max_iter=20, tol=None, random_state=0,
                            class_weight="balanced" if self.balanced else None).fit(x, groups, sample_weight=weights)
        if len(self.groups_) == 2:
            return np.vstack([-svm.coef_[0] / 2, svm.coef_[0] / 2]), np.asarray([-svm.intercept_[0] / 2, svm.intercept_[0] / 2])
        return svm.coef_, svm.intercept_

    def decision_function(self, x: Any) -> Any:
        x = sparse.csr_matrix(x, dtype=np.float32)
        domain_weights, item_weights = self._weights()
        domains = np.asarray(x @ domain_weights) + self.domain_intercept_
        items = np.asarray((x @ item_weights).todense()) + self.item_intercept_
        return (domains[:, self.label_group_] + items).astype(np.float64)

    def _weights(self) -> tuple[Any, Any]:
        """The weights as features x labels, made once per loaded model: multiplying by the transposes makes
        numpy and scipy copy or convert the whole matrices on every call. Kept out of the pickle (built on first
        use), so a saved model stays the size of its coefficients."""
        weights = self.__dict__.get("_weights_by_feature")
        if weights is None:
            weights = (np.ascontiguousarray(self.domain_coef_.T), self.item_coef_.T.tocsr())
            self.__dict__["_weights_by_feature"] = weights
        return weights

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_weights_by_feature", None)  # derived on first use; a saved model holds the coefficients only
        return state
