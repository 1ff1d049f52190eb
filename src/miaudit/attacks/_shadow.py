"""Shadow-model attacks: Shokri et al. (IEEE S&P 2017) and ML-Leaks (Salem et al., NDSS 2019),
docs/method.md §3.

Both learn a binary in/out classifier from shadow models' outputs on records whose membership
is known, then apply it to the audited model's outputs. Here the classifier is scikit-learn's
``HistGradientBoostingClassifier`` (seeded, no early stopping, so a seed reproduces a run bit
for bit); the papers used small neural networks. Features are computed from logits as sorted
log-softmax values: a tree ensemble is invariant to the monotone map from probabilities to
log-probabilities, and log-probabilities keep their resolution where p rounds to 1.0.
Log-probabilities are accepted in place of logits (softmax of log p is p).

No training of the *shadow models* happens here: their outputs are inputs.

The attack classifiers are small, so they are fit and applied with one OpenMP thread
(``threadpoolctl``, a scikit-learn dependency): on the shared 2-core development machine,
OpenMP's default threads made the same fits up to 80× slower (21 s against 0.25 s for one
test), the oversubscription pitfall of PERFORMANCE.md.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from miaudit.attacks._lira import _as_float, _as_keep
from miaudit.errors import InputError
from miaudit.signals import log_softmax

#: Fewer examples of either membership class than this in a class's shadow data and that class
#: is scored by the classifier trained on all classes.
MIN_PER_CLASS = 5


def _shokri_features(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(…, C) logits and (…) labels → (…, C + 1): sorted log-probabilities, then log p_y."""
    lp = log_softmax(logits)
    lp_y = np.take_along_axis(lp, labels[..., None], axis=-1)
    srt = -np.sort(-lp, axis=-1)
    return np.concatenate([srt, lp_y], axis=-1)


def _classifier(seed: int, max_iter: int) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(
        max_iter=max_iter, early_stopping=False, random_state=seed
    )


def _labels(name: str, labels: np.ndarray, n: int, n_classes: int) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.shape != (n,):
        raise InputError(name, f"has shape {arr.shape}, expected ({n},)")
    if arr.dtype.kind not in "iu":
        raise InputError(name, f"labels must be integers, got {arr.dtype}")
    if n and (arr.min() < 0 or arr.max() >= n_classes):
        raise InputError(name, f"labels must lie in [0, {n_classes})")
    return arr.astype(np.int64)


def _check_seed(seed: int) -> None:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise InputError("seed", f"must be an integer, got {seed!r}")


# Long: over 60 lines only through its numpydoc docstring (parameters, returns, the method);
# the code itself is 24 lines.
def shadow_attack(
    target_logits: np.ndarray,
    target_labels: np.ndarray,
    shadow_logits: np.ndarray,
    shadow_labels: np.ndarray,
    shadow_keep: np.ndarray,
    *,
    seed: int,
    max_iter: int = 100,
) -> np.ndarray:
    """The shadow-model attack: one in/out classifier per class on sorted output vectors.

    Shokri, Stronati, Song, Shmatikov, "Membership Inference Attacks Against Machine Learning
    Models", IEEE S&P 2017. Every (shadow model, record) pair is a training example labelled
    in/out by ``shadow_keep``; class c's classifier sees the pairs of records labelled c. The
    features are the output vector sorted in decreasing order plus the probability of the
    label (the label itself selects the classifier), as log-probabilities. A class with fewer
    than :data:`MIN_PER_CLASS` in or out examples, or absent from the shadow data, is scored by
    one classifier trained on all classes.

    Parameters
    ----------
    target_logits : ndarray of shape (n, C)
        The audited model's logits (or log-probabilities) on the records to score.
    target_labels : ndarray of shape (n,), int
    shadow_logits : ndarray of shape (S, m, C)
        Shadow models' logits on their records (m may differ from n).
    shadow_labels : ndarray of shape (m,), int
    shadow_keep : ndarray of shape (S, m), bool
        ``shadow_keep[s, j]``: shadow model s trained on record j.
    seed : int
        Seeds every classifier.
    max_iter : int
        Boosting iterations per classifier.

    Returns
    -------
    ndarray of shape (n,), float64
        The classifier's member probability; higher means more likely a member.

    Raises
    ------
    InputError
        On mismatched shapes or labels, or when the shadow data hold only members or only
        non-members.
    """
    _check_seed(seed)
    tgt = _as_float("target_logits", target_logits)
    sh = _as_float("shadow_logits", shadow_logits)
    if tgt.ndim != 2:
        raise InputError("target_logits", f"must be (records, classes), got shape {tgt.shape}")
    if sh.ndim != 3 or sh.shape[2] != tgt.shape[1]:
        raise InputError(
            "shadow_logits",
            f"has shape {sh.shape}, expected (shadow models, records, {tgt.shape[1]} classes)",
        )
    n_classes = tgt.shape[1]
    y_t = _labels("target_labels", target_labels, tgt.shape[0], n_classes)
    y_s = _labels("shadow_labels", shadow_labels, sh.shape[1], n_classes)
    keep = _as_keep(shadow_keep, sh.shape[:2], "shadow_keep")
    if keep.all() or not keep.any():
        raise InputError("shadow_keep", "shadow data need both members and non-members")

    x_s = _shokri_features(sh, np.broadcast_to(y_s, sh.shape[:2])).reshape(-1, n_classes + 1)
    m_s = keep.reshape(-1)
    c_s = np.broadcast_to(y_s, sh.shape[:2]).reshape(-1)
    x_t = _shokri_features(tgt, y_t)

    with threadpool_limits(limits=1, user_api="openmp"):
        return _per_class_scores(x_s, m_s, c_s, x_t, y_t, seed, max_iter)


