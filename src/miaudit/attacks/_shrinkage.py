"""LiRA with empirical-Bayes shrinkage of each record's variances, for few references
(docs/method.md §12).

With k references a record's own variance of φ rests on k values (one, at k = 1), so plain
LiRA either trusts it (per-record σ, noisy) or ignores it (one global σ, which treats a record
whose φ barely moves across models like one whose φ swings by tens). Here each record's IN and
OUT variances are posterior estimates under a scaled-inverse-χ² prior whose hyper-parameters are
fitted across records (empirical Bayes, as in Brännvall's BaVarIA, 2026, and limma's moderated
variances, Smyth 2004), and each side is scored by its Student-t predictive (BaVarIA-t), the
estimator ``check-record`` uses (docs/method.md §11):

- σ² ~ scaled-inv-χ²(ν₀, σ₀²(g)), with a flat prior on the record's mean (its location is its
  own mean x̄: the membership signal is a record's offset from records like it, so a class-mean
  location would pull the atypical, most exposed records toward typical ones). g is a
  (group, level bin): records are cut into up to :data:`LEVEL_BINS` quantile bins of their
  *level*, the mean of their OUT references' φ, so σ₀² follows the trend of φ's spread with its
  level (limma-trend; Law et al. 2014); φ near a saturated softmax spreads far more than φ near
  0. A group is a class with at least :data:`MIN_PER_BIN` records that carry two values on the
  side (the records the prior is fitted on); the other classes share one pooled group.
- σ₀²(g) and ν₀ by Smyth's moments of log s² across records with ≥ 2 values on the side:
  e = log s² − ψ(d/2) + log(d/2) (d = n − 1); the bin mean ē_g of e gives log σ₀²(g) after the
  bias correction ψ(ν₀/2) − log(ν₀/2), and the spread of e around the bin means, less the
  mean ψ′(d/2), is ψ′(ν₀/2). Population records (no model trained on them) carry every
  reference as an OUT value, so even at k = 1 they give the OUT side's spread; the target is
  never read for any hyper-parameter.
- Posterior per record with n values, mean x̄ and sum of squares SS (one degree of freedom
  spent on the mean): σ̃² = (ν₀σ₀² + SS)/(ν₀ + n − 1); predictive of a new value
  t_{ν₀+n−1}(x̄, σ̃²(1 + 1/n)). As n → ∞ this tends to the record's own Gaussian; with
  ν₀ → ∞ it is N(x̄, σ₀²(g)(1 + 1/n)).
- Online: log t_in(φ) − log t_out(φ). Offline: the predictive's upper tail at φ on the normal
  scale, z = Φ⁻¹(P(T ≤ φ)) (the t statistic itself where ν₀ = ∞).

When nothing on a side has two values (k = 1 without a population), σ₀² cannot be separated
from the spread between records: σ is then plain LiRA's small-k fallback (the side's spread
around its common mean), plugged in as a Gaussian, so the attack is exactly global-variance
LiRA with mean in place of median. Online, an IN side without two values per record borrows
the OUT side's σ₀²(g) and ν₀ (the spreads are assumed equal), and when both sides fall back one
σ serves both, as in :func:`~miaudit.attacks.lira_online`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import digamma, gammaln, ndtri, polygamma, stdtr

from miaudit.attacks._lira import _check_lira, _common_fallback, _fit_side, _within
from miaudit.errors import InputError

#: At most this many level bins per class, and at least this many records per bin.
LEVEL_BINS = 8
MIN_PER_BIN = 250
#: ν₀ and κ₀ stand for ∞ at this value (the closed forms stay finite).
INFINITE = 1e8
#: Records per chunk of the per-record moments (:func:`_stats`).
STATS_CHUNK = 65_536


@dataclass(frozen=True)
class _Prior:
    """Hyper-parameters of one side and query: per record σ₀² (n,) and one ν₀; ``plug_in``:
    nothing was replicated, σ₀ is plain LiRA's small-k σ used as a known Gaussian σ."""

    sigma0_sq: np.ndarray
    nu0: float
    plug_in: bool = False


@dataclass(frozen=True)
class _Predictive:
    """Each record's predictive for a new value: location, scale and degrees of freedom (n, A);
    a dof of :data:`INFINITE` or more is a Gaussian."""

    loc: np.ndarray
    scale: np.ndarray
    dof: np.ndarray


