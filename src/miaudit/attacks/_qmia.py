"""QMIA: a reference-free attack that regresses the target's score on known non-members.

Bertran et al., "Scalable membership inference attacks via quantile regression", NeurIPS 2023.
A regressor learns, from the features and label of population records (known non-members of
the target), the distribution of the target's score φ on non-members: its mean μ(x, y) and
scale σ(x, y). A record is scored by its standardised residual (φ − μ)/σ: how far above its own
predicted non-member distribution the target puts it. No reference model is trained.

Cross-fitting (docs/method.md §14): the scale is learnt from residuals that no mean model saw,
the population split into folds, each fold's residuals taken from the mean model fitted on
the others; the audited records are never in any fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from miaudit.errors import InputError

#: Fewer population records than this cannot fit a regressor per fold.
MIN_POPULATION = 50
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


DEFAULT_SETTINGS = QmiaSettings()


@dataclass(frozen=True, eq=False)
class QmiaModel:
    """A fitted QMIA: the mean regressor on the whole population and the scale regressor on
    its cross-fitted residuals; :meth:`score` applies them to records outside the fit."""

    mean: Any  # fitted scikit-learn regressors (untyped)
    scale: Any
    floor: float
    width: int
    categorical_label: bool

    def predict(self, features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted non-member mean and scale of φ for each record."""
        x = design_matrix(features, labels, self.categorical_label)
        if x.shape[1] != self.width + 1:
            raise InputError(
                "features", f"has {x.shape[1] - 1} columns, the population's {self.width}"
            )
        with _threads(x.shape[0]):
            mu = np.asarray(self.mean.predict(x), dtype=np.float64)
            spread = np.asarray(self.scale.predict(x), dtype=np.float64)
        # E|r| = σ·√(2/π) for a Gaussian residual: the fitted mean absolute residual, as σ.
        return mu, np.maximum(spread * np.sqrt(np.pi / 2), self.floor)

    def score(self, phi: np.ndarray, features: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Standardised residuals (φ − μ)/σ: higher = more likely a member."""
        mu, sigma = self.predict(features, labels)
        out: np.ndarray = (np.asarray(phi, dtype=np.float64) - mu) / sigma
        return out


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
    phi: np.ndarray, features: np.ndarray, labels: np.ndarray, *, what: str = "population"
) -> None:
    """One-line errors for a population that cannot fit QMIA's regressors."""
    n = np.shape(phi)[0] if np.ndim(phi) else 0
    if n < MIN_POPULATION:
        raise InputError(what, f"QMIA needs at least {MIN_POPULATION} population records, got {n}")
    f = np.asarray(features)
    if f.ndim != 2 or f.shape[0] != n:
        raise InputError(
            f"{what}.features", f"must be (records, features) = ({n}, d), got {f.shape}"
        )
    if np.shape(labels) != (n,):
        raise InputError(f"{what}.labels", f"must have shape ({n},), got {np.shape(labels)}")


def fit_qmia(
    phi: np.ndarray,
    features: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int | np.random.SeedSequence = 0,
    settings: QmiaSettings = DEFAULT_SETTINGS,
) -> QmiaModel:
    """Fit QMIA on population records (known non-members): φ, (n, d) features and labels.

    The mean regressor is fitted on every population record; the scale regressor on the
    absolute residuals |φ − μ₋f(x)|, each taken from the mean regressor fitted without the
    record's fold f, so that no residual is shrunk by its own fit (docs/method.md §14).
    Deterministic for a seed.
    """
    check_population(phi, features, labels)
    phi = np.asarray(phi, dtype=np.float64)
    labels = np.asarray(labels)
    width = int(np.asarray(features).shape[1])
    categorical = bool(labels.size) and int(labels.max()) < MAX_CATEGORICAL
    x = design_matrix(features, labels, categorical)
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    rng = np.random.default_rng(ss)
    fold = _folds(phi.size, settings.n_folds, rng)
    model_seed = int(rng.integers(2**31 - 1))
    residual = np.empty_like(phi)
    with _threads(phi.size, fit=True):
        for f in range(settings.n_folds):
            held = fold == f
            m = _regressor(settings, width, categorical, model_seed)
            m.fit(x[~held], phi[~held])
            residual[held] = phi[held] - m.predict(x[held])
        mean = _regressor(settings, width, categorical, model_seed)
        mean.fit(x, phi)
        scale = _regressor(settings, width, categorical, model_seed)
        scale.fit(x, np.abs(residual))
    floor = 0.05 * float(np.mean(np.abs(residual))) + 1e-12
    return QmiaModel(mean, scale, floor, width, categorical)


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
) -> np.ndarray:
    """QMIA scores of the audited records (never in the fit), higher = member.

    ``phi``: the target's φ = log p_y − log(1 − p_y) on the audited records; ``population_*``
    the same for known non-members, whose features have the audited records' width.
    """
    model = fit_qmia(
        population_phi, population_features, population_labels, seed=seed, settings=settings
    )
    return model.score(phi, features, labels)
