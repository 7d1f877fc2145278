"""NB-SVM: linear SVMs on naive-Bayes-weighted features, a pipeline step of domain.classifier.

Its own module because a scikit-learn estimator must subclass scikit-learn's base classes (importing it),
while domain.classifier is imported by `cityops --help` and must not load scikit-learn; a saved model
refers to this class by its module path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.svm import LinearSVC


class NBLinearSVC(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """NB-SVM (Wang & Manning 2012): one linear SVM per label (one against the rest) on the features scaled by
    that label's naive-Bayes log-count ratio, log(P(feature | label) / P(feature | other labels)), so words
    typical of a label weigh more before the margin is fitted. Measured on the real Chinese messages (stratified
    70/30, seeds 2026-2033): top-1 0.848 on average against the plain SVM's 0.828, at the same cost."""

    def __init__(self, c: float = 5.0, max_iter: int = 5000, balanced: bool = True, alpha: float = 1.0) -> None:
        self.c, self.max_iter, self.balanced = c, max_iter, balanced
        self.alpha = alpha  # Laplace smoothing of the feature counts

    def fit(self, x: Any, y: Sequence[str], sample_weight: Sequence[float] | None = None) -> NBLinearSVC:
        labels = np.asarray(y)
        weights = np.ones(len(labels)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        present = (x > 0).astype(float).multiply(weights[:, None]).tocsr()
        self.classes_ = np.unique(labels)
        rows, intercepts = [], []
        for label in self.classes_:
            mine = labels == label
            p = self.alpha + np.asarray(present[mine].sum(axis=0)).ravel()
            q = self.alpha + np.asarray(present[~mine].sum(axis=0)).ravel()
            ratio = np.log((p / p.sum()) / (q / q.sum()))
            svm = LinearSVC(C=self.c, max_iter=self.max_iter, class_weight="balanced" if self.balanced else None)
            svm.fit(x.multiply(ratio).tocsr(), mine, sample_weight=weights)
            # w . (r * x) = (w * r) . x: the ratio folds into the weights, so predicting is one product
            rows.append(svm.coef_.ravel() * ratio)
            intercepts.append(svm.intercept_[0])
        self.coef_ = np.vstack(rows)
        self.intercept_ = np.asarray(intercepts)
        return self

    def decision_function(self, x: Any) -> Any:
        return np.asarray(x @ self.coef_.T) + self.intercept_