def trigamma_inverse(x: float) -> float:
    """y with ψ′(y) = x, for x > 0 (Newton's method on 1/ψ′, as limma's ``trigammaInverse``).

    >>> round(trigamma_inverse(float(polygamma(1, 3.0))), 10)
    3.0
    """
    if x > 1e7:
        return 1.0 / math.sqrt(x)
    if x < 1e-6:
        return 1.0 / x
    y = 0.5 + 1.0 / x
    for _ in range(50):
        tri = float(polygamma(1, y))
        dif = tri * (1.0 - tri / x) / float(polygamma(2, y))
        y += dif
        if -dif / y < 1e-8:
            break
    return y


def level_bins(level: np.ndarray, group: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """Bin index of every record: quantile bins of ``level`` within its ``group``.

    Bin edges come from the levels of the records selected by ``fit`` (bool, those whose values
    fit the prior); a group with fewer than 2·MIN_PER_BIN of them is one bin.
    Returns (n,) int64 codes unique across groups.
    """
    out = np.zeros(level.size, dtype=np.int64)
    for code, c in enumerate(np.unique(group)):
        rows = group == c
        chosen = level[rows & fit]
        bins = int(min(LEVEL_BINS, max(1, chosen.size // MIN_PER_BIN)))
        inner = np.quantile(chosen, np.linspace(0, 1, bins + 1)[1:-1]) if bins > 1 else np.empty(0)
        out[rows] = code * LEVEL_BINS + np.searchsorted(inner, level[rows], side="right")
    return out


def variance_groups(cls: np.ndarray, replicated: np.ndarray) -> np.ndarray:
    """Each record's variance group: its class where the class has at least MIN_PER_BIN
    ``replicated`` records (two values on the side), else one pooled group (code −1), so that no
    σ₀² rests on a handful of records."""
    out = np.full(cls.size, -1, dtype=np.int64)
    for c in np.unique(cls):
        rows = cls == c
        if int((rows & replicated).sum()) >= MIN_PER_BIN:
            out[rows] = c
    return out


def _variance_prior(
    ss: np.ndarray, count: np.ndarray, bins: np.ndarray, cls: np.ndarray
) -> tuple[np.ndarray, float] | None:
    """Smyth's moment fit of σ₀² per bin and one ν₀, from records with ≥ 2 values and s² > 0.

    ``bins`` and ``cls`` index every record; returns (σ₀² per record, ν₀), or None when no record
    has two values with any spread.
    """
    d = count - 1.0
    ok = (count >= 2) & (ss > 0)
    if not ok.any():
        return None
    dd = d[ok]
    e = np.log(ss[ok] / dd) - digamma(dd / 2) + np.log(dd / 2)
    codes, inverse = np.unique(bins[ok], return_inverse=True)
    bin_mean = np.bincount(inverse, weights=e) / np.bincount(inverse)
    resid = e - bin_mean[inverse]
    dof = max(e.size - codes.size, 1)
    v = float(np.sum(resid**2) / dof - np.mean(polygamma(1, dd / 2)))
    nu0 = 2.0 * trigamma_inverse(v) if v > 0 else INFINITE
    nu0 = min(nu0, INFINITE)
    correction = float(digamma(nu0 / 2) - np.log(nu0 / 2)) if nu0 < INFINITE else 0.0
    # Bins without a replicated record take their class's mean of e (else the overall mean).
    e_bin = np.full(bins.max() + 1, float(e.mean()))
    for c in np.unique(cls):
        in_class = cls[ok] == c
        if in_class.any():
            e_bin[bins[cls == c]] = float(e[in_class].mean())
    e_bin[codes] = bin_mean
    return np.exp(e_bin[bins] + correction), nu0


def _posterior(prior: _Prior, mean: np.ndarray, ss: np.ndarray, count: np.ndarray) -> _Predictive:
    """Each record's Student-t predictive from its own mean, sum of squares and count (n,)
    (module docstring); the small-k plug-in Gaussian when ``prior.plug_in``."""
    n = count.astype(np.float64)
    if prior.plug_in:
        scale = np.sqrt(prior.sigma0_sq)
        return _Predictive(mean, scale, np.full(mean.shape, INFINITE))
    nu0 = prior.nu0
    if nu0 >= INFINITE:
        var, dof = prior.sigma0_sq.copy(), np.full(mean.shape, INFINITE)
    else:
        dof = nu0 + n - 1.0
        var = (nu0 * prior.sigma0_sq + ss) / dof
    scale = np.sqrt(np.maximum(var * (1.0 + 1.0 / n), np.finfo(np.float64).tiny))
    return _Predictive(mean, scale, dof)


def _log_density(x: np.ndarray, p: _Predictive) -> np.ndarray:
    """log of the predictive density at x (n,): Student-t, Gaussian where dof ≥ INFINITE."""
    z = (x - p.loc) / p.scale
    gauss = p.dof >= INFINITE
    nu = np.where(gauss, 1.0, p.dof)
    t = gammaln((nu + 1) / 2) - gammaln(nu / 2) - 0.5 * np.log(nu * np.pi)
    t = t - 0.5 * (nu + 1) * np.log1p(z * z / nu)
    out: np.ndarray = np.where(gauss, -0.5 * np.log(2 * np.pi) - 0.5 * z * z, t) - np.log(p.scale)
    return out


def _upper_tail_z(x: np.ndarray, p: _Predictive) -> np.ndarray:
    """Φ⁻¹ of the predictive CDF at x (n,): the t statistic on the normal scale (itself where
    dof ≥ INFINITE, or where the tail probability underflows)."""
    t = (x - p.loc) / p.scale
    gauss = p.dof >= INFINITE
    with np.errstate(divide="ignore"):
        tail = stdtr(np.where(gauss, 1.0, p.dof), -t)
        z = -ndtri(tail)
    out: np.ndarray = np.where(gauss | ~np.isfinite(z), t, z)
    return out


@dataclass(frozen=True)
class _Moments:
    """One side's per-record count (n,), mean and sum of squares (n, A) of its selected values."""

    count: np.ndarray
    mean: np.ndarray
    ss: np.ndarray


def _stats(values: np.ndarray, mask: np.ndarray) -> _Moments:
    """The selected values' moments, :data:`STATS_CHUNK` records at a time: the float64
    temporaries stay K × chunk × A, not K × n × A (2 GB at a million records and K = 64)."""
    count = mask.sum(axis=0)
    n, n_q = values.shape[1:]
    mean, ss = np.empty((n, n_q)), np.empty((n, n_q))
    # A lone last record joins the chunk before it: NumPy sums a (K, 1, 1) block pairwise, not
    # row by row as every wider block, and one ULP in one record moves the fitted prior.
    starts = [lo for lo in range(0, n, STATS_CHUNK) if n - lo != 1 or lo == 0]
    for lo, hi in zip(starts, [*starts[1:], n], strict=True):
        rows = slice(lo, hi)
        w = mask[:, rows, None]
        x = np.where(w, values[:, rows].astype(np.float64), 0.0)
        mean[rows] = x.sum(axis=0) / np.maximum(count[rows], 1)[:, None]
        dev = np.where(w, x - mean[rows], 0.0)
        ss[rows] = np.einsum("kma,kma->ma", dev, dev)
    return _Moments(count, mean, ss)


@dataclass(frozen=True)
class _Data:
    """What the prior is fitted on: the scored records' OUT and IN moments (IN: None offline),
    then the population's (all OUT; None without a population), and every record's class."""

    refs: np.ndarray  # (K, n, A)
    mask: np.ndarray  # (K, n) IN values used
    out_mask: np.ndarray  # (K, n) OUT values used
    group: np.ndarray  # (n + m,) class
    out: _Moments
    inn: _Moments | None
    pop: _Moments | None


def _fit_out(data: _Data, level: np.ndarray, a: int) -> tuple[_Prior, np.ndarray, bool]:
    """The OUT side's prior for query ``a`` and each scored record's bin; False as the last
    element when no within-record spread could be measured (the small-k fallback)."""
    n = data.refs.shape[1]
    count, ss = data.out.count, data.out.ss[:, a]
    if data.pop is not None:
        count, ss = np.concatenate([count, data.pop.count]), np.concatenate([ss, data.pop.ss[:, a]])
    replicated = (count >= 2) & (ss > 0)
    groups = variance_groups(data.group, replicated)
    bins = level_bins(level, groups, replicated)
    fitted = _variance_prior(ss, count.astype(np.float64), bins, groups)
    if fitted is None:
        fb = _fit_side(data.refs[..., a : a + 1], data.out_mask, "global", "OUT")
        s0 = np.full(n, float(fb.sd[0, 0]) ** 2)  # σ̃ = fb.sd up to one rounding
        return _Prior(s0, INFINITE, plug_in=True), bins[:n], False
    s0, nu0 = fitted
    return _Prior(s0[:n], nu0), bins[:n], True


def _fit_in(data: _Data, out_prior: _Prior, bins: np.ndarray, a: int) -> tuple[_Prior, bool]:
    """The IN side's prior, in the OUT side's bins: its own fit where records have two IN
    values, else the OUT side's σ₀² and ν₀ (assumed equal spreads); when neither side has any,
    the OUT side's plug-in σ (replaced by one σ pooled over both sides)."""
    assert data.inn is not None
    count, ss = data.inn.count, data.inn.ss[:, a]
    fitted = _variance_prior(ss, count.astype(np.float64), bins, bins // LEVEL_BINS)
    if fitted is None:
        return out_prior, False
    return _Prior(fitted[0], fitted[1]), True


def _levels(data: _Data) -> np.ndarray:
    """(n + m, A) level of each record: the mean of its OUT references' φ."""
    if data.pop is None:
        return data.out.mean
    return np.vstack([data.out.mean, data.pop.mean])


def _prepare(
    target_phi: np.ndarray,
    ref_phi: np.ndarray,
    keep: np.ndarray,
    labels: np.ndarray | None,
    population_phi: np.ndarray | None,
    population_labels: np.ndarray | None,
    online: bool,
    use: np.ndarray | None = None,
) -> tuple[np.ndarray, _Data]:
    target, refs, keep_mask = _check_lira(target_phi, ref_phi, keep)
    mask, out_mask = _within(keep_mask, use), _within(~keep_mask, use)
    pop = None
    if population_phi is not None:
        k = refs.shape[0]
        shape = np.shape(population_phi)
        if len(shape) != np.ndim(ref_phi) or shape[0] != k:
            raise InputError(
                "population_phi",
                f"has shape {shape}, expected ({k}, records[, queries]) like ref_phi",
            )
        _, pop, _ = _check_lira(
            np.zeros(np.shape(population_phi)[1:]),
            population_phi,
            np.zeros((k, np.shape(population_phi)[1]), dtype=bool),
        )
        if pop.shape[0] != k or pop.shape[2] != refs.shape[2]:
            raise InputError(
                "population_phi", f"has shape {pop.shape}, expected ({k}, records, {refs.shape[2]})"
            )
    group = _groups(labels, target.shape[0], population_labels, 0 if pop is None else pop.shape[1])
    _require(mask, out_mask, online)
    return target, _Data(
        refs,
        mask,
        out_mask,
        group,
        out=_stats(refs, out_mask),
        inn=_stats(refs, mask) if online else None,
        pop=None if pop is None else _stats(pop, np.ones(pop.shape[:2], dtype=bool)),
    )


def _groups(
    labels: np.ndarray | None, n: int, population_labels: np.ndarray | None, m: int
) -> np.ndarray:
    if labels is None:
        return np.zeros(n + m, dtype=np.int64)
    lab = np.asarray(labels).reshape(-1)
    if lab.size != n:
        raise InputError("labels", f"has {lab.size} entries for {n} records")
    if m == 0:
        return lab
    plab = np.asarray(population_labels).reshape(-1) if population_labels is not None else None
    if plab is None or plab.size != m:
        raise InputError("population_labels", f"needs one label per population record ({m})")
    return np.concatenate([lab, plab])


def shrunk_gaussians(
    target_phi: np.ndarray,
    ref_phi: np.ndarray,
    keep: np.ndarray,
    *,
    online: bool,
    labels: np.ndarray | None = None,
    population_phi: np.ndarray | None = None,
    population_labels: np.ndarray | None = None,
    use: np.ndarray | None = None,
) -> tuple[_Predictive, _Predictive | None, np.ndarray]:
    """Each record's OUT and IN predictives (location, scale, dof; each (n, A)) and the
    target's φ (n, A). The IN predictive is None offline. ``use`` (K, n): the (reference,
    record) values the fits may read, as in :func:`~miaudit.attacks.lira_online` (default
    all). See the module docstring."""
    target, data = _prepare(
        target_phi, ref_phi, keep, labels, population_phi, population_labels, online, use
    )
    level = _levels(data)
    n, n_q = target.shape
    out = _Predictive(np.empty((n, n_q)), np.empty((n, n_q)), np.empty((n, n_q)))
    inn = _Predictive(np.empty((n, n_q)), np.empty((n, n_q)), np.empty((n, n_q)))
    for a in range(n_q):
        prior_out, bins, within_out = _fit_out(data, level[:, a], a)
        _put(out, a, _posterior(prior_out, *_side_stats(data.out, a)))
        if data.inn is None:
            continue
        prior_in, within_in = _fit_in(data, prior_out, bins, a)
        _put(inn, a, _posterior(prior_in, *_side_stats(data.inn, a)))
        if not (within_out or within_in):
            inn.scale[:, a], out.scale[:, a] = _common_sd(data, a)
    return out, (inn if online else None), target


def _side_stats(side: _Moments, a: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, SS, count) of the side's values for query ``a``, each (n,)."""
    return side.mean[:, a], side.ss[:, a], side.count


def _put(into: _Predictive, a: int, p: _Predictive) -> None:
    into.loc[:, a], into.scale[:, a], into.dof[:, a] = p.loc, p.scale, p.dof


def _common_sd(data: _Data, a: int) -> tuple[float, float]:
    """Both sides fell back: one σ pooled over both, as plain online LiRA does."""
    refs = data.refs[..., a : a + 1]
    fin, fout = _common_fallback(
        _fit_side(refs, data.mask, "global", "IN"), _fit_side(refs, data.out_mask, "global", "OUT")
    )
    return float(fin.sd[0, 0]), float(fout.sd[0, 0])


def _require(mask: np.ndarray, out_mask: np.ndarray, online: bool) -> None:
    for side, m in (("OUT", out_mask), ("IN", mask))[: 2 if online else 1]:
        empty = ~m.any(axis=0)
        if empty.any():
            raise InputError(
                "keep",
                f"{int(empty.sum())} record(s) have no {side} reference model (first at position {int(np.argmax(empty))})",
            )


def lira_shrunk_online(
    target_phi: np.ndarray,
    ref_phi: np.ndarray,
    keep: np.ndarray,
    *,
    labels: np.ndarray | None = None,
    population_phi: np.ndarray | None = None,
    population_labels: np.ndarray | None = None,
    use: np.ndarray | None = None,
) -> np.ndarray:
    """Online LiRA with shrunk variances: log t_in(φ) − log t_out(φ), each side's Student-t
    predictive, averaged over queries (module docstring; docs/method.md §12).

    Parameters
    ----------
    target_phi : ndarray of shape (n,) or (n, A)
    ref_phi : ndarray of shape (K, n) or (K, n, A)
    keep : ndarray of shape (K, n), bool
    labels : ndarray of shape (n,), optional
        Each record's class: the prior is fitted per class (one group without labels).
    population_phi : ndarray of shape (K, m) or (K, m, A), optional
        The same references' φ on population records (trained on by none of them): more
        OUT values for the prior; the target's φ on them is never needed.
    population_labels : ndarray of shape (m,), optional
        Required with ``labels`` and ``population_phi``.
    use : ndarray of shape (K, n), bool, optional
        ``use[k, i]``: reference k's φ on record i enters record i's IN or OUT values
        (default: all), as in :func:`~miaudit.attacks.lira_online`; the population's values
        are all used.

    Returns
    -------
    ndarray of shape (n,), float64
        Higher means more likely a member.

    Examples
    --------
    >>> keep = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=bool)
    >>> refs = np.array([[3.0, 0.0], [0.0, 3.0], [3.2, 0.2], [0.2, 3.2]])
    >>> s = lira_shrunk_online(np.array([3.1, 0.1]), refs, keep)
    >>> bool(s[0] > 0 > s[1])
    True
    """
    out, inn, target = shrunk_gaussians(
        target_phi,
        ref_phi,
        keep,
        online=True,
        labels=labels,
        population_phi=population_phi,
        population_labels=population_labels,
        use=use,
    )
    assert inn is not None
    llr = _log_density(target, inn) - _log_density(target, out)
    score: np.ndarray = llr.mean(axis=1)
    return score


def lira_shrunk_offline(
    target_phi: np.ndarray,
    ref_phi: np.ndarray,
    keep: np.ndarray,
    *,
    labels: np.ndarray | None = None,
    population_phi: np.ndarray | None = None,
    population_labels: np.ndarray | None = None,
) -> np.ndarray:
    """Offline LiRA with a shrunk OUT variance: the OUT predictive's CDF at φ on the normal
    scale, averaged over queries (module docstring; parameters as :func:`lira_shrunk_online`,
    IN references ignored).

    Examples
    --------
    >>> refs = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]])
    >>> keep = np.zeros((3, 2), dtype=bool)
    >>> s = lira_shrunk_offline(np.array([1.0, 10.0]), refs, keep)
    >>> bool(s[1] > s[0])
    True
    """
    out, _, target = shrunk_gaussians(
        target_phi,
        ref_phi,
        keep,
        online=False,
        labels=labels,
        population_phi=population_phi,
        population_labels=population_labels,
    )
    score: np.ndarray = _upper_tail_z(target, out).mean(axis=1)
    return score


__all__ = [
    "lira_shrunk_offline",
    "lira_shrunk_online",
    "shrunk_gaussians",
    "trigamma_inverse",
    "variance_groups",
]