def _per_class_scores(
    x_s: np.ndarray,
    m_s: np.ndarray,
    c_s: np.ndarray,
    x_t: np.ndarray,
    y_t: np.ndarray,
    seed: int,
    max_iter: int,
) -> np.ndarray:
    """Score the target rows class by class; classes with too little shadow data share one classifier."""
    scores = np.empty(x_t.shape[0], dtype=np.float64)
    fallback = np.zeros(x_t.shape[0], dtype=bool)
    for c in np.unique(y_t):
        rows_t = y_t == c
        sel = c_s == c
        n_in = int(m_s[sel].sum())
        if n_in < MIN_PER_CLASS or int(sel.sum()) - n_in < MIN_PER_CLASS:
            fallback |= rows_t
            continue
        clf = _classifier(seed, max_iter).fit(x_s[sel], m_s[sel])
        scores[rows_t] = clf.predict_proba(x_t[rows_t])[:, 1]
    if fallback.any():
        clf = _classifier(seed, max_iter).fit(x_s, m_s)
        scores[fallback] = clf.predict_proba(x_t[fallback])[:, 1]
    return scores


def _top3(logits: np.ndarray) -> np.ndarray:
    lp = log_softmax(logits)
    return -np.sort(-lp, axis=-1)[..., :3]


# Long: over 60 lines only through its numpydoc docstring (parameters, returns, the method);
# the code itself is 29 lines.
def ml_leaks(
    target_logits: np.ndarray,
    shadow_logits: np.ndarray,
    shadow_member: np.ndarray,
    *,
    seed: int,
    max_iter: int = 100,
    folds: int = 1,
) -> np.ndarray:
    """ML-Leaks: one shadow model, one classifier on the top-3 sorted probabilities.

    Salem, Zhang, Humbert, Berrang, Fritz, Backes, "ML-Leaks: Model and Data Independent
    Membership Inference Attacks and Defenses on Machine Learning Models", NDSS 2019
    (adversary 1): a single shadow model and the three largest probabilities suffice. With
    fewer than three classes, all of them are used.

    Parameters
    ----------
    target_logits : ndarray of shape (n, C)
        The audited model's logits (or log-probabilities).
    shadow_logits : ndarray of shape (m, C')
        The shadow model's logits on its records (C' may differ from C).
    shadow_member : ndarray of shape (m,), bool
        Whether the shadow model trained on each of its records.
    seed : int
    max_iter : int
    folds : int
        1: one classifier on every shadow record. ≥ 2: the target's records *are* the shadow's
        records (row i is the same record), and each is scored by a classifier fitted on the
        other folds only (cross-fitting, folds drawn with ``seed``): a boosted classifier
        memorises the shadow's membership of its training records, and scoring the same record
        through a model whose output resembles the shadow's (the record's difficulty is shared)
        carries that membership over to the score.

    Returns
    -------
    ndarray of shape (n,), float64
        The classifier's member probability; higher means more likely a member.

    Raises
    ------
    InputError
        On bad shapes, or shadow records (in any training fold) that are all members or all
        non-members.
    """
    _check_seed(seed)
    tgt = _as_float("target_logits", target_logits)
    sh = _as_float("shadow_logits", shadow_logits)
    if tgt.ndim != 2 or sh.ndim != 2:
        raise InputError(
            "target_logits",
            f"target and shadow logits must be (records, classes), got {tgt.shape} and {sh.shape}",
        )
    if min(tgt.shape[1], 3) != min(sh.shape[1], 3):
        raise InputError(
            "shadow_logits",
            f"has {sh.shape[1]} classes; the top-3 features need as many as the target's {tgt.shape[1]} (up to 3)",
        )
    member = _as_keep(shadow_member, (sh.shape[0],), "shadow_member")
    if member.all() or not member.any():
        raise InputError("shadow_member", "shadow data need both members and non-members")
    if folds < 1:
        raise InputError("folds", f"must be ≥ 1, got {folds}")
    if folds == 1:
        with threadpool_limits(limits=1, user_api="openmp"):
            clf = _classifier(seed, max_iter).fit(_top3(sh), member)
            proba: np.ndarray = clf.predict_proba(_top3(tgt))[:, 1].astype(np.float64)
            return proba
    if tgt.shape[0] != sh.shape[0]:
        raise InputError(
            "shadow_logits",
            f"cross-fitting scores the shadow's own records: {sh.shape[0]} shadow records for {tgt.shape[0]} target records",
        )
    return _cross_fitted(_top3(tgt), _top3(sh), member, seed, max_iter, folds)


def _cross_fitted(
    x_t: np.ndarray, x_sh: np.ndarray, member: np.ndarray, seed: int, max_iter: int, folds: int
) -> np.ndarray:
    """ML-Leaks on the shadow's own records: each scored by a classifier fitted on the other folds."""
    fold = np.random.default_rng([seed, 0x4D4C]).permutation(x_t.shape[0]) % folds
    out = np.empty(x_t.shape[0], dtype=np.float64)
    with threadpool_limits(limits=1, user_api="openmp"):
        for f in range(folds):
            train = fold != f
            if member[train].all() or not member[train].any():
                raise InputError(
                    "shadow_member",
                    "a cross-fitting fold's training records are all members or all non-members",
                )
            clf = _classifier(seed, max_iter).fit(x_sh[train], member[train])
            out[~train] = clf.predict_proba(x_t[~train])[:, 1]
    return out
