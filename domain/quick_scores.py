"""The trained classifier's decision scores for a few texts, without scikit-learn's per-call machinery.

A hotline ticket is classified on its own most of the time (discover and triage each see batches of one or
two tickets at a city's normal rate). For one text, scikit-learn's `Pipeline.decision_function` spent about
2 ms of CPU, of which the actual work (three analyzers, a sparse product) was about a tenth: the rest was
input validation, the FeatureUnion's joblib dispatch and the output-container checks, once per transformer.

`QuickScorer` does the same arithmetic as the fitted `TfidfVectorizer`s and the linear model directly:
counts of the vocabulary's terms, `1 + log(count)` (sublinear tf), times idf, l2 normalisation, the
transformers' blocks side by side, then `X @ coef.T + intercept`. It is built only for the shapes it
knows (`QuickScorer.for_pipeline` returns None otherwise) and checks itself against the pipeline on probe
texts before it is used, so a scikit-learn upgrade that changes the arithmetic falls back to the slow path
instead of changing predictions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# Probe texts for the self-check: Chinese and English, a subject line, digits, an empty text.
PROBE_TEXTS: tuple[str, ...] = (
    "小区路灯坏了好几天了，晚上很黑，请尽快维修",
    "噪音扰民\n楼下商铺夜间施工到凌晨2点，多次反映无果",
    "Street light out on Main St near the school, dark at night",
    "No heat in apartment 4B since Monday\nlandlord not answering",
    "",
)
# Scores agree to float rounding (the same products, summed in another order).
TOLERANCE = 1e-9


@dataclass(frozen=True)
class _TfidfBlock:
    """One fitted TfidfVectorizer's arithmetic, as plain data."""

    analyze: Callable[[str], list[str]]
    vocabulary: dict[str, int]
    idf: Any  # numpy array, or None without idf
    sublinear: bool
    offset: int  # first column of this block in the union's output
    width: int


class QuickScorer:
    """Decision scores of a fitted FeatureUnion-of-TfidfVectorizers + linear model pipeline."""

    def __init__(self, blocks: list[_TfidfBlock], model: Any) -> None:
        import numpy as np

        self._blocks = blocks
        self._width = sum(b.width for b in blocks)
        self._model = model
        coef: Any = getattr(model, "coef_", None)
        intercept: Any = getattr(model, "intercept_", None)
        self._linear = type(model).__name__ in _LINEAR_MODELS and getattr(coef, "ndim", 0) == 2 and intercept is not None
        if self._linear:  # decision = X @ coef.T + intercept: a text's few columns of coef.T, summed
            self._coef_t = np.ascontiguousarray(coef.T)
            self._intercept = np.asarray(intercept, dtype=float)

    @classmethod
    def for_pipeline(cls, pipeline: Any) -> QuickScorer | None:
        """A scorer equal to `pipeline.decision_function`, or None when the pipeline is of another shape or
        the self-check on the probe texts disagrees."""
        blocks = _blocks_of(pipeline)
        model = getattr(pipeline, "named_steps", {}).get("model")
        if blocks is None or not callable(getattr(model, "decision_function", None)):
            return None
        scorer = cls(blocks, model)
        return scorer if scorer.agrees_with(pipeline, PROBE_TEXTS) else None

    def scores(self, texts: Sequence[str]) -> Any:
        """One row per text, one column per class (one column for a two-class model, as scikit-learn gives)."""
        rows = [[_tfidf_row(block, text) for block in self._blocks] for text in texts]
        if not self._linear:  # any other model (e.g. domain -> item SVMs) gets the features as scikit-learn would
            return self._model.decision_function(self._matrix(rows))
        import numpy as np

        out = np.tile(self._intercept, (len(texts), 1))
        for i, row in enumerate(rows):
            for columns, values in row:
                if columns:
                    out[i] += values @ self._coef_t[columns]
        return out[:, 0] if out.shape[1] == 1 else out

    def _matrix(self, rows: list[list[tuple[list[int], Any]]]) -> Any:
        import numpy as np
        from scipy import sparse

        indptr, indices, data = [0], [], []
        for row in rows:
            for columns, values in row:
                if columns:
                    order = np.argsort(columns)  # scikit-learn's rows have sorted columns
                    indices.append(np.asarray(columns)[order])
                    data.append(values[order])
            indptr.append(indptr[-1] + sum(len(c) for c, _ in row))
        return sparse.csr_matrix((np.concatenate(data) if data else np.zeros(0),
                                  np.concatenate(indices) if indices else np.zeros(0, dtype=np.int32), indptr),
                                 shape=(len(rows), self._width))

    def agrees_with(self, pipeline: Any, texts: Sequence[str]) -> bool:
        import numpy as np

        expected = np.asarray(pipeline.decision_function(list(texts)), dtype=float)
        got = self.scores(texts)
        return bool(got.shape == expected.shape and np.allclose(got, expected, rtol=0, atol=TOLERANCE))


# Linear models whose decision function is exactly X @ coef_.T + intercept_.
_LINEAR_MODELS = frozenset({"LinearSVC", "NBLinearSVC", "LogisticRegression"})


def _blocks_of(pipeline: Any) -> list[_TfidfBlock] | None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    union = getattr(pipeline, "named_steps", {}).get("features")
    parts = getattr(union, "transformer_list", None)
    if not parts or getattr(union, "transformer_weights", None):
        return None
    blocks, offset = [], 0
    for _name, vectorizer in parts:
        if type(vectorizer) is not TfidfVectorizer or vectorizer.binary or vectorizer.norm != "l2":
            return None
        idf = vectorizer.idf_ if vectorizer.use_idf else None
        width = len(vectorizer.vocabulary_)
        blocks.append(_TfidfBlock(vectorizer.build_analyzer(), vectorizer.vocabulary_, idf,
                                  bool(vectorizer.sublinear_tf), offset, width))
        offset += width
    return blocks


def _tfidf_row(block: _TfidfBlock, text: str) -> tuple[list[int], Any]:
    """The text's non-zero columns (in the union's numbering) and their tf-idf values, l2-normalised."""
    import numpy as np

    counts: dict[int, int] = {}
    vocabulary = block.vocabulary
    for term in block.analyze(text):
        j = vocabulary.get(term)
        if j is not None:
            counts[j] = counts.get(j, 0) + 1
    if not counts:
        return [], None
    local = list(counts)
    values = np.fromiter(counts.values(), dtype=float, count=len(counts))
    if block.sublinear:
        values = np.log(values) + 1.0
    if block.idf is not None:
        values = values * block.idf[local]
    norm = np.sqrt(values @ values)
    if norm > 0:
        values = values / norm
    return [block.offset + j for j in local], values
