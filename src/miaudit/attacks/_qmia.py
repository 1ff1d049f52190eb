"""QMIA: a reference-free attack that regresses the target's score on known non-members.

Bertran et al., "Scalable membership inference attacks via quantile regression", NeurIPS 2023.
A regressor learns, from the features and label of population records (known non-members of
the target), the distribution of the target's score φ on non-members: its mean μ(x, y) and
scale σ(x, y). A record is scored by its standardised residual (φ − μ)/σ: how far above its own
predicted non-member distribution the target puts it. No reference model is trained.

Cross-fitting (docs/method.md §14): the scale is learnt from residuals that no mean model saw,
the population split into folds, each fold's residuals taken from the mean model fitted on
the others; the audited records are never in any fit.

Images (``image_shape`` given) take a small CNN as the regressor (:mod:`._qmia_net`) instead
of gradient boosting. Records may come with several query views (φ (n, Q), features
(n, Q, d): the image, its mirror, shifts): the regressors learn from every view, folds keep a
record's views together, and a record's score is the mean of its views' standardised residuals
(score-level averaging, as RMIA over queries).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from miaudit.attacks._qmia_net import ImageRegressor, ImageRegressorSettings
from miaudit.errors import InputError

#: Fewer population records than this cannot fit a regressor per fold.
MIN_POPULATION = 50
#: A population φ further than this many spreads (interquartile ranges; the mean absolute
#: deviation where the IQR is 0) from the median is refused: 1,000 IQRs is 1,350 σ of a
#: Gaussian, beyond any model's scores on records alike, while one such value moves boosting's
#: every prediction (its first step is the mean) and sets the scale's floor, so that a single
#: crafted record silently made QMIA report no leak (red team: logits × 10⁶ on 1 of 400).
OUTLIER_SPREADS = 1000.0
#: Labels at most this many classes are a categorical column (HistGradientBoosting's bins).
MAX_CATEGORICAL = 250
#: Fits, and predictions below this many rows, run on one OpenMP thread: on the shared 2-core
#: machine OpenMP's default threads made the contract test's seven 300-record fits 20× slower
#: (21.9 s against 1.1 s) and seven 100,000-record fits 19× slower (494 s against 26 s), the
#: oversubscription pitfall the shadow attack avoids likewise. Large predictions keep the
#: library's threads (no loss measured there: 41 s against 46 s for 1,000,000 rows, load 16).
ONE_THREAD_BELOW = 100_000


def _threads(rows: int, *, fit: bool = False) -> Any:
    """One OpenMP thread for fits and small predictions, the library's default above."""
    from threadpoolctl import threadpool_limits

    one = fit or rows < ONE_THREAD_BELOW
    return threadpool_limits(limits=1 if one else None, user_api="openmp")


@dataclass(frozen=True)
class QmiaSettings:
    """The regressor's settings, fixed before any comparison (bench_qmia); not tuned per dataset.

    Gradient boosting (scikit-learn's HistGradientBoostingRegressor) without early stopping, so
    that a fit is deterministic. ``n_folds``: the cross-fitting folds of the scale's residuals.
    """

    n_folds: int = 5
    max_iter: int = 100
    learning_rate: float = 0.1
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 20
    l2_regularization: float = 1.0
    #: The regressor for images (``image_shape`` given); the folds are ``n_folds``.
    network: ImageRegressorSettings = field(default_factory=ImageRegressorSettings)


DEFAULT_SETTINGS = QmiaSettings()


