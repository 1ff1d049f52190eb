"""Label-only membership attacks through an :class:`~miaudit.attacks._oracle.Oracle` (docs/method.md §5).

These attacks need only the predicted label, so they work under every output policy, label-only
included: output restriction does not stop them (Choquette-Choo, Tramèr, Carlini & Papernot,
"Label-Only Membership Inference Attacks", ICML 2021; Li & Zhang, "Membership Leakage in
Label-Only Exposures", CCS 2021). Every attack returns one :class:`QueryAttackResult`: a score
per record (higher = member) and the queries it spent on each record, tagged on the oracle too.

- ``gap``: correct or not, one query (Yeom et al., CSF 2018).
- ``noise_robustness``: fraction of x + N(0, σ²·diag(scale²)) draws still classified y (tabular).
- ``augmentation_robustness``: fraction of the recipe's augmentations of x still classified y
  (images: shifts, flips).
- ``boundary_distance``: estimated L2 distance from x to the nearest label flip, from a
  HopSkipJump-style search (Chen, Jordan & Wainwright, IEEE S&P 2020) under a hard per-record query
  budget. Members sit further from the boundary.

Distances and noise are measured in *scaled* units, x = x₀ + scale ⊙ z, ‖z‖₂: pass each feature's
standard deviation as ``scale`` for tabular data (0 freezes a feature, e.g. a one-hot column).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from miaudit.attacks._oracle import Oracle
from miaudit.attacks._threshold import SPECS, THRESHOLD_ATTACKS, ThresholdAttack, threshold_score
from miaudit.defenses import Exposed, OutputPolicy, computable_signals, exposed_signals
from miaudit.errors import InputError

QueryAttack = Literal["gap", "noise_robustness", "augmentation_robustness", "boundary_distance"]
QUERY_ATTACKS: tuple[QueryAttack, ...] = (
    "gap",
    "noise_robustness",
    "augmentation_robustness",
    "boundary_distance",
)
_ROWS_PER_CALL = 65536  # rows sent to the oracle at once by the robustness attacks
_MAX_HALVINGS = 8  # step-size halvings per HopSkipJump iteration before giving up on that step


@dataclass(frozen=True, eq=False)
class QueryAttackResult:
    """Scores (n,) float64, higher = member, and queries (n,) int64 spent on each record."""

    attack: QueryAttack
    scores: np.ndarray
    queries: np.ndarray
    paper: str

    @property
    def total_queries(self) -> int:
        return int(self.queries.sum())


def _check(records: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(records)
    y = np.asarray(labels)
    if x.ndim < 2 or x.shape[0] == 0:
        raise InputError(
            "records", f"must be a non-empty (n, ...) array of records, got shape {x.shape}"
        )
    if y.shape != (x.shape[0],):
        raise InputError("labels", f"has shape {y.shape}, expected ({x.shape[0]},)")
    if y.dtype.kind not in "iu" and (y.dtype.kind != "f" or not np.all(np.mod(y, 1) == 0)):
        raise InputError("labels", "must be integer class indices")
    return x, y.astype(np.int64)


def _scale(scale: np.ndarray | float | None, shape: tuple[int, ...]) -> np.ndarray:
    """The per-feature scale flattened to (dim,); checked non-negative, finite, not all 0."""
    dim = int(np.prod(shape))
    if scale is None:
        return np.ones(dim)
    s = np.asarray(scale, dtype=np.float64)
    try:
        s = np.broadcast_to(s, shape).reshape(dim).copy()
    except ValueError:
        raise InputError(
            "scale", f"has shape {s.shape}, which does not broadcast to a record's shape {shape}"
        ) from None
    if not np.all(np.isfinite(s)) or np.any(s < 0) or not np.any(s > 0):
        raise InputError("scale", "must be finite, ≥ 0, and positive for at least one feature")
    return s


def gap_query_attack(oracle: Oracle, records: np.ndarray, labels: np.ndarray) -> QueryAttackResult:
    """Member iff classified correctly: one query per record (Yeom et al., CSF 2018).

    Parameters
    ----------
    oracle : Oracle
        The model behind its output policy.
    records : ndarray of shape (n, ...)
    labels : ndarray of shape (n,)
        True classes.

    Returns
    -------
    QueryAttackResult
        Scores in {0, 1}; one query per record.
    """
    x, y = _check(records, labels)
    idx = np.arange(y.size)
    out = oracle.query(x, tags=idx)
    return QueryAttackResult(
        "gap",
        (out.labels == y).astype(np.float64),
        np.ones(y.size, dtype=np.int64),
        "Yeom et al., CSF 2018",
    )


def _fraction_correct(
    oracle: Oracle, y: np.ndarray, copies: int, make: Callable[[np.ndarray, int], np.ndarray]
) -> np.ndarray:
    """Fraction of ``copies`` queries per record classified y; ``make(idx, j)`` builds copy j of records idx."""
    n = y.size
    correct = np.zeros(n)
    per_call = max(1, _ROWS_PER_CALL // max(1, copies))
    for start in range(0, n, per_call):
        idx = np.arange(start, min(n, start + per_call))
        batch = np.concatenate([make(idx, j) for j in range(copies)])
        tags = np.tile(idx, copies)
        got = oracle.query(batch, tags=tags).labels == y[tags]
        correct[idx] = got.reshape(copies, idx.size).sum(axis=0)
    return correct / copies


def noise_robustness_attack(
    oracle: Oracle,
    records: np.ndarray,
    labels: np.ndarray,
    *,
    sigma: float,
    n_draws: int = 50,
    scale: np.ndarray | float | None = None,
    rng: np.random.Generator | int,
) -> QueryAttackResult:
    """Fraction of noisy copies x + σ·scale⊙N(0, I) still classified y (Choquette-Choo et al., ICML 2021).

    Members sit deeper inside their class region, so more of their noisy copies keep the label.
    The tabular analogue of augmentation robustness (docs/method.md §5).

    Parameters
    ----------
    oracle : Oracle
    records : ndarray of shape (n, ...)
        Numeric records.
    labels : ndarray of shape (n,)
    sigma : float
        Noise standard deviation in units of ``scale``.
    n_draws : int
        Noisy copies (= queries) per record.
    scale : ndarray or float, optional
        Per-feature scale (e.g. the features' standard deviations; 0 keeps a feature fixed).
    rng : Generator or int
        Source of the noise.

    Returns
    -------
    QueryAttackResult
        Scores in [0, 1] (multiples of 1/n_draws); ``n_draws`` queries per record.
    """
    x, y = _check(records, labels)
    if not (np.isfinite(sigma) and sigma > 0):
        raise InputError("sigma", f"must be finite and > 0, got sigma={sigma}")
    if isinstance(n_draws, bool) or int(n_draws) != n_draws or n_draws < 1:
        raise InputError("n_draws", f"must be an integer ≥ 1, got n_draws={n_draws!r}")
    s = _scale(scale, x.shape[1:]).reshape(x.shape[1:])
    gen = np.random.default_rng(rng)
    xf = x.astype(np.float64)

    def make(idx: np.ndarray, _j: int) -> np.ndarray:
        noisy: np.ndarray = xf[idx] + sigma * s * gen.normal(size=(idx.size, *x.shape[1:]))
        return noisy

    scores = _fraction_correct(oracle, y, int(n_draws), make)
    return QueryAttackResult(
        "noise_robustness",
        scores,
        np.full(y.size, int(n_draws), dtype=np.int64),
        "Choquette-Choo et al., ICML 2021",
    )


def augmentation_robustness_attack(
    oracle: Oracle,
    records: np.ndarray,
    labels: np.ndarray,
    augmentations: Sequence[Callable[[np.ndarray], np.ndarray]],
) -> QueryAttackResult:
    """Fraction of augmented copies still classified y (Choquette-Choo et al., ICML 2021).

    Pass the training recipe's own augmentations as deterministic batch functions (n, ...) →
    (n, ...), e.g. each shift by ±1..±d pixels and the horizontal flip; include the identity to
    count the original query. A random augmentation must carry its own seeded Generator.

    Parameters
    ----------
    oracle : Oracle
    records : ndarray of shape (n, ...)
    labels : ndarray of shape (n,)
    augmentations : sequence of callables
        Each maps a batch of records to a batch of the same shape.

    Returns
    -------
    QueryAttackResult
        Scores in [0, 1]; ``len(augmentations)`` queries per record.
    """
    x, y = _check(records, labels)
    if len(augmentations) == 0:
        raise InputError("augmentations", "needs at least one augmentation")

    def make(idx: np.ndarray, j: int) -> np.ndarray:
        out = np.asarray(augmentations[j](x[idx]))
        if out.shape != (idx.size, *x.shape[1:]):
            raise InputError(
                "augmentations",
                f"augmentation {j} returned shape {out.shape}, expected {(idx.size, *x.shape[1:])}",
            )
        return out

    scores = _fraction_correct(oracle, y, len(augmentations), make)
    return QueryAttackResult(
        "augmentation_robustness",
        scores,
        np.full(y.size, len(augmentations), dtype=np.int64),
        "Choquette-Choo et al., ICML 2021",
    )


ImageAugment = Literal["hflip", "shift"]


def _shift(shape: tuple[int, int, int], dy: int, dx: int) -> Callable[[np.ndarray], np.ndarray]:
    c, h, w = shape

    def shift(batch: np.ndarray) -> np.ndarray:
        img = np.pad(batch.reshape(-1, c, h, w), ((0, 0), (0, 0), (1, 1), (1, 1)))
        return img[:, :, 1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w].reshape(batch.shape)

    return shift


def _then(
    first: Callable[[np.ndarray], np.ndarray], second: Callable[[np.ndarray], np.ndarray]
) -> Callable[[np.ndarray], np.ndarray]:
    return lambda batch: second(first(batch))


def recipe_augmentations(
    image_shape: tuple[int, int, int], augment: Sequence[ImageAugment]
) -> list[Callable[[np.ndarray], np.ndarray]]:
    """The query views of a recipe that trains with ``augment``, as batch functions on flattened images.

    The same views the engine queries (``query_views`` in :mod:`miaudit.models`): the image
    itself, its mirror (``"hflip"``), then one-pixel shifts up, down, left and right, zero-filled
    (``"shift"``), of the image and of its mirror. Records are (n, C·H·W) or (n, C, H, W).

    Examples
    --------
    >>> len(recipe_augmentations((1, 8, 8), ["hflip", "shift"]))
    10
    """
    c, h, w = image_shape

    def identity(batch: np.ndarray) -> np.ndarray:
        return batch

    def flip(batch: np.ndarray) -> np.ndarray:
        return batch.reshape(-1, c, h, w)[..., ::-1].reshape(batch.shape)

    unknown = set(augment) - {"hflip", "shift"}
    if unknown:
        raise InputError("augment", f"unknown augmentations {sorted(unknown)}; known: hflip, shift")
    bases: list[Callable[[np.ndarray], np.ndarray]] = [identity] + (
        [flip] if "hflip" in augment else []
    )
    out = list(bases)
    if "shift" in augment:
        for base in bases:
            for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                out.append(_then(base, _shift(image_shape, dy, dx)))
    return out


def _unit(v: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Rows of v restricted to the movable features (mask) and scaled to unit L2 norm."""
    v = v * mask
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(norm > 0, norm, 1.0)


# Long: over 60 lines only through its numpydoc docstring (parameters, returns, the method);
# the code itself is 23 lines.
def boundary_distance_attack(
    oracle: Oracle,
    records: np.ndarray,
    labels: np.ndarray,
    *,
    max_queries: int = 1000,
    scale: np.ndarray | float | None = None,
    max_distance: float | None = None,
    n_directions: int = 10,
    ladder_steps: int = 12,
    search_steps: int = 12,
    grad_queries: int = 50,
    rng: np.random.Generator | int,
) -> QueryAttackResult:
    """Estimated L2 distance to the nearest label flip, HopSkipJump-style, at most ``max_queries`` per record.

    Choquette-Choo et al. (ICML 2021) and Li & Zhang (CCS 2021) score a record by its distance to
    the decision boundary, found with HopSkipJump (Chen, Jordan & Wainwright, IEEE S&P 2020):

    1. one query: a misclassified record scores 0 (already across the boundary);
    2. a flipped start: along ``n_directions`` random directions, radii doubling up to
       ``max_distance`` (``ladder_steps`` rungs, stopping at the first flip), then a binary search
       (``search_steps`` queries) between the last unflipped and the first flipped radius of the
       best direction; no flip within ``max_distance`` scores ``max_distance``;
    3. HopSkipJump iterations while a whole iteration fits in the budget: estimate the boundary's
       normal from ``grad_queries`` sign queries at distance δ = d/dim around the boundary point
       (mean-baselined), step along it by d/√t (halving up to 8 times until the step stays
       flipped), and binary-search back to the boundary on the segment from x.

    The score is the smallest distance found (an upper bound on the true distance that tightens
    with the budget). Higher = member.

    Parameters
    ----------
    oracle : Oracle
    records : ndarray of shape (n, ...)
    labels : ndarray of shape (n,)
    max_queries : int
        Hard cap on queries per record; must cover steps 1–2 (1 + n_directions·ladder_steps +
        search_steps). docs/method.md §5: about 10³–10⁴ for a tight estimate.
    scale : ndarray or float, optional
        Per-feature scale of the distance (0 keeps a feature fixed).
    max_distance : float, optional
        Largest distance searched, in scaled units; default 4·√dim.
    n_directions, ladder_steps, search_steps, grad_queries : int
        Search sizes (see above).
    rng : Generator or int
        Source of the random directions.

    Returns
    -------
    QueryAttackResult
        Distances ≥ 0; queries spent per record (never above ``max_queries``).
    """
    x, y = _check(records, labels)
    _check_search_sizes(max_queries, n_directions, ladder_steps, search_steps, grad_queries)
    s = _scale(scale, x.shape[1:])
    movable = (s > 0).astype(np.float64)
    d_max = 4.0 * np.sqrt(movable.sum()) if max_distance is None else float(max_distance)
    if not (np.isfinite(d_max) and d_max > 0):
        raise InputError("max_distance", f"must be finite and > 0, got max_distance={max_distance}")
    gen = np.random.default_rng(rng)
    q = _BoundaryQueries(oracle, x, y, s)
    n = y.size
    score = np.zeros(n)
    wrong = q.flipped(np.arange(n), np.zeros((n, s.size)))
    act = np.arange(n)[~wrong]  # misclassified records keep score 0
    start = _flipped_start(q, act, movable, d_max, n_directions, ladder_steps, search_steps, gen)
    score[start.censored] = d_max  # no flip within the searched radius
    best = _hop_skip_jump(q, start, movable, max_queries, grad_queries, search_steps, gen)
    score[start.act] = best
    return QueryAttackResult(
        "boundary_distance",
        score,
        q.used,
        "Choquette-Choo et al., ICML 2021; Li & Zhang, CCS 2021",
    )


def _check_search_sizes(
    max_queries: int, n_directions: int, ladder_steps: int, search_steps: int, grad_queries: int
) -> None:
    for name, value, least in (
        ("n_directions", n_directions, 1),
        ("ladder_steps", ladder_steps, 1),
        ("search_steps", search_steps, 1),
        ("grad_queries", grad_queries, 2),
    ):
        if isinstance(value, bool) or int(value) != value or value < least:
            raise InputError(name, f"must be an integer ≥ {least}, got {name}={value!r}")
    start_cost = 1 + n_directions * ladder_steps + search_steps
    if isinstance(max_queries, bool) or int(max_queries) != max_queries or max_queries < start_cost:
        raise InputError(
            "max_queries",
            f"must be an integer ≥ {start_cost} (1 + n_directions·ladder_steps + search_steps), got max_queries={max_queries!r}",
        )


class _BoundaryQueries:
    """The oracle seen in scaled units around each record, counting every record's queries."""

    def __init__(self, oracle: Oracle, x: np.ndarray, y: np.ndarray, scale: np.ndarray) -> None:
        self.oracle, self.y, self.scale = oracle, y, scale
        self.shape = x.shape[1:]
        self.flat = x.reshape(y.size, scale.size).astype(np.float64)
        self.used = np.zeros(y.size, dtype=np.int64)

    def flipped(self, idx: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Query x₀[idx] + scale⊙z; True where the label is no longer y."""
        if idx.size == 0:  # every record already done (misclassified or censored)
            return np.zeros(0, dtype=bool)
        points = (self.flat[idx] + z * self.scale).reshape((idx.size, *self.shape))
        out = self.oracle.query(points, tags=idx)
        np.add.at(self.used, idx, 1)
        hit: np.ndarray = out.labels != self.y[idx]
        return hit


@dataclass(frozen=True, eq=False)
class _Start:
    """Flipped starting points of the records still searched (``act``), in scaled units."""

    act: np.ndarray  # record indices
    point: np.ndarray  # (k, dim), on the flipped side
    dist: np.ndarray  # (k,) its distance from x₀
    censored: np.ndarray  # records with no flip within the largest radius


def _flipped_start(
    q: _BoundaryQueries,
    act: np.ndarray,
    movable: np.ndarray,
    d_max: float,
    n_directions: int,
    ladder_steps: int,
    search_steps: int,
    gen: np.random.Generator,
) -> _Start:
    """Step 2: along random directions, radii doubling up to d_max (stopping at the first flip),
    then a binary search between the last unflipped and first flipped radius of the best one."""
    k, dim = act.size, movable.size
    radii = d_max * 2.0 ** (np.arange(ladder_steps) - (ladder_steps - 1))
    dirs = _unit(gen.normal(size=(k, n_directions, dim)), movable)
    first = np.full((k, n_directions), ladder_steps)  # rung of the first flip; ladder_steps = none
    for i in range(ladder_steps):
        rec, dn = np.nonzero(first == ladder_steps)
        if rec.size == 0:
            break
        hit = q.flipped(act[rec], radii[i] * dirs[rec, dn])
        first[rec[hit], dn[hit]] = i  # a direction that flipped stops climbing
    best_dir = first.argmin(axis=1)
    best_rung = first[np.arange(k), best_dir]
    found = best_rung < ladder_steps
    searched, u = act[found], dirs[np.arange(k), best_dir][found]
    rung = best_rung[found]
    hi = radii[rung]
    lo = np.where(rung > 0, radii[np.maximum(rung - 1, 0)], 0.0)
    for _ in range(search_steps):
        mid = 0.5 * (lo + hi)
        hit = q.flipped(searched, mid[:, None] * u)
        hi, lo = np.where(hit, mid, hi), np.where(hit, lo, mid)
    return _Start(searched, hi[:, None] * u, hi.copy(), act[~found])


def _boundary_normal(
    q: _BoundaryQueries,
    rec: np.ndarray,
    z: np.ndarray,
    d: np.ndarray,
    movable: np.ndarray,
    grad_queries: int,
    gen: np.random.Generator,
) -> np.ndarray:
    """The boundary's unit normal at z from sign queries at distance δ = d/dim (mean-baselined)."""
    m, dim = z.shape
    delta = np.maximum(d / max(1.0, movable.sum()), 1e-12)
    probes = _unit(gen.normal(size=(m, grad_queries, dim)), movable)
    pts = z[:, None, :] + delta[:, None, None] * probes
    phi = np.where(
        q.flipped(np.repeat(rec, grad_queries), pts.reshape(-1, dim)), 1.0, -1.0
    ).reshape(m, grad_queries)
    mean = phi.mean(axis=1, keepdims=True)
    weights = np.where(np.abs(mean) == 1.0, phi, phi - mean)
    return _unit((weights[:, :, None] * probes).mean(axis=1), movable)


def _geometric_step(
    q: _BoundaryQueries, rec: np.ndarray, z: np.ndarray, grad: np.ndarray, step: np.ndarray
) -> np.ndarray:
    """A step along the normal, halved (up to _MAX_HALVINGS times) until it stays flipped."""
    cand = z.copy()
    pending = np.ones(z.shape[0], dtype=bool)
    for _ in range(_MAX_HALVINGS):
        j = np.flatnonzero(pending)
        if j.size == 0:
            break
        trial = z[j] + step[j, None] * grad[j]
        hit = q.flipped(rec[j], trial)
        cand[j[hit]] = trial[hit]
        pending[j[hit]] = False
        step[j[~hit]] *= 0.5
    return cand


def _hop_skip_jump(
    q: _BoundaryQueries,
    start: _Start,
    movable: np.ndarray,
    max_queries: int,
    grad_queries: int,
    search_steps: int,
    gen: np.random.Generator,
) -> np.ndarray:
    """Step 3: HopSkipJump iterations while a whole one fits in every remaining budget; the
    smallest distance found per searched record."""
    act, point, dist = start.act, start.point, start.dist.copy()
    best = dist.copy()
    iter_cost = grad_queries + _MAX_HALVINGS + search_steps
    t = 0
    while True:
        keep = q.used[act] + iter_cost <= max_queries
        if not keep.any():
            break
        t += 1
        sel = np.flatnonzero(keep)
        rec, z, d = act[sel], point[sel], dist[sel]
        grad = _boundary_normal(q, rec, z, d, movable, grad_queries, gen)
        cand = _geometric_step(q, rec, z, grad, d / np.sqrt(t))
        # Binary search back to the boundary on the segment x₀ → cand (cand is flipped).
        a_lo, a_hi = np.zeros(sel.size), np.ones(sel.size)
        for _ in range(search_steps):
            mid = 0.5 * (a_lo + a_hi)
            hit = q.flipped(rec, mid[:, None] * cand)
            a_hi, a_lo = np.where(hit, mid, a_hi), np.where(hit, a_lo, mid)
        new_point = a_hi[:, None] * cand
        point[sel] = new_point
        dist[sel] = np.linalg.norm(new_point * movable, axis=1)
        best[sel] = np.minimum(best[sel], dist[sel])
    return best


# --- threshold attacks on what a policy exposes ---------------------------------------------------


def threshold_attacks_under(policy: OutputPolicy | str) -> tuple[ThresholdAttack, ...]:
    """The threshold attacks whose signal survives ``policy`` (label-only: the gap attack only).

    Examples
    --------
    >>> threshold_attacks_under("label-only")
    ('gap',)
    """
    allowed = set(computable_signals(policy))
    return tuple(a for a in THRESHOLD_ATTACKS if SPECS[a].signal in allowed)


def exposed_threshold_scores(
    exposed: Exposed, labels: np.ndarray, attacks: Sequence[ThresholdAttack] | None = None
) -> dict[str, np.ndarray]:
    """Threshold-attack scores computed from what a policy exposed (docs/method.md §1, §2).

    Parameters
    ----------
    exposed : ExposedScores or ExposedLabels
        An oracle's answer for n records.
    labels : ndarray of shape (n,)
        True classes.
    attacks : sequence of str, optional
        Default: every attack the policy allows (:func:`threshold_attacks_under`); asking for one
        it does not allow raises an :class:`~miaudit.errors.InputError` naming ``attacks``.

    Returns
    -------
    dict of str to ndarray of shape (n,)
        Scores, higher = member.
    """
    allowed = threshold_attacks_under(exposed.policy)
    wanted = tuple(allowed if attacks is None else attacks)
    unknown = [a for a in wanted if a not in THRESHOLD_ATTACKS]
    if unknown:
        raise InputError(
            "attacks", f"unknown threshold attacks {unknown}; known: {', '.join(THRESHOLD_ATTACKS)}"
        )
    hidden = [a for a in wanted if a not in allowed]
    if hidden:
        raise InputError(
            "attacks",
            f"{', '.join(hidden)} cannot run under {exposed.policy}; allowed: {', '.join(allowed)}",
        )
    sig = exposed_signals(
        exposed, labels, which=tuple(dict.fromkeys(SPECS[a].signal for a in wanted))
    )
    return {a: threshold_score(a, sig) for a in wanted}
