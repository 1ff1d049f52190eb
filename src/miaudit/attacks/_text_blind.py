"""The blind baseline: membership guessed from the texts alone, never from the model
(docs/method.md §13.3; Das, Zhang & Tramèr 2024).

A linear classifier on character n-grams (2–4, TF-IDF; kernel ridge on ±1 labels, one
Cholesky factor per fold) is fitted to predict membership from the text, 5-fold cross-fitted
(folds stratified by membership): each record is scored by a model fitted on the other folds,
so no record's own membership enters its score; scores are rank percentiles within each fold,
so that the folds' models' different offsets do not enter the pooled AUC. Only each text's first
:data:`BLIND_MAX_CHARS` characters are read (the model attacks read only a context's worth too):
80 texts of 2 MB each did not finish in 300 s before.

Whether the split is shifted is decided by a permutation test, not by a bootstrap over records:
the cross-fitted AUC's spread under the null is wider than a record bootstrap says (each
record's label trains the models that score the other folds), and a record-bootstrap interval
excluded chance on about one fair split in five (bench_text_blind). Memberships are permuted
within each fold (class counts per fold kept, so the folds are as the real labels would deal
them) and the whole cross-fit is rerun on each permutation; the same factorisation serves
every permutation, so the test costs about one fit. On a split where members and non-members
are drawn from one distribution the test rejects at its nominal rate by construction; when it
rejects, the split is shifted (members and non-members differ in topic, date, template,
length…) and the model attacks' numbers on that split are not evidence of memorisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from miaudit.errors import InputError

#: Folds of the cross-fit.
BLIND_FOLDS = 5
#: Permutations of the test (p-values in steps of 1/200).
BLIND_PERMUTATIONS = 199
#: At most this many training texts per fold (drawn without looking at membership): the dual
#: solve is cubic in them.
BLIND_MAX_TRAIN = 3_000
#: Characters of each text the n-grams are read from (its beginning): bounds the work per text
#: (500 texts of 2,000 random characters: 35 s on the 2-core machine; of 10,000: 190 s), above
#: the texts the benchmarks audit (synthetic records ≤ 200 characters, the public corpus's
#: lines ≤ 1,087), so their figures are unchanged; a shift of topic or template shows early.
BLIND_MAX_CHARS = 2_000
#: Ridge penalty on the linear kernel of L2-normalised TF-IDF rows (diagonal 1).
BLIND_RIDGE = 1.0
BLIND_NAME = "blind_ngram"
BLIND_DESCRIPTION = (
    "membership guessed from the texts alone (character 2–4-gram ridge classifier, "
    "5-fold cross-fitted, permutation test); never looks at the model: above chance means the split is shifted"
)
BLIND_CITATION = "Das, Zhang & Tramèr, 2024 (blind baselines)"


@dataclass(frozen=True)
class BlindBaseline:
    """The cross-fitted scores (records,), their AUC, and the permutation test of chance:
    ``p_value`` one-sided (above chance), ``lower``/``upper`` the AUC minus the null's upper
    and lower 2.5 % points' distances from 0.5, clipped to [0, 1] (a 95 % interval by test
    inversion: it excludes 0.5 exactly when the two-sided 5 % test rejects)."""

    scores: np.ndarray
    auc: float
    p_value: float
    lower: float
    upper: float
    permutations: int


def _folds(member: np.ndarray, seed: np.random.SeedSequence | int) -> np.ndarray:
    """Stratified fold of each record: members and non-members each dealt round-robin in a
    random order, so every fold holds both classes."""
    rng = np.random.default_rng(seed)
    fold = np.empty(member.size, dtype=np.int64)
    for cls in (0, 1):
        idx = np.flatnonzero(member == cls)
        fold[rng.permutation(idx)] = np.arange(idx.size) % BLIND_FOLDS
    return fold


def blind_texts(texts: Sequence[str], field: str = "texts") -> list[str]:
    """The texts as the blind baseline reads them: each its first :data:`BLIND_MAX_CHARS`
    characters; an InputError naming the first item that is not a string (an AttributeError
    otherwise), or saying that every text is blank (sklearn's "empty vocabulary"). A blank
    text among others is honest data: it has no n-grams, like a very short one."""
    values = list(texts)
    bad = next((i for i, t in enumerate(values) if not isinstance(t, str)), None)
    if bad is not None:
        raise InputError(
            field, f"item {bad} is not a string: the blind baseline reads each text's characters"
        )
    if values and not any(t.strip() for t in values):
        raise InputError(field, "every text is empty or only whitespace: nothing to read")
    return [t[:BLIND_MAX_CHARS] for t in values]


def _check(values: list[str], m: np.ndarray) -> None:
    if m.shape != (len(values),) or not np.isin(m, (0, 1)).all():
        raise InputError("member", f"must be 0/1 of shape ({len(values)},)")
    if min(int(m.sum()), int((m == 0).sum())) < BLIND_FOLDS:
        raise InputError(
            "texts", f"the blind baseline needs ≥ {BLIND_FOLDS} members and non-members"
        )


def _labels(
    m: np.ndarray, fold: np.ndarray, permutations: int, rng: np.random.Generator
) -> np.ndarray:
    """(records, 1 + permutations): the real memberships, then ones shuffled within each fold."""
    out = np.empty((m.size, 1 + permutations), dtype=np.float64)
    out[:, 0] = m
    for f in range(BLIND_FOLDS):
        idx = np.flatnonzero(fold == f)
        out[idx, 1:] = m[idx][
            rng.permuted(np.tile(np.arange(idx.size), (permutations, 1)), axis=1).T
        ]
    return out


def _fold_scores(
    values: list[str], train: np.ndarray, test: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """Kernel-ridge decision values on ``test`` for every label column, fitted on ``train``."""
    from scipy.linalg import cho_factor, cho_solve
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectors = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, min_df=1)
    x_train = vectors.fit_transform([values[i] for i in train])
    x_test = vectors.transform([values[i] for i in test])
    gram = (x_train @ x_train.T).toarray()
    gram[np.diag_indices_from(gram)] += BLIND_RIDGE
    targets = 2.0 * y[train] - 1.0
    dual = cho_solve(cho_factor(gram), targets - targets.mean(axis=0))
    out: np.ndarray = np.asarray(x_test @ x_train.T @ dual)
    return out


def _pooled_auc(member: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """AUC of each column of ``ranks`` against each column of ``member`` (Mann–Whitney)."""
    from scipy.stats import rankdata

    r = rankdata(ranks, axis=0)
    pos = member.sum(axis=0)
    neg = member.shape[0] - pos
    out: np.ndarray = ((r * member).sum(axis=0) - pos * (pos + 1) / 2) / (pos * neg)
    return out


def _cross_fit(
    values: list[str], m: np.ndarray, seed: np.random.SeedSequence | int, permutations: int
) -> tuple[np.ndarray, np.ndarray]:
    """(memberships, within-fold rank percentiles), each (records, 1 + permutations): column 0
    the real split, the others the permuted ones, every column cross-fitted the same way."""
    from scipy.stats import rankdata

    values = blind_texts(values)
    _check(values, m)
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    fold_seed, perm_seed, sub_seed = root.spawn(3)
    fold = _folds(m.astype(np.int64), fold_seed)
    y = _labels(m.astype(np.float64), fold, permutations, np.random.default_rng(perm_seed))
    sub = np.random.default_rng(sub_seed)
    ranks = np.empty_like(y)
    for f in range(BLIND_FOLDS):
        train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        if train.size > BLIND_MAX_TRAIN:  # chosen without membership: the test stays exact
            train = np.sort(sub.choice(train, BLIND_MAX_TRAIN, replace=False))
        # Within-fold rank percentiles: each fold's model has its own offset and scale.
        ranks[test] = rankdata(_fold_scores(values, train, test, y), axis=0) / test.size
    return y, ranks


def blind_baseline(
    texts: Sequence[str],
    member: np.ndarray,
    *,
    seed: np.random.SeedSequence | int = 0,
    permutations: int = BLIND_PERMUTATIONS,
) -> BlindBaseline:
    """Cross-fitted blind scores and the permutation test of chance (module docstring)."""
    if permutations < 39:
        raise InputError(
            "permutations", f"must be ≥ 39 for a two-sided 5 % test, got {permutations}"
        )
    y, ranks = _cross_fit(list(texts), np.asarray(member), seed, permutations)
    aucs = _pooled_auc(y, ranks)
    observed, null = float(aucs[0]), aucs[1:]
    hi, lo = np.quantile(null, [0.975, 0.025])
    return BlindBaseline(
        scores=ranks[:, 0].copy(),
        auc=observed,
        p_value=float((1 + np.sum(null >= observed)) / (1 + permutations)),
        lower=float(max(0.0, observed - (hi - 0.5))),
        upper=float(min(1.0, observed + (0.5 - lo))),
        permutations=permutations,
    )


def blind_baseline_scores(
    texts: Sequence[str], member: np.ndarray, *, seed: np.random.SeedSequence | int = 0
) -> np.ndarray:
    """Cross-fitted scores (records,), higher = predicted member, from the texts alone (those
    of :func:`blind_baseline`, without its permutation test)."""
    _, ranks = _cross_fit(list(texts), np.asarray(member), seed, 0)
    out: np.ndarray = ranks[:, 0]
    return out


def shifted_split_note(lower: float | None, upper: float | None, confidence: float) -> str | None:
    """The results' warning when the blind baseline's AUC interval lies above chance (0.5).

    Only above: a classifier that tells members from non-members by their texts scores above
    chance; a cross-fitted AUC below its interval's chance line is the cross-fit's own artefact
    (each fold's model learns the other folds' label noise), not a shift, and is not flagged.
    """
    if lower is None or upper is None or lower <= 0.5:
        return None
    return (
        f"The split is shifted: the blind baseline, which never looks at the model, tells members from "
        f"non-members from the texts alone ({BLIND_NAME} AUC {confidence:.0%} interval [{lower:.3f}, {upper:.3f}], above chance). "
        "The model attacks' numbers on this split are not evidence of memorisation: draw members and non-members from one distribution."
    )
