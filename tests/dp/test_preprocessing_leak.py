"""Issue 15, item 1: a DP recipe's preprocessing must not see its training records.

A record R with a category no other record has, and its twin T (same values, another unique
category) that no model trains on. Fitted on each model's training records, R's category is a
live column exactly in the models that trained on R, and an all-zero column elsewhere, like T's:
the two queries R and T give equal outputs exactly when R was not a member. Fitted on the
population, both columns are zero for every model: the distinguisher sees nothing. The
models are DP-SGD at σ = 1 (RDP accountant; a σ rather than an ε target only to skip Opacus's
σ search): the leak does not depend on the noise, since it bypasses the gradient steps.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("opacus")

from miaudit.engine import _cache, parse_config, train
from miaudit.errors import InputError

N, POOL, MODELS = 240, 180, 8


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("rare")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, N).round(),
            "hours": rng.normal(40, 8, N).round(),
            "country": rng.choice(["A", "B", "C"], N),
            "y": rng.integers(0, 2, N),
        }
    )
    frame.loc[0, "country"] = "only-R"
    frame.loc[1, ["age", "hours", "y"]] = frame.loc[0, ["age", "hours", "y"]].to_numpy()
    frame.loc[1, "country"] = "only-T"  # R's twin, trained on by no model
    frame.to_csv(d / "data.csv", index=False)
    pool = np.arange(N) < POOL  # records 180–239: the population
    keep = (rng.random((MODELS, N)) < 0.5) & pool
    keep[:, 1] = False
    keep[:, 0] = np.arange(MODELS) < MODELS // 2  # models 0–3 train on R, 4–7 do not
    np.save(d / "keep.npy", keep)
    np.save(d / "pool.npy", pool)
    return d, keep


def _train(files, out: str, **dp):
    d, _ = files
    cfg = parse_config(
        {
            "seed": 4,
            "data": {"path": str(d / "data.csv"), "label": "y"},
            "model": {
                "kind": "torch-mlp",
                "hidden": [8],
                "epochs": 2,
                "batch_size": 32,
                "dp": {"noise_multiplier": 1.0, "accountant": "rdp", **dp},
            },
            "plan": {
                "models": MODELS,
                "kind": "user",
                "keep": str(d / "keep.npy"),
                "pool": str(d / "pool.npy"),
                "unit_size": MODELS,
            },
            "engine": {"workers": 0, "threads": 1, "progress": False},
        }
    )
    return train(cfg, d / out)


def _two_query_gap(run) -> np.ndarray:
    lg = run.signals.logits
    return np.abs(lg[:, 0] - lg[:, 1]).max(axis=1)  # per model: |f(R) − f(T)|


def test_the_two_query_distinguisher_no_longer_separates_members(files):
    run = _train(files, "fixed")
    gap = _two_query_gap(run)
    member = np.arange(MODELS) < MODELS // 2
    # Fitted on the population, neither unique category is a live column in any model: the
    # distinguisher returns exactly the same value (0) whether or not the model trained on R.
    np.testing.assert_array_equal(gap, 0.0)
    assert set(gap[member]) == set(gap[~member])
    # The manifest says what preprocessing saw: the 60 population records, for every model.
    manifest = json.loads(
        (_cache.unit_dir(run.cache, run.signals.info.units[0]) / _cache.MANIFEST).read_text()
    )
    seen = manifest["info"]["preprocessing"]
    assert len(seen) == MODELS and all(
        s["fit"] == "population" and s["records"] == N - POOL for s in seen
    )
    assert (
        run.signals.info.preprocessing["fit"] == "population"
        and run.signals.info.preprocessing["records"] == N - POOL
    )


def test_control_preprocessing_fitted_on_training_records_separates_them_perfectly(files):
    """What every DP recipe did before issue 15 (now only as fault injection): the gap is
    exactly 0 in precisely the models that did not train on R, and positive in the others."""
    run = _train(files, "leaky", fault="training_preprocessing")
    gap = _two_query_gap(run)
    member = np.arange(MODELS) < MODELS // 2
    assert np.all(gap[member] > 0) and np.all(gap[~member] == 0)
    seen = json.loads(
        (_cache.unit_dir(run.cache, run.signals.info.units[0]) / _cache.MANIFEST).read_text()
    )["info"]["preprocessing"]
    assert [s["records"] for s in seen] == files[1].sum(axis=1).tolist() and all(
        s["fit"] == "training" for s in seen
    )
    # per-model fitting is refused for a DP recipe unless injected as a fault
    with pytest.raises(
        InputError,
        match=r"^model\.preprocessing: a DP recipe cannot fit it on each model's training records",
    ):
        parse_config(
            {
                "data": {"dataset": "adult"},
                "model": {"kind": "torch-mlp", "preprocessing": "training", "dp": {"epsilon": 1.0}},
            }
        )


def test_population_preprocessing_needs_a_population(files):
    d, _ = files
    cfg = parse_config(
        {
            "data": {"path": str(d / "data.csv"), "label": "y"},
            "model": {"kind": "torch-mlp", "dp": {"epsilon": 1.0}},
            "plan": {"models": 2, "pool_fraction": 1.0},
            "engine": {"workers": 0, "progress": False},
        }
    )
    with pytest.raises(
        InputError, match=r"^model\.preprocessing: is fitted on the population.*empty"
    ):
        train(cfg, d / "nopop")
    assert not (d / "nopop" / "signals").exists()
