"""The out-of-the-box demo: audit a deliberately overfit model on bundled UCI Adult.

A random forest with fully grown trees is trained on a random half of a pool of Adult records
(the members); its outputs on the whole pool are saved like any team would save them, and
audited from that file through the ordinary ``attack`` path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from miaudit.audit._api import attack
from miaudit.audit._results import AuditResult
from miaudit.audit._writer import prepare_out
from miaudit.data import (
    ADULT_CATEGORICAL,
    ADULT_LABEL,
    ADULT_NUMERIC,
    ModelOutputs,
    load_adult,
)

DEMO_POOL = 20_000
DEMO_SLICES = ("sex", "race")


def demo_outputs(seed: int = 20261128, pool: int = DEMO_POOL) -> ModelOutputs:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = load_adult()
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(frame), size=pool, replace=False)
    data = frame.iloc[rows].reset_index(drop=True)
    member = np.zeros(pool, dtype=np.int8)
    member[rng.permutation(pool)[: pool // 2]] = 1
    # Preprocessing is fitted on the members only: nothing about non-members leaks into the model.
    prep = ColumnTransformer(
        [
            ("num", StandardScaler(), ADULT_NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ADULT_CATEGORICAL),
        ]
    )
    model = make_pipeline(
        prep,
        RandomForestClassifier(n_estimators=100, min_samples_leaf=1, random_state=seed, n_jobs=1),
    )
    train = data[member == 1]
    model.fit(train[ADULT_NUMERIC + ADULT_CATEGORICAL], train[ADULT_LABEL].to_numpy())
    probs = model.predict_proba(data[ADULT_NUMERIC + ADULT_CATEGORICAL])
    return ModelOutputs.from_arrays(
        probs=probs,
        label=data[ADULT_LABEL].to_numpy(),
        member=member,
        record_id=data["record_id"].to_numpy(),
        columns={c: data[c].to_numpy().astype(str) for c in DEMO_SLICES},
    )


def run_demo(
    out: Path, *, seed: int = 20261128, n_resamples: int = 200, pool: int = DEMO_POOL
) -> AuditResult:
    prepare_out(out, overwrite=True)  # makes it; a folder the attack would refuse is refused first
    outputs = demo_outputs(seed, pool)
    saved = out / "outputs.parquet"  # restricted (0600): it holds membership
    outputs.save(saved)
    return attack(
        saved, slices=DEMO_SLICES, n_resamples=n_resamples, seed=seed, out=out, overwrite=True
    )
