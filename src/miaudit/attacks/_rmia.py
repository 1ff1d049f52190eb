"""RMIA, the robust membership-inference attack (Zarifzadeh, Liu, Shokri, "Low-Cost High-Power
Membership Inference Attacks", ICML 2024), docs/method.md §3.

With Pr(x|θ) = p_y (the softmax probability of the true label, temperature allowed):

- ratio_x = Pr(x|θ_target) / Pr(x), with Pr(x) the (trimmed) mean of Pr(x|θ_ref) over all
  references (online) or, from OUT references only (offline),
  Pr(x) ≈ ½[(1 + a)·Pr_OUT(x) + (1 − a)];
- population records z (in no model's training set) give ratio_z the same way;
- score(x) = fraction of z with ratio_x / ratio_z ≥ γ.

The public tool compares every x with every z (an n × |z| matrix, ≈0.8 GB at 10k × 10k). The
same count is "how many ratio_z are ≤ ratio_x / γ": sorting ratio_z once answers it for every x
by binary search, in O((n + |z|) log |z|) time and O(n + |z|) memory
(:func:`rmia_scores_from_ratios`). The comparison is evaluated as ``ratio_z <= ratio_x / γ``;
it agrees with the public code's ``ratio_x / ratio_z >= γ`` except within one rounding of an
exact boundary (never for γ = 1 or a power of two).

**Return type and ties.** Every RMIA function returns one float64 array,
``score = count / |z| + u(ratio_x) / (|z| + 1)`` where ``count / |z|`` is the paper's fraction
and ``u(r) = arctan(log r) / π + ½ ∈ [0, 1)`` is strictly increasing in ratio_x. Since fractions
are 1/|z| apart and the tie-break term is below 1/(|z| + 1), sorting by score sorts by
(fraction, ratio_x): ties in the fraction are broken by the likelihood ratio itself, never by
row order, and ``floor(score · |z|)`` recovers the count. For one target and one population the
score is therefore a strictly increasing function of ratio_x and its ROC equals the ROC of
ratio_x. (The tie-break resolves relative differences in ratio_x down to about 1e-16·|z|.)

Probabilities are floored at the smallest positive float64 in the denominator, so ratios are
finite and ≥ 0; p_y = 0 for the target gives ratio 0, and a z with ratio 0 counts as
dominated by every x, including one with ratio 0 (the dense form's 0/0 would be NaN).
"""

from __future__ import annotations

import numpy as np

from miaudit.attacks._lira import _as_float, _as_keep, _masked_sorted
from miaudit.attacks._partners import complementary_partners
from miaudit.data import CHUNK_RECORDS, is_mapped, release
from miaudit.errors import InputError
from miaudit.metrics import roc_auc_score
from miaudit.signals import compute_signals

#: The grid on which offline ``a`` is calibrated (the RMIA paper's 0, 0.1, …, 1).
A_GRID: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))

#: Offline ``a`` where it cannot be calibrated: when the references are a single complementary
#: pair (k = 1), no reference is left to play the target that is not its partner. 0.33 is the
#: default of LeakPro's RMIA (``offline_a``); with a calibrated ``a`` unavailable, a fixed
#: documented value is better than a refusal, and under the null any ``a`` is calibrated (the
#: null suite checks it). Pass ``a`` to choose another.
DEFAULT_A = 0.33

_TINY = np.finfo(np.float64).tiny


# --------------------------------------------------------------------------- inputs


