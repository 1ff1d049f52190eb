"""A user's own XGBoost training function (``benchmarks/bench_own_model.py``)."""

from __future__ import annotations

from typing import Any

import numpy as np


def fit(features: np.ndarray, labels: np.ndarray, seed: int, **params: Any) -> Any:
    from xgboost import XGBClassifier

    return XGBClassifier(random_state=seed, n_jobs=1, **params).fit(features, labels)
