"""The blind baseline: membership guessed from the texts alone, never from the model
(docs/method.md §13.3; Das, Zhang & Tramèr 2024).

A logistic regression on character n-grams (2–4, TF-IDF) is fitted to predict membership from
the text, 5-fold cross-fitted (folds stratified by membership): each record is scored by a model
fitted on the other folds, so no record's own membership enters its score; scores are rank
percentiles within each fold, so that the folds' models' different intercepts do not enter the
pooled AUC. On a split where members and non-members are drawn
from one distribution its AUC is chance (its interval covers 0.5 at the nominal rate); when its
interval excludes chance, the split is shifted (members and non-members differ in topic, date,
template, length…) and the model attacks' numbers on that split are not evidence of memorisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from miaudit.errors import InputError

#: Folds of the cross-fit.
BLIND_FOLDS = 5
BLIND_NAME = "blind_ngram"
BLIND_DESCRIPTION = (
    "membership guessed from the texts alone (character 2–4-gram logistic regression, "
    "5-fold cross-fitted); never looks at the model: above chance means the split is shifted"
)
BLIND_CITATION = "Das, Zhang & Tramèr, 2024 (blind baselines)"


def _folds(member: np.ndarray, seed: np.random.SeedSequence | int) -> np.ndarray:
    """Stratified fold of each record: members and non-members each dealt round-robin in a
    random order, so every fold holds both classes."""
    rng = np.random.default_rng(seed)
    fold = np.empty(member.size, dtype=np.int64)
    for cls in (0, 1):
        idx = np.flatnonzero(member == cls)
        fold[rng.permutation(idx)] = np.arange(idx.size) % BLIND_FOLDS
    return fold


def blind_baseline_scores(
    texts: Sequence[str], member: np.ndarray, *, seed: np.random.SeedSequence | int = 0
) -> np.ndarray:
    """Cross-fitted scores (records,), higher = predicted member, from the texts alone."""
    from scipy.stats import rankdata
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    values = list(texts)
    m = np.asarray(member)
    if m.shape != (len(values),) or not np.isin(m, (0, 1)).all():
        raise InputError("member", f"must be 0/1 of shape ({len(values)},)")
    if min(int(m.sum()), int((m == 0).sum())) < BLIND_FOLDS:
        raise InputError(
            "texts", f"the blind baseline needs ≥ {BLIND_FOLDS} members and non-members"
        )
    fold = _folds(m.astype(np.int64), seed)
    scores = np.empty(len(values))
    for f in range(BLIND_FOLDS):
        train, test = fold != f, fold == f
        vectors = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, min_df=1
        )
        x_train = vectors.fit_transform([values[i] for i in np.flatnonzero(train)])
        model = LogisticRegression(C=1.0, max_iter=1000).fit(x_train, m[train])
        x_test = vectors.transform([values[i] for i in np.flatnonzero(test)])
        # Within-fold rank percentiles: each fold's model has its own intercept and scale (its
        # training folds' class balance), which pooled raw scores would carry into the AUC.
        scores[test] = rankdata(model.decision_function(x_test)) / int(test.sum())
    return scores


def shifted_split_note(lower: float | None, upper: float | None, confidence: float) -> str | None:
    """The results' warning when the blind baseline's AUC interval excludes chance (0.5)."""
    if lower is None or upper is None or lower <= 0.5 <= upper:
        return None
    side = "above" if lower > 0.5 else "below"
    return (
        f"The split is shifted: the blind baseline, which never looks at the model, tells members from "
        f"non-members from the texts alone ({BLIND_NAME} AUC {confidence:.0%} interval [{lower:.3f}, {upper:.3f}], {side} chance). "
        "The model attacks' numbers on this split are not evidence of memorisation: draw members and non-members from one distribution."
    )