def rmia_probability(
    logits: np.ndarray, labels: np.ndarray, *, temperature: float = 1.0
) -> np.ndarray:
    """Pr(x|θ) for RMIA: the softmax probability of the true label at a temperature.

    Zarifzadeh, Liu, Shokri, ICML 2024, §4 (Pr(x|θ) is the probability of the correct label;
    the reference code allows a softmax temperature).

    Parameters
    ----------
    logits : ndarray of shape (..., C)
        Logits (or log-probabilities) of one or more models.
    labels : ndarray
        Integer classes broadcastable to ``logits.shape[:-1]`` (e.g. (n,) for (K, n, C)).
    temperature : float
        Softmax temperature T > 0: p = softmax(z / T).

    Returns
    -------
    ndarray of shape ``logits.shape[:-1]``, float64

    Examples
    --------
    >>> rmia_probability(np.array([[0.0, np.log(3.0)]]), np.array([1])).round(3)
    array([0.75])
    """
    if not (np.isfinite(temperature) and temperature > 0):
        raise InputError("temperature", f"must be a positive number, got {temperature!r}")
    z = np.asarray(logits)
    lead = z.shape[:-1]
    try:
        y = np.broadcast_to(np.asarray(labels), lead)
    except ValueError:
        raise InputError(
            "labels",
            f"shape {np.shape(labels)} does not broadcast to the logits' leading shape {lead}",
        ) from None
    if is_mapped(z) and z.ndim >= 2:  # larger than memory: chunks of records, pages released
        out = np.empty(lead, dtype=np.float64)
        for lo in range(0, z.shape[-2], CHUNK_RECORDS):
            part = z[..., lo : lo + CHUNK_RECORDS, :]
            part = part if temperature == 1.0 else np.asarray(part, dtype=np.float64) / temperature
            out[..., lo : lo + CHUNK_RECORDS] = compute_signals(
                part, y[..., lo : lo + CHUNK_RECORDS], kind="logits", which=("confidence",)
            )["confidence"]
            release(z)
        return out
    scaled = z if temperature == 1.0 else np.asarray(z, dtype=np.float64) / temperature
    return compute_signals(scaled, y, kind="logits", which=("confidence",))["confidence"]


def _check_probs(name: str, values: np.ndarray) -> np.ndarray:
    arr = _as_float(name, values)
    if (arr < 0).any() or (arr > 1).any():
        raise InputError(name, "probabilities must lie in [0, 1]")
    return arr


