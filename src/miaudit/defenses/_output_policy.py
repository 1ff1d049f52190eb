"""Output policies: what a prediction API lets out of a model's probability vectors.

docs/method.md §7 (output restriction: top-k, rounding, label-only, added noise). Each policy is a
frozen record (the description) and a pure function on an (n, C) array of probabilities (the
computation), kept apart as in dp-accounting. Numpy only: the prediction service applies the same
functions per caller role, and attacks import this module.

What comes out is one of two types, so that a label-only policy cannot leak a probability by
construction:

- :class:`ExposedScores`: an (n, C) float array (the policy's scores) and the (n,) predicted labels;
- :class:`ExposedLabels`: the (n,) predicted labels only; it has no float field at all.

``labels`` is always the model's own predicted class (argmax of the *unrestricted*
probabilities, first index on exact ties), as an API returns a label beside its scores.

Conventions:

- ``top-k``: the k largest probabilities are returned **as they are** (not renormalised, as real
  APIs return them); the others are 0. Ties at the k-th place keep the lower class index.
  k ≥ C is the full vector.
- ``round:d``: ``numpy.round`` to d decimals (round half to even); not renormalised, so a row
  need not sum to 1 and small probabilities become 0.
- ``label-only``: only the predicted label.
- ``noise:σ``: p + N(0, σ²) independently per entry, then the Euclidean projection onto the
  probability simplex (Duchi et al., ICML 2008), so every row is a probability vector again
  (entries ≥ 0, sum 1). The returned label stays the model's (as MemGuard keeps it); the noisy
  scores' argmax can differ from it.

Policy strings (case-insensitive, surrounding blanks ignored)::

    full | top-K (K ≥ 1) | round:D (0 ≤ D ≤ 15) | label-only | noise:SIGMA (0 < SIGMA < ∞)

``str(policy)`` gives the canonical string, and ``parse_policy(str(policy)) == policy``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np

from miaudit.errors import InputError

PolicyKind = Literal["full", "top_k", "round", "label_only", "noise"]
MAX_DECIMALS = 15  # beyond float64's resolution for values in [0, 1]


@dataclass(frozen=True)
class Full:
    """Return the whole probability vector."""

    kind: Literal["full"] = "full"

    def __str__(self) -> str:
        return "full"


@dataclass(frozen=True)
class TopK:
    """Return the k largest probabilities as they are; the others are 0."""

    k: int
    kind: Literal["top_k"] = "top_k"

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise InputError("output.k", f"top-k needs an integer k ≥ 1, got k={self.k!r}")

    def __str__(self) -> str:
        return f"top-{self.k}"


@dataclass(frozen=True)
class Round:
    """Return every probability rounded to ``decimals`` decimals."""

    decimals: int
    kind: Literal["round"] = "round"

    def __post_init__(self) -> None:
        d = self.decimals
        if (
            isinstance(d, bool)
            or not isinstance(d, (int, np.integer))
            or not 0 <= d <= MAX_DECIMALS
        ):
            raise InputError(
                "output.decimals",
                f"round needs an integer number of decimals in [0, {MAX_DECIMALS}], got {d!r}",
            )

    def __str__(self) -> str:
        return f"round:{self.decimals}"


@dataclass(frozen=True)
class LabelOnly:
    """Return the predicted label only."""

    kind: Literal["label_only"] = "label_only"

    def __str__(self) -> str:
        return "label-only"


@dataclass(frozen=True)
class Noise:
    """Add N(0, σ²) to every probability, then project each row back onto the simplex."""

    sigma: float
    kind: Literal["noise"] = "noise"

    def __post_init__(self) -> None:
        s = self.sigma
        if (
            isinstance(s, bool)
            or not isinstance(s, (int, float, np.floating, np.integer))
            or not (0 < float(s) < math.inf)
        ):
            raise InputError("output.sigma", f"noise needs a finite σ > 0, got sigma={s!r}")
        object.__setattr__(self, "sigma", float(s))

    def __str__(self) -> str:
        return f"noise:{self.sigma!r}"


OutputPolicy: TypeAlias = Full | TopK | Round | LabelOnly | Noise


@dataclass(frozen=True, eq=False)
class ExposedScores:
    """What a score-returning policy lets out: (n, C) float64 scores and (n,) int64 labels."""

    values: np.ndarray
    labels: np.ndarray
    policy: OutputPolicy

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True, eq=False)
class ExposedLabels:
    """What ``label-only`` lets out: the (n,) int64 predicted labels and nothing else."""

    labels: np.ndarray
    policy: LabelOnly

    def __len__(self) -> int:
        return int(self.labels.shape[0])


Exposed: TypeAlias = ExposedScores | ExposedLabels

_SPEC = re.compile(
    r"^(?:(?P<full>full)|top-(?P<k>[^:]*)|round:(?P<d>.*)|(?P<lo>label-only)|noise:(?P<s>.*))$"
)
GRAMMAR = "full | top-K (K ≥ 1) | round:D (0 ≤ D ≤ 15) | label-only | noise:SIGMA (σ > 0)"


def parse_policy(spec: str | OutputPolicy, *, field: str = "output") -> OutputPolicy:
    """Parse a policy string such as ``"top-3"``, ``"round:2"``, ``"label-only"``, ``"noise:0.05"``.

    Parameters
    ----------
    spec : str or OutputPolicy
        The policy string (case-insensitive); a policy object is returned unchanged.
    field : str
        The input's name in error messages (e.g. ``"defense.output"``).

    Returns
    -------
    OutputPolicy

    Raises
    ------
    InputError
        Naming ``field`` and the expected grammar.

    Examples
    --------
    >>> parse_policy("Top-3")
    TopK(k=3, kind='top_k')
    >>> str(parse_policy(" noise:0.05 "))
    'noise:0.05'
    """
    if isinstance(spec, (Full, TopK, Round, LabelOnly, Noise)):
        return spec
    if not isinstance(spec, str):
        raise InputError(field, f"must be a policy string ({GRAMMAR}), got {type(spec).__name__}")
    text = spec.strip().lower()
    match = _SPEC.match(text)
    if match is None:
        raise InputError(field, f"unknown output policy {spec!r}; expected {GRAMMAR}")
    try:
        if match["full"]:
            return Full()
        if match["lo"]:
            return LabelOnly()
        if match["k"] is not None:
            if not match["k"].isdigit():
                raise InputError(field, f"top-K needs an integer K ≥ 1, got {spec!r}")
            return TopK(int(match["k"]))
        if match["d"] is not None:
            if not match["d"].isdigit():
                raise InputError(
                    field, f"round:D needs an integer D in [0, {MAX_DECIMALS}], got {spec!r}"
                )
            return Round(int(match["d"]))
        try:
            sigma = float(match["s"])
        except ValueError:
            raise InputError(field, f"noise:SIGMA needs a number σ > 0, got {spec!r}") from None
        return Noise(sigma)
    except InputError as err:
        if err.field == field:
            raise
        raise InputError(field, f"{err.problem} (in {spec!r})") from None


# --- the pure functions -------------------------------------------------------------------------


def predicted_labels(probs: np.ndarray) -> np.ndarray:
    """(n,) int64 argmax of each row (first index on exact ties)."""
    labels: np.ndarray = np.asarray(probs).argmax(axis=-1).astype(np.int64)
    return labels


def full(probs: np.ndarray) -> np.ndarray:
    """The probabilities unchanged, as float64."""
    return np.array(probs, dtype=np.float64, copy=True)


def top_k(probs: np.ndarray, k: int) -> np.ndarray:
    """Keep each row's k largest probabilities as they are (not renormalised); zero the rest.

    Examples
    --------
    >>> top_k(np.array([[0.1, 0.6, 0.3]]), 2)
    array([[0. , 0.6, 0.3]])
    """
    p = np.asarray(probs, dtype=np.float64)
    c = p.shape[-1]
    if k >= c:
        return p.copy()
    # O(C) per row: everything above the k-th largest value, then as many entries equal to it
    # as are still needed, lowest class index first (the tie rule).
    kth = -np.partition(-p, k - 1, axis=-1)[..., k - 1 : k]
    above = p > kth
    tied = p == kth
    need = k - above.sum(axis=-1, keepdims=True)
    keep = above | tied
    crowded = np.flatnonzero((tied.sum(axis=-1, keepdims=True) > need).reshape(-1))
    if crowded.size:  # rows with more values tied at the k-th place than places left
        flat_keep, flat_above, flat_tied = (
            keep.reshape(-1, c),
            above.reshape(-1, c),
            tied.reshape(-1, c),
        )
        t = flat_tied[crowded]
        flat_keep[crowded] = flat_above[crowded] | (
            t & (np.cumsum(t, axis=-1) <= need.reshape(-1, 1)[crowded])
        )
    out: np.ndarray = np.where(keep, p, 0.0)
    return out


def round_probs(probs: np.ndarray, decimals: int) -> np.ndarray:
    """Round every probability to ``decimals`` decimals (half to even); not renormalised."""
    return np.round(np.asarray(probs, dtype=np.float64), decimals) + 0.0  # + 0.0: no −0.0


def label_only(probs: np.ndarray) -> np.ndarray:
    """Only the (n,) int64 predicted labels: no probability survives."""
    return predicted_labels(probs)


def project_to_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of each row onto {p ≥ 0, Σp = 1} (Duchi et al., ICML 2008)."""
    v = np.asarray(v, dtype=np.float64)
    u = -np.sort(-v, axis=-1)
    css = np.cumsum(u, axis=-1) - 1.0
    idx = np.arange(1, v.shape[-1] + 1)
    rho = np.count_nonzero(u - css / idx > 0, axis=-1)  # ≥ 1 always: u₁ − (u₁ − 1) = 1 > 0
    theta = np.take_along_axis(css, (rho - 1)[..., None], axis=-1) / rho[..., None]
    out: np.ndarray = np.maximum(v - theta, 0.0)
    return out


