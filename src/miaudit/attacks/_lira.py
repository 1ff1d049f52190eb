"""LiRA, the likelihood-ratio attack (Carlini et al., "Membership Inference Attacks From First
Principles", IEEE S&P 2022), on the scaled logit φ (docs/method.md §1, §3).

For each record the attack fits Gaussians to φ as produced by reference models that trained on
the record (IN) and that did not (OUT), then asks which one better explains the target model's
φ. Everything here is a pure function of arrays: φ of the target model, φ of K reference models
and the keep matrix saying which reference trained on which record.

Decisions, each checked against the public code (tensorflow/privacy,
``research/mi_lira_2021/score.py``):

- μ is the **median** of the references' φ (as in the public code); σ is their standard
  deviation around the mean with ``ddof=0`` (``np.std``, as in the public code).
- Fixed ("global") variance pools the within-record spread of all records: σ² = Σᵢ Σₖ (φₖᵢ −
  φ̄ᵢ)² / Σᵢ cᵢ, separately for IN and OUT and for each augmentation query. (The public code
  takes ``np.std`` of all IN values at once, which also counts the spread *between* records,
  and uses that σ for both sides; with σ_in = σ_out the online ranking does not depend on σ.)
- Augmentation queries: one Gaussian per query, and the score is the mean over queries of the
  per-query log-ratios (online) or standardised scores (offline).
- Offline scores are ranked by z = (φ − μ_out)/σ_out or by ``log Φ(z)``, never by Φ(z): Φ rounds
  to exactly 1.0 beyond z ≈ 8.3 in float64, and the most exposed members would then tie.

Too few references, the policy (explicit and NaN-free):

- A record with no OUT reference (or, online, no IN reference) has no Gaussian to compare with:
  :class:`~miaudit.errors.InputError` naming how many records and the first position.
- With per-record variance, a record with a single reference on a side, or whose references
  all give the same φ (σ = 0), uses that side's global (pooled) σ instead.
- Small k: when no record has two references on a side (one reference pair, k = 1), or every
  record's references agree exactly, the within-record spread cannot be measured (it would be
  0). That side's σ is then the spread of all its references' φ around their common mean —
  the public code's fixed variance, which also counts how records differ, so it overstates σ
  and understates how extreme a score is. Online, when both sides fall back, one σ (pooled
  over both) serves both, so the ranking is that of any common σ and no log σ_out/σ_in term
  is made up. If even that spread is 0 (every value identical), σ = 1. (This replaces a floor
  of ``1e-30``, which turned σ = 0 into scores up to 1e61.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import log_ndtr

from miaudit.errors import InputError

Variance = Literal["per_record", "global"]
OfflineStatistic = Literal["z", "logcdf"]

# Records per chunk when the references are sorted for medians: (chunk × K × A) values at a
# time, ~16 MB of float32 for K = 64 and A = 1.
_CHUNK_RECORDS = 1 << 16


@dataclass(frozen=True)
class _SideFit:
    """Per-record fit for one side (IN or OUT): shapes (n, A) and counts (n,)."""

    mu: np.ndarray
    sd: np.ndarray
    count: np.ndarray
    #: False when σ fell back to the spread across records (no within-record spread measurable).
    within: bool = True
    #: Sum of squared deviations of all values around the side's common mean, (A,), and their number.
    total_ss: np.ndarray | None = None
    total_n: int = 0


# --------------------------------------------------------------------------- validation


def _as_float(name: str, values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiu":
        raise InputError(name, f"must be numeric, got dtype {arr.dtype}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise InputError(name, f"contains NaN or inf (first at index {tuple(int(i) for i in bad)})")
    return arr


def _as_keep(keep: np.ndarray, shape: tuple[int, ...], name: str = "keep") -> np.ndarray:
    arr = np.asarray(keep)
    if arr.shape != shape:
        raise InputError(name, f"has shape {arr.shape}, expected {shape}")
    if arr.dtype.kind == "b":
        return arr
    if arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1)).all():
        raise InputError(name, "values must be boolean (or 0/1)")
    return arr.astype(bool)


def _within(side: np.ndarray, use: np.ndarray | None) -> np.ndarray:
    """``side`` (a (K, n) mask of IN or OUT values) limited to the values a fit may use (``use``;
    None: all of them, and ``side`` itself: no (K, n) copy on the usual path)."""
    if use is None:
        return side
    within: np.ndarray = side & _as_keep(use, side.shape, "use")
    return within


def _check_lira(
    target_phi: np.ndarray, ref_phi: np.ndarray, keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate and bring inputs to (n, A), (K, n, A), (K, n)."""
    target = _as_float("target_phi", target_phi)
    refs = _as_float("ref_phi", ref_phi)
    if target.ndim not in (1, 2):
        raise InputError(
            "target_phi", f"must be (records,) or (records, queries), got shape {target.shape}"
        )
    if refs.ndim != target.ndim + 1 or refs.shape[1:] != target.shape:
        want = "(models, " + ", ".join(["records", "queries"][: target.ndim]) + ")"
        raise InputError(
            "ref_phi", f"has shape {refs.shape}, expected {want} matching target_phi {target.shape}"
        )
    if refs.shape[0] == 0 or target.shape[0] == 0 or (target.ndim == 2 and target.shape[1] == 0):
        raise InputError("ref_phi", f"no reference models, records or queries (shape {refs.shape})")
    mask = _as_keep(keep, refs.shape[:2])
    if target.ndim == 1:
        target, refs = target[:, None], refs[..., None]
    return target, refs, mask