def _check_common(
    target_p: np.ndarray, ref_p: np.ndarray, population: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    target = _check_probs("target_p", target_p)
    refs = _check_probs("ref_p", ref_p)
    if target.ndim != 1:
        raise InputError("target_p", f"must be (records,), got shape {target.shape}")
    if refs.ndim != 2 or refs.shape[1] != target.shape[0]:
        raise InputError(
            "ref_p",
            f"has shape {refs.shape}, expected (models, records) with {target.shape[0]} records",
        )
    if refs.shape[0] == 0 or target.shape[0] == 0:
        raise InputError("ref_p", f"no reference models or no records (shape {refs.shape})")
    pop = np.asarray(population)
    if pop.shape != target.shape or pop.dtype.kind != "b":
        raise InputError(
            "population",
            f"must be a boolean mask of shape {target.shape}, got {pop.dtype} {pop.shape}",
        )
    if not pop.any():
        raise InputError(
            "population", "no population records: RMIA needs records z that no model trained on"
        )
    return target, refs, pop


def _check_trim(trim: float) -> None:
    if not (0.0 <= trim < 0.5):
        raise InputError("trim", f"must be in [0, 0.5), got {trim!r}")


def _check_gamma(gamma: float) -> None:
    if not (np.isfinite(gamma) and gamma > 0):
        raise InputError("gamma", f"must be a positive number, got {gamma!r}")


def _check_a(a: float) -> None:
    if not (0.0 <= a <= 1.0):
        raise InputError("a", f"must be in [0, 1], got {a!r}")


# --------------------------------------------------------------------------- Pr(x)


def _trimmed_mean(refs: np.ndarray, mask: np.ndarray | None, trim: float) -> np.ndarray:
    """Per-record mean over the selected references, cutting ⌊trim·c⌋ from each end.

    ``refs`` (K, n); ``mask`` (K, n) or None for all. Returns (n,) float64; 0 where nothing is
    selected (callers reject such records first).
    """
    k, n = refs.shape
    if trim == 0.0:
        if mask is None:
            mean: np.ndarray = refs.mean(axis=0, dtype=np.float64)
            return mean
        out = np.empty(n, dtype=np.float64)
        for lo in range(0, n, CHUNK_RECORDS):
            hi = min(n, lo + CHUNK_RECORDS)
            m = mask[:, lo:hi]
            total = np.where(m, refs[:, lo:hi], 0).sum(axis=0, dtype=np.float64)
            out[lo:hi] = total / np.maximum(m.sum(axis=0), 1)
        return out
    full = np.ones((k, 1), dtype=bool)
    out = np.empty(n, dtype=np.float64)
    for lo in range(0, n, CHUNK_RECORDS):
        hi = min(n, lo + CHUNK_RECORDS)
        m = np.broadcast_to(full, (k, hi - lo)) if mask is None else mask[:, lo:hi]
        srt, c = _masked_sorted(refs[:, lo:hi, None], m)
        srt = srt[:, 0, :].astype(np.float64)  # (m, K), ascending then NaN
        g = np.floor(trim * c).astype(np.int64)
        pos = np.arange(k)[None, :]
        inside = (pos >= g[:, None]) & (pos < (c - g)[:, None])
        total = np.where(inside, srt, 0.0).sum(axis=1)
        out[lo:hi] = total / np.maximum(c - 2 * g, 1)
    return out


def _offline_pr(pr_out: np.ndarray, a: float) -> np.ndarray:
    return 0.5 * ((1.0 + a) * pr_out + (1.0 - a))


def _require_out(mask_out: np.ndarray) -> None:
    none = ~mask_out.any(axis=0)
    if none.any():
        raise InputError(
            "keep",
            f"{int(none.sum())} record(s) have no OUT reference model (first at position {int(np.argmax(none))}); "
            "offline RMIA needs at least one per record",
        )


def _ratio(target: np.ndarray, pr: np.ndarray) -> np.ndarray:
    ratio: np.ndarray = target.astype(np.float64) / np.maximum(pr, _TINY)
    return ratio


# --------------------------------------------------------------------------- scores


def rmia_scores_from_ratios(
    ratio_x: np.ndarray, ratio_z: np.ndarray, *, gamma: float = 1.0
) -> np.ndarray:
    """RMIA score of each x from the likelihood ratios, by sorting the population once.

    score(x) = #{z : ratio_z ≤ ratio_x / γ} / |z| + u(ratio_x) / (|z| + 1), where the second term
    (below the fractions' spacing) breaks ties by ratio_x; see the module docstring.
    Zarifzadeh, Liu, Shokri, ICML 2024, Eq. (4)–(5). O((n + |z|) log |z|) time,
    O(n + |z|) memory.

    Parameters
    ----------
    ratio_x : ndarray of shape (n,)
        Likelihood ratios Pr(x|θ)/Pr(x) of the records to score (finite, ≥ 0).
    ratio_z : ndarray of shape (m,)
        Likelihood ratios of the population records (finite, ≥ 0), m ≥ 1.
    gamma : float
        Threshold γ > 0 on ratio_x / ratio_z (the paper uses 1 or 2).

    Returns
    -------
    ndarray of shape (n,), float64
        Higher means more likely a member.

    Examples
    --------
    >>> s = rmia_scores_from_ratios(np.array([0.5, 2.0, 2.0, 9.0]), np.array([1.0, 1.0, 3.0]))
    >>> np.floor(s * 3).astype(int)  # how many z each x dominates
    array([0, 2, 2, 3])
    """
    rx = _as_float("ratio_x", ratio_x)
    rz = _as_float("ratio_z", ratio_z)
    if rx.ndim != 1 or rz.ndim != 1:
        raise InputError(
            "ratio_x", f"ratio_x and ratio_z must be 1-D, got shapes {rx.shape} and {rz.shape}"
        )
    if rz.size == 0:
        raise InputError("ratio_z", "no population records")
    if (rx < 0).any() or (rz < 0).any():
        raise InputError("ratio_x", "likelihood ratios must be non-negative")
    _check_gamma(gamma)
    return _scores(rx.astype(np.float64, copy=False), rz.astype(np.float64, copy=False), gamma)


def _scores(rx: np.ndarray, rz: np.ndarray, gamma: float) -> np.ndarray:
    m = rz.size
    srt = np.sort(rz)
    thresholds = rx / gamma if gamma != 1.0 else rx
    count = np.searchsorted(srt, thresholds, side="right").astype(np.float64)
    with np.errstate(divide="ignore"):
        u = np.arctan(np.log(rx))
    u /= np.pi
    u += 0.5
    u = np.minimum(u, np.nextafter(1.0, 0.0))  # arctan(log r) < π/2 also after rounding
    count /= m
    u /= m + 1
    count += u
    return count


def _finish(target: np.ndarray, pr: np.ndarray, pop: np.ndarray, gamma: float) -> np.ndarray:
    ratio = _ratio(target, pr)
    return _scores(ratio, ratio[pop], gamma)


def rmia_online(
    target_p: np.ndarray,
    ref_p: np.ndarray,
    population: np.ndarray,
    *,
    gamma: float = 1.0,
    trim: float = 0.0,
) -> np.ndarray:
    """Online RMIA: Pr(x) is the (trimmed) mean of Pr(x|θ_ref) over all references.

    Zarifzadeh, Liu, Shokri, "Low-Cost High-Power Membership Inference Attacks", ICML 2024,
    online setting (references trained with and without each record, e.g. on random halves of
    the pool). The keep matrix is not needed: every reference enters Pr(x).

    Parameters
    ----------
    target_p : ndarray of shape (n,)
        Pr(x|θ_target) = p_y of the audited model on every record (see
        :func:`rmia_probability`).
    ref_p : ndarray of shape (K, n)
        p_y of each reference model on the same records.
    population : ndarray of shape (n,), bool
        The population records z (in no model's training set); they are scored too, but their
        scores are not evaluation scores.
    gamma : float
        γ > 0 in "ratio_x / ratio_z ≥ γ".
    trim : float
        Fraction in [0, 0.5) of references cut from each end before averaging
        (``scipy.stats.trim_mean`` convention, ⌊trim·K⌋ per end).

    Returns
    -------
    ndarray of shape (n,), float64
        Fraction of z dominated plus a tie-break by ratio_x (module docstring).

    Raises
    ------
    InputError
        On mismatched shapes, probabilities outside [0, 1], or an empty population.

    Examples
    --------
    >>> refs = np.array([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]])
    >>> s = rmia_online(np.array([0.9, 0.4, 0.5]), refs, np.array([False, True, True]))
    >>> np.floor(s * 2).astype(int)
    array([2, 1, 2])
    """
    target, refs, pop = _check_common(target_p, ref_p, population)
    _check_gamma(gamma)
    _check_trim(trim)
    return _finish(target, _trimmed_mean(refs, None, trim), pop, gamma)


# Long: over 60 lines only through its numpydoc docstring (parameters, returns, the method);
# the code itself is 7 lines.
def rmia_offline(
    target_p: np.ndarray,
    ref_p: np.ndarray,
    keep: np.ndarray,
    population: np.ndarray,
    *,
    a: float,
    gamma: float = 1.0,
    trim: float = 0.0,
    use: np.ndarray | None = None,
) -> np.ndarray:
    """Offline RMIA: Pr(x) ≈ ½[(1 + a)·Pr_OUT(x) + (1 − a)] from OUT references only.

    Zarifzadeh, Liu, Shokri, "Low-Cost High-Power Membership Inference Attacks", ICML 2024,
    offline setting (§4, "offline RMIA"): the mean over IN models is approximated linearly from
    the mean over OUT models; ``a`` is calibrated by :func:`calibrate_rmia_a`.

    Parameters
    ----------
    target_p : ndarray of shape (n,)
        Pr(x|θ_target) = p_y of the audited model on every record.
    ref_p : ndarray of shape (K, n)
        p_y of each reference model on the same records.
    keep : ndarray of shape (K, n), bool
        ``keep[k, i]``: reference k trained on record i; those pairs are ignored.
    population : ndarray of shape (n,), bool
        The population records z (in no model's training set).
    a : float
        The offline approximation's slope parameter, in [0, 1].
    gamma : float
        γ > 0 in "ratio_x / ratio_z ≥ γ".
    trim : float
        Fraction in [0, 0.5) of OUT references cut from each end before averaging.
    use : ndarray of shape (K, n), bool, optional
        ``use[k, i]``: reference k's p_y on record i enters Pr_OUT(x) (default: all); the
        reference audit balances references with it (docs/method.md §3).

    Returns
    -------
    ndarray of shape (n,), float64
        Fraction of z dominated plus a tie-break by ratio_x (module docstring).

    Raises
    ------
    InputError
        On mismatched shapes, bad parameters, an empty population, or a record without an OUT
        reference.

    Examples
    --------
    >>> refs = np.array([[0.5, 0.5, 0.5]])
    >>> keep = np.zeros((1, 3), dtype=bool)
    >>> s = rmia_offline(
    ...     np.array([0.9, 0.4, 0.5]), refs, keep, np.array([False, True, True]), a=1.0
    ... )
    >>> np.floor(s * 2).astype(int)
    array([2, 1, 2])
    """
    target, refs, pop = _check_common(target_p, ref_p, population)
    mask_out = ~_as_keep(keep, refs.shape)
    if use is not None:
        mask_out &= _as_keep(use, refs.shape, "use")
    _check_a(a)
    _check_gamma(gamma)
    _check_trim(trim)
    _require_out(mask_out)
    return _finish(target, _offline_pr(_trimmed_mean(refs, mask_out, trim), a), pop, gamma)


def rmia_ratio(
    target_p: np.ndarray,
    ref_p: np.ndarray,
    keep: np.ndarray | None,
    *,
    a: float | None,
    trim: float = 0.0,
) -> np.ndarray:
    """The likelihood ratio ratio_x = Pr(x|θ_target) / Pr(x) of each record.

    Online when ``a is None`` (Pr(x) over all references; ``keep`` is then ignored and may be
    None), offline with the given ``a`` otherwise. For one target this ratio ranks records
    exactly as the RMIA score does (Zarifzadeh, Liu, Shokri, ICML 2024).

    Parameters
    ----------
    target_p : ndarray of shape (n,)
    ref_p : ndarray of shape (K, n)
    keep : ndarray of shape (K, n), bool, or None (online only)
    a : float or None
    trim : float

    Returns
    -------
    ndarray of shape (n,), float64

    Examples
    --------
    >>> refs = np.array([[0.2, 0.6], [0.4, 0.6]])
    >>> rmia_ratio(np.array([0.6, 0.3]), refs, None, a=None)
    array([2. , 0.5])
    >>> rmia_ratio(np.array([0.6, 0.3]), refs, np.array([[0, 1], [1, 0]], dtype=bool), a=0.0)
    array([1.   , 0.375])
    """
    target, refs, _ = _check_common(target_p, ref_p, np.ones(np.shape(target_p), dtype=bool))
    _check_trim(trim)
    if a is None:
        return _ratio(target, _trimmed_mean(refs, None, trim))
    _check_a(a)
    if keep is None:
        raise InputError("keep", "offline RMIA (a given) needs the keep matrix")
    mask_out = ~_as_keep(keep, refs.shape)
    _require_out(mask_out)
    return _ratio(target, _offline_pr(_trimmed_mean(refs, mask_out, trim), a))


def can_calibrate_rmia_a(keep: np.ndarray, *, model: int = 0) -> bool:
    """Whether :func:`calibrate_rmia_a` has a reference to use besides ``model`` and its
    complementary partner (False for one reference pair: then use :data:`DEFAULT_A`)."""
    mask = np.asarray(keep, dtype=bool)
    if mask.ndim != 2 or mask.shape[0] < 2 or not (0 <= model < mask.shape[0]):
        return False
    return not np.delete(complementary_partners(mask, model), model).all()


# Long: over 60 lines only through its numpydoc docstring (parameters, returns, the method);
# the code itself is 33 lines.
def calibrate_rmia_a(
    ref_p: np.ndarray,
    keep: np.ndarray,
    *,
    model: int = 0,
    trim: float = 0.0,
    grid: tuple[float, ...] = A_GRID,
) -> float:
    """Choose offline RMIA's ``a`` by attacking one reference model with the others.

    Zarifzadeh, Liu, Shokri, ICML 2024, offline setting: reference ``model`` plays the target,
    its training records are the members, and the remaining references serve as OUT references
    for the offline approximation. For one target and a fixed population the RMIA score ranks
    records as ratio_x does, so each ``a`` is judged by the AUC of ratio_x (no population
    needed). A reference whose keep row is the exact complement of ``model``'s (its partner in
    complementary pairs) is left out of the others: its membership is a function of the
    calibration target's and would bias the choice (see ``miaudit.attacks._reference``).
    Records without an OUT reference among the others are skipped. Ties in AUC go to the
    smallest ``a``.

    Parameters
    ----------
    ref_p : ndarray of shape (K, n)
        p_y of each reference model on the pool (K ≥ 2).
    keep : ndarray of shape (K, n), bool
    model : int
        Which reference plays the target.
    trim : float
        As in :func:`rmia_offline`.
    grid : tuple of float
        Candidate values in [0, 1]; by default 0, 0.1, …, 1.

    Returns
    -------
    float
        The ``a`` with the highest AUC.

    Raises
    ------
    InputError
        With fewer than two references, an out-of-range ``model``, or when the chosen model's
        scored records are not both members and non-members.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> keep = rng.random((4, 500)) < 0.5
    >>> ref_p = 1 / (1 + np.exp(-(rng.normal(size=(4, 500)) + 2.0 * keep)))
    >>> calibrate_rmia_a(ref_p, keep) in A_GRID
    True
    """
    refs = _check_probs("ref_p", ref_p)
    if refs.ndim != 2:
        raise InputError("ref_p", f"must be (models, records), got shape {refs.shape}")
    if refs.shape[0] < 2:
        raise InputError(
            "ref_p", "calibrating a needs at least two reference models (one plays the target)"
        )
    mask = _as_keep(keep, refs.shape)
    if not (0 <= model < refs.shape[0]):
        raise InputError("model", f"reference {model} is outside [0, {refs.shape[0]})")
    if not grid or any(not (0.0 <= g <= 1.0) for g in grid):
        raise InputError("grid", "must be a non-empty sequence of values in [0, 1]")
    _check_trim(trim)
    others = np.delete(np.arange(refs.shape[0]), model)
    partner = complementary_partners(mask, model)[others]
    if partner.all():
        raise InputError(
            "keep",
            f"every other reference is the complement of reference {model}; calibration needs one that is not",
        )
    others = others[~partner]
    out_mask = ~mask[others]
    usable = out_mask.any(axis=0)
    member = mask[model, usable]
    if member.all() or not member.any():
        raise InputError(
            "keep",
            f"reference {model} has only {'members' if member.any() else 'non-members'} among the records it can be scored on",
        )
    pr_out = _trimmed_mean(refs[others][:, usable], out_mask[:, usable], trim)
    target = refs[model, usable]
    aucs = [roc_auc_score(member, _ratio(target, _offline_pr(pr_out, float(g)))) for g in grid]
    return float(grid[int(np.argmax(aucs))])