def noise(probs: np.ndarray, sigma: float, rng: np.random.Generator | int) -> np.ndarray:
    """p + N(0, σ²) per entry, projected back onto the probability simplex."""
    gen = np.random.default_rng(rng)
    p = np.asarray(probs, dtype=np.float64)
    return project_to_simplex(p + gen.normal(scale=sigma, size=p.shape))


def apply_policy(
    policy: OutputPolicy | str, probs: np.ndarray, *, rng: np.random.Generator | int | None = None
) -> Exposed:
    """Apply an output policy to (n, C) probabilities.

    Parameters
    ----------
    policy : OutputPolicy or str
        The policy, or its string (see :func:`parse_policy`).
    probs : ndarray of shape (n, C)
        The model's probabilities.
    rng : Generator or int, optional
        Needed by ``noise`` only (fresh noise per call: pass a Generator that lives as long as
        the service or oracle).

    Returns
    -------
    ExposedScores or ExposedLabels
        :class:`ExposedLabels` exactly when the policy is ``label-only``.

    Examples
    --------
    >>> out = apply_policy("label-only", np.array([[0.2, 0.8]]))
    >>> type(out).__name__, out.labels
    ('ExposedLabels', array([1]))
    """
    pol = parse_policy(policy, field="policy")
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape[1] < 1:
        raise InputError("probs", f"must be an (n, C) array of probabilities, got shape {p.shape}")
    labels = predicted_labels(p)
    match pol:
        case LabelOnly():
            return ExposedLabels(labels=labels, policy=pol)
        case Full():
            values = full(p)
        case TopK(k=k):
            values = top_k(p, int(k))
        case Round(decimals=d):
            values = round_probs(p, int(d))
        case Noise(sigma=s):
            if rng is None:
                raise InputError("rng", "the noise policy needs a seed or numpy Generator")
            values = noise(p, s, rng)
    return ExposedScores(values=values, labels=labels, policy=pol)


def concat_exposed(parts: list[Exposed]) -> Exposed:
    """Stack exposed outputs of one policy row-wise (answers to batched queries)."""
    if not parts:
        raise InputError("parts", "nothing to concatenate")
    first = parts[0]
    labels = np.concatenate([p.labels for p in parts])
    if isinstance(first, ExposedLabels):
        return ExposedLabels(labels=labels, policy=first.policy)
    return ExposedScores(
        values=np.concatenate([p.values for p in parts if isinstance(p, ExposedScores)]),
        labels=labels,
        policy=first.policy,
    )