@dataclass(frozen=True, eq=False)
class QmiaModel:
    """A fitted QMIA: the mean regressor on the whole population and the scale regressor on
    its cross-fitted residuals; :meth:`score` applies them to records outside the fit."""

    mean: Any  # fitted scikit-learn regressors, or ImageRegressor (untyped)
    scale: Any
    floor: float
    width: int
    categorical_label: bool
    image_shape: tuple[int, int, int] | None = None

    def predict(self, features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted non-member mean and scale of φ for each record (and view: features
        (n, Q, d) give (n, Q))."""
        f = np.asarray(features)
        if f.shape[-1] != self.width:
            raise InputError(
                "features", f"has {f.shape[-1]} columns, the population's {self.width}"
            )
        image, cat = self.image_shape is not None, self.categorical_label
        mu = _predict(self.mean, f, labels, image=image, categorical=cat)
        spread = _predict(self.scale, f, labels, image=image, categorical=cat)
        # E|r| = σ·√(2/π) for a Gaussian residual: the fitted mean absolute residual, as σ.
        return mu, np.maximum(spread * np.sqrt(np.pi / 2), self.floor)

    def score(self, phi: np.ndarray, features: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Standardised residuals (φ − μ)/σ, averaged over a record's views: higher = more
        likely a member."""
        check_population(phi, features, labels, what="audited", minimum=1)
        dtype = np.float64 if self.image_shape is None else np.float32
        mu, sigma = self.predict(_finite(features, dtype, "features"), labels)
        with np.errstate(over="ignore", invalid="ignore"):
            z = (np.asarray(phi, dtype=np.float64).reshape(mu.shape) - mu) / sigma
        out: np.ndarray = z.mean(axis=1) if z.ndim == 2 else z
        if not np.isfinite(out).all():  # never a NaN or ±inf score passed on as a number
            raise InputError(
                "population",
                "QMIA's fit gives non-finite scores: the population's φ or features are on another scale than the audited records' (far beyond float range once standardised)",
            )
        return out


def _predict(
    regressor: Any, features: np.ndarray, labels: np.ndarray, *, image: bool, categorical: bool
) -> np.ndarray:
    if image:
        return np.asarray(regressor.predict(features, labels), dtype=np.float64)
    x = _rows(features, labels, categorical)
    with _threads(x.shape[0]):
        return np.asarray(regressor.predict(x), dtype=np.float64).reshape(features.shape[:-1])


def _rows(features: np.ndarray, labels: np.ndarray, categorical_label: bool) -> np.ndarray:
    """Boosting's rows: one per record, or one per (record, view), the label repeated."""
    f = np.asarray(features)
    if f.ndim == 3:
        labels = np.repeat(np.asarray(labels), f.shape[1])
    return design_matrix(f.reshape(-1, f.shape[-1]), labels, categorical_label)


def design_matrix(features: np.ndarray, labels: np.ndarray, categorical_label: bool) -> np.ndarray:
    """The regressors' inputs: the features, then the label as one more column."""
    x = np.asarray(features, dtype=np.float64).reshape(len(labels), -1)
    return np.column_stack([x, np.asarray(labels, dtype=np.float64)])


def _regressor(settings: QmiaSettings, width: int, categorical_label: bool, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    cats = np.zeros(width + 1, dtype=bool)
    cats[-1] = categorical_label
    return HistGradientBoostingRegressor(
        max_iter=settings.max_iter,
        learning_rate=settings.learning_rate,
        max_leaf_nodes=settings.max_leaf_nodes,
        min_samples_leaf=settings.min_samples_leaf,
        l2_regularization=settings.l2_regularization,
        categorical_features=cats if categorical_label else None,
        early_stopping=False,
        random_state=seed,
    )


def _folds(n: int, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold of each population record: a balanced random assignment."""
    return rng.permutation(np.arange(n) % n_folds)


def check_population(
    phi: np.ndarray,
    features: np.ndarray,
    labels: np.ndarray,
    *,
    what: str = "population",
    minimum: int = MIN_POPULATION,
) -> None:
    """One-line errors for a population that cannot fit QMIA's regressors (``minimum``
    records), or for audited records (``what``, ``minimum=1``) that cannot be scored."""
    n = np.shape(phi)[0] if np.ndim(phi) else 0
    if n < minimum:
        raise InputError(what, f"QMIA needs at least {minimum} {what} records, got {n}")
    if not np.isfinite(np.asarray(phi, dtype=np.float64)).all():
        raise InputError(f"{what}.phi", "contains NaN or inf")
    f = np.asarray(features)
    views = np.shape(phi)[1:]
    if views and views[0] < 1:
        raise InputError(f"{what}.phi", "has no query views")
    if f.ndim != 2 + len(views) or f.shape[: 1 + len(views)] != (n, *views) or np.ndim(phi) > 2:
        want = f"({n}, d)" if not views else f"({n}, {views[0]}, d) for {views[0]} views"
        raise InputError(f"{what}.features", f"must be (records, features) = {want}, got {f.shape}")
    if np.shape(labels) != (n,):
        raise InputError(f"{what}.labels", f"must have shape ({n},), got {np.shape(labels)}")
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iub" or (lab.size and lab.min() < 0):
        raise InputError(f"{what}.labels", "must be non-negative integer class indices")
    if what == "population":
        _check_outliers(np.asarray(phi, dtype=np.float64), what)


def _check_outliers(phi: np.ndarray, what: str) -> None:
    """Refuse a φ more than :data:`OUTLIER_SPREADS` spreads from the median (one line, naming
    the record): the regressors would fit it instead of the population."""
    flat = phi.reshape(-1)
    centre = float(np.median(flat))
    q1, q3 = np.percentile(flat, [25, 75])
    spread = float(q3 - q1) or float(np.mean(np.abs(flat - centre)))
    if spread <= 0:
        return  # every φ equal: nothing stands out
    distance = np.abs(flat - centre) / spread
    worst = int(np.argmax(distance))
    if distance[worst] > OUTLIER_SPREADS:
        record = worst // (flat.size // phi.shape[0])
        raise InputError(
            f"{what}.phi",
            f"record {record}'s φ = {flat[worst]:.4g} lies {distance[worst]:.3g} interquartile ranges from the median ({centre:.4g}): "
            "not the audited model's score on a record like the others (QMIA's regressors would fit it instead of the rest)",
        )


def _finite(values: np.ndarray, dtype: type, what: str) -> np.ndarray:
    """``values`` as ``dtype``, refused when a value is not finite there (e.g. beyond float32)."""
    with np.errstate(over="ignore"):
        out: np.ndarray = np.asarray(values, dtype=dtype)
    if not np.isfinite(out).all():
        raise InputError(what, f"has values that are not finite as {np.dtype(dtype).name}")
    return out


def _fit_regressor(
    x: np.ndarray,
    labels: np.ndarray,
    y: np.ndarray,
    settings: QmiaSettings,
    image_shape: tuple[int, int, int] | None,
    categorical: bool,
    seed: int,
    n_classes: int,
) -> Any:
    if image_shape is not None:
        net = ImageRegressor(image_shape, settings.network, seed, n_classes=n_classes)
        return net.fit(x, labels, y)
    m = _regressor(settings, x.shape[-1], categorical, seed)
    return m.fit(_rows(x, labels, categorical), np.asarray(y).reshape(-1))


# Long: the cross-fitting loop and the two final fits share the folds, the seed and the design;
# split, each helper would take all six.
def fit_qmia(
    phi: np.ndarray,
    features: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int | np.random.SeedSequence = 0,
    settings: QmiaSettings = DEFAULT_SETTINGS,
    image_shape: tuple[int, int, int] | None = None,
) -> QmiaModel:
    """Fit QMIA on population records (known non-members): φ, (n, d) features and labels —
    or, for records with Q query views, φ (n, Q) and features (n, Q, d).

    The mean regressor is fitted on every population record; the scale regressor on the
    absolute residuals |φ − μ₋f(x)|, each taken from the mean regressor fitted without the
    record's fold f (a record's views share its fold), so that no residual is shrunk by its own
    fit (docs/method.md §14). ``image_shape`` (C, H, W): the features are flat images, and the
    regressors a small CNN. Deterministic for a seed.
    """
    check_population(phi, features, labels)
    phi = np.asarray(phi, dtype=np.float64)
    labels = np.asarray(labels)
    x = _finite(features, np.float64 if image_shape is None else np.float32, "population.features")
    width = int(x.shape[-1])
    n_classes = int(labels.max()) + 1
    if image_shape is not None and int(np.prod(image_shape)) != width:
        raise InputError(
            "image_shape", f"{tuple(image_shape)} does not hold the features' {width} values"
        )
    categorical = bool(labels.size) and int(labels.max()) < MAX_CATEGORICAL
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    rng = np.random.default_rng(ss)
    fold = _folds(phi.shape[0], settings.n_folds, rng)
    model_seed = int(rng.integers(2**31 - 1))
    residual = np.empty_like(phi)

    def fit(rows: np.ndarray | slice, y: np.ndarray) -> Any:
        return _fit_regressor(
            x[rows], labels[rows], y, settings, image_shape, categorical, model_seed, n_classes
        )

    image = image_shape is not None
    with _threads(phi.shape[0], fit=True):
        for f in range(settings.n_folds):
            held = fold == f
            m = fit(~held, phi[~held])
            residual[held] = phi[held] - _predict(
                m, x[held], labels[held], image=image, categorical=categorical
            )
        mean = fit(slice(None), phi)
        scale = fit(slice(None), np.abs(residual))
    floor = 0.05 * float(np.mean(np.abs(residual))) + 1e-12
    shape = (
        None
        if image_shape is None
        else (int(image_shape[0]), int(image_shape[1]), int(image_shape[2]))
    )
    return QmiaModel(mean, scale, floor, width, categorical, shape)


def qmia_scores(
    phi: np.ndarray,
    features: np.ndarray,
    labels: np.ndarray,
    population_phi: np.ndarray,
    population_features: np.ndarray,
    population_labels: np.ndarray,
    *,
    seed: int | np.random.SeedSequence = 0,
    settings: QmiaSettings = DEFAULT_SETTINGS,
    image_shape: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """QMIA scores of the audited records (never in the fit), higher = member.

    ``phi``: the target's φ = log p_y − log(1 − p_y) on the audited records; ``population_*``
    the same for known non-members, whose features have the audited records' width. With query
    views, φ (n, Q) and features (n, Q, d) on both sides; ``image_shape``: see :func:`fit_qmia`.
    """
    check_population(phi, features, labels, what="audited", minimum=1)  # before any fit
    if np.shape(phi)[1:] != np.shape(population_phi)[1:]:
        raise InputError(
            "phi", f"has views {np.shape(phi)[1:]}, the population's {np.shape(population_phi)[1:]}"
        )
    _finite(features, np.float64 if image_shape is None else np.float32, "features")  # pre-fit
    model = fit_qmia(
        population_phi,
        population_features,
        population_labels,
        seed=seed,
        settings=settings,
        image_shape=image_shape,
    )
    return model.score(phi, features, labels)