# --------------------------------------------------------------------------- masked statistics


def _masked_sorted(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each record's selected reference values, NaN padding the unselected ones.

    ``values`` (K, m, A) and ``mask`` (K, m) give ``(sorted, count)``: (m, A, K) values in
    ascending order then NaN, and (m,) counts.
    """
    x = np.moveaxis(values, 0, -1)  # (m, A, K) view
    fill = np.array(np.nan, dtype=values.dtype)
    out = np.where(mask.T[:, None, :], x, fill)
    out.sort(axis=-1)  # NaN sorts last
    return out, mask.sum(axis=0)


def _masked_median(sorted_vals: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Median of the first ``count`` values of each sorted row; rows with count 0 give 0."""
    c = np.maximum(count, 1)[:, None, None]
    lo = np.take_along_axis(
        sorted_vals, np.broadcast_to((c - 1) // 2, (*sorted_vals.shape[:-1], 1)), axis=-1
    )[..., 0]
    hi = np.take_along_axis(
        sorted_vals, np.broadcast_to(c // 2, (*sorted_vals.shape[:-1], 1)), axis=-1
    )[..., 0]
    med = 0.5 * (lo.astype(np.float64) + hi.astype(np.float64))
    return np.where((count > 0)[:, None], med, 0.0)


def _masked_mean_ss(
    values: np.ndarray, mask: np.ndarray, count: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-record mean and sum of squared deviations of the selected references: (m, A) each."""
    w = mask[..., None]
    x = values.astype(np.float64)  # one working copy, zeroed outside the mask in place
    x *= w
    mean = x.sum(axis=0) / np.maximum(count, 1)[:, None]
    x -= mean
    x *= w
    return mean, np.einsum("kma,kma->ma", x, x)


def _fit_side(refs: np.ndarray, mask: np.ndarray, variance: Variance, side: str) -> _SideFit:
    """Median μ and σ (per-record with fallback, or global) for one side, chunked over records."""
    _, n, a = refs.shape
    mu = np.empty((n, a), dtype=np.float64)
    ss = np.empty((n, a), dtype=np.float64)
    mean = np.empty((n, a), dtype=np.float64)
    count = np.empty(n, dtype=np.int64)
    for lo in range(0, n, _CHUNK_RECORDS):
        hi = min(n, lo + _CHUNK_RECORDS)
        part, m = refs[:, lo:hi], mask[:, lo:hi]
        srt, c = _masked_sorted(part, m)
        mu[lo:hi] = _masked_median(srt, c)
        del srt
        mean[lo:hi], ss[lo:hi] = _masked_mean_ss(part, m, c)
        count[lo:hi] = c
    empty = count == 0
    if empty.any():
        raise InputError(
            "keep",
            f"{int(empty.sum())} record(s) have no {side} reference model (first at position {int(np.argmax(empty))}); "
            f"LiRA needs at least one {side} reference per record (use complementary pairs, docs/method.md §3)",
        )
    pooled = np.sqrt(ss.sum(axis=0) / count.sum())  # (A,)
    # Small k (module docstring): no within-record spread → the spread across records.
    total_n = int(count.sum())
    grand = (mean * count[:, None]).sum(axis=0) / total_n
    total_ss = ss.sum(axis=0) + (count[:, None] * (mean - grand) ** 2).sum(axis=0)
    within = bool((count >= 2).any() and (pooled > 0).all())
    if not within:
        pooled = np.sqrt(total_ss / total_n)
        pooled = np.where(pooled > 0, pooled, 1.0)
    if variance == "global":
        sd = np.broadcast_to(pooled, (n, a)).copy()
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            own = np.sqrt(ss / count[:, None])
        usable = (count[:, None] >= 2) & (own > 0)
        sd = np.where(usable, own, pooled)
    return _SideFit(mu, sd, count, within, total_ss, total_n)


def _common_fallback(fin: _SideFit, fout: _SideFit) -> tuple[_SideFit, _SideFit]:
    """Online with no within-record spread on either side: one σ pooled over both sides."""
    if fin.within or fout.within or fin.total_ss is None or fout.total_ss is None:
        return fin, fout
    sd = np.sqrt((fin.total_ss + fout.total_ss) / (fin.total_n + fout.total_n))
    sd = np.where(sd > 0, sd, 1.0)
    return (
        _SideFit(
            fin.mu,
            np.broadcast_to(sd, fin.mu.shape).copy(),
            fin.count,
            False,
            fin.total_ss,
            fin.total_n,
        ),
        _SideFit(
            fout.mu,
            np.broadcast_to(sd, fout.mu.shape).copy(),
            fout.count,
            False,
            fout.total_ss,
            fout.total_n,
        ),
    )


def _check_variance(variance: str) -> None:
    if variance not in ("per_record", "global"):
        raise InputError("variance", f"must be 'per_record' or 'global', got {variance!r}")


# --------------------------------------------------------------------------- public attacks


def lira_online(
    target_phi: np.ndarray,
    ref_phi: np.ndarray,
    keep: np.ndarray,
    *,
    variance: Variance = "global",
    use: np.ndarray | None = None,
) -> np.ndarray:
    """Online LiRA score of each record: log N(φ; μ_in, σ_in²) − log N(φ; μ_out, σ_out²).

    Carlini et al., "Membership Inference Attacks From First Principles", IEEE S&P 2022,
    Algorithm 1 (online). μ is the median over references, σ the standard deviation
    (``variance="per_record"``) or one pooled σ per side and query (``"global"``, the paper's
    fixed variance, better below about 16–64 references). See the module docstring for the
    too-few-references policy.

    Parameters
    ----------
    target_phi : ndarray of shape (n,) or (n, A)
        The audited model's scaled logit φ on each record (A augmentation queries).
    ref_phi : ndarray of shape (K, n) or (K, n, A)
        Reference models' φ on the same records and queries.
    keep : ndarray of shape (K, n), bool
        ``keep[k, i]``: reference k trained on record i (IN).
    variance : {"global", "per_record"}
        One σ per side and query shared by all records (default: better below about 16–64
        references, docs/method.md §3), or per-record σ.
    use : ndarray of shape (K, n), bool, optional
        ``use[k, i]``: reference k's φ on record i enters the fits (default: all), which are
        made as if the unused values were absent; the reference audit balances IN and OUT
        counts with it (docs/method.md §3, "Balanced references").

    Returns
    -------
    ndarray of shape (n,), float64
        The log-likelihood ratio averaged over queries; higher means more likely a member.

    Raises
    ------
    InputError
        On mismatched shapes, non-finite values, or a record without a used IN or OUT value.

    Examples
    --------
    >>> keep = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=bool)
    >>> refs = np.array([[3.0, 0.0], [0.0, 3.0], [3.2, 0.2], [0.2, 3.2]])
    >>> lira_online(np.array([3.1, 0.1]), refs, keep, variance="global").round(2)
    array([ 450., -450.])
    """
    _check_variance(variance)
    target, refs, mask = _check_lira(target_phi, ref_phi, keep)
    fin = _fit_side(refs, _within(mask, use), variance, "IN")
    fout = _fit_side(refs, _within(~mask, use), variance, "OUT")
    fin, fout = _common_fallback(fin, fout)
    z_in = (target - fin.mu) / fin.sd
    z_out = (target - fout.mu) / fout.sd
    llr = np.log(fout.sd) - np.log(fin.sd) + 0.5 * (z_out * z_out - z_in * z_in)
    score: np.ndarray = llr.mean(axis=1)
    return score


# Long: over 60 lines only through its numpydoc docstring; the code itself is 10 lines.
def lira_offline(
    target_phi: np.ndarray,
    ref_phi: np.ndarray,
    keep: np.ndarray,
    *,
    variance: Variance = "global",
    statistic: OfflineStatistic = "z",
    use: np.ndarray | None = None,
) -> np.ndarray:
    """Offline LiRA score of each record from OUT references only.

    Carlini et al., "Membership Inference Attacks From First Principles", IEEE S&P 2022,
    offline variant: the one-sided test Pr[Z < φ] with Z ~ N(μ_out, σ_out²). The score is the
    standardised z = (φ − μ_out)/σ_out (``statistic="z"``) or ``log Φ(z)``
    (``statistic="logcdf"``, via ``scipy.special.log_ndtr``); both rank like Φ(z) but, unlike
    Φ, stay strictly increasing where Φ rounds to 1.0 (z ≳ 8.3). ``log Φ(z)`` itself rounds to
    0.0 beyond z ≈ 38 (float64), so ``"z"``, which never saturates, is the default. Only
    references with ``keep[k, i] == False`` are used for record i.

    Parameters
    ----------
    target_phi : ndarray of shape (n,) or (n, A)
        The audited model's scaled logit φ on each record (A augmentation queries).
    ref_phi : ndarray of shape (K, n) or (K, n, A)
        Reference models' φ on the same records and queries.
    keep : ndarray of shape (K, n), bool
        ``keep[k, i]``: reference k trained on record i; those pairs are ignored.
    variance : {"global", "per_record"}
        One pooled σ_out per query (default), or per-record σ_out.
    statistic : {"z", "logcdf"}
        The standardised score or its log normal CDF.
    use : ndarray of shape (K, n), bool, optional
        ``use[k, i]``: reference k's φ on record i enters the OUT fit (default: all); the
        reference audit balances references with it where the design ties a record's OUT count
        to the target's membership (docs/method.md §3).

    Returns
    -------
    ndarray of shape (n,), float64
        The statistic averaged over queries; higher means more likely a member.

    Raises
    ------
    InputError
        On mismatched shapes, non-finite values, or a record without an OUT reference.

    Examples
    --------
    >>> refs = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]])
    >>> keep = np.zeros((3, 2), dtype=bool)
    >>> lira_offline(np.array([1.0, 10.0]), refs, keep, variance="global").round(3)
    array([0.   , 9.798])
    """
    _check_variance(variance)
    if statistic not in ("z", "logcdf"):
        raise InputError("statistic", f"must be 'z' or 'logcdf', got {statistic!r}")
    target, refs, mask = _check_lira(target_phi, ref_phi, keep)
    fout = _fit_side(refs, _within(~mask, use), variance, "OUT")
    z = (target - fout.mu) / fout.sd
    if statistic == "logcdf":
        z = log_ndtr(z)
    score: np.ndarray = z.mean(axis=1)
    return score
