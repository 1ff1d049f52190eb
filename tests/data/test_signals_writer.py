"""miaudit.data.SignalsWriter: a training script's streaming, atomic writer of signals."""

from __future__ import annotations

import stat

import numpy as np
import pytest

from miaudit.data import SignalsWriter, load_signals
from miaudit.errors import InputError


def _inputs(n: int = 30, models: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    pop = np.zeros(n, dtype=bool)
    pop[:5] = True
    keep = (rng.random((models, n)) < 0.5) & ~pop
    logits = rng.normal(size=(models, n, 3)).astype(np.float32)
    ids = np.array([f"r{i}" for i in range(n)], dtype=object)  # strings, as pandas gives them
    return y, pop, keep, logits, ids


@pytest.mark.parametrize("name", ["s.npz", "s.parquet", "s"])
def test_the_store_reads_back_as_written(tmp_path, name) -> None:
    y, pop, keep, logits, ids = _inputs()
    path = tmp_path / name
    with SignalsWriter(
        path, label=y, record_id=ids, population=pop, target=1, info={"dataset": "mine"}
    ) as w:
        for k in range(4):
            if k % 2:
                assert w.add_model(logits[k], members=ids[keep[k]]) == k
            else:
                assert w.add_model(logits[k], keep=keep[k]) == k
    store = load_signals(path)
    assert np.array_equal(np.asarray(store.logits), logits)
    assert np.array_equal(store.keep, keep) and np.array_equal(store.population, pop)
    assert store.label.tolist() == y.tolist() and store.record_id.tolist() == ids.tolist()
    assert store.target == 1 and store.info.dataset == "mine"
    assert stat.S_IMODE(path.stat().st_mode) in (0o600, 0o700)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary left


def test_augmented_queries_are_kept(tmp_path) -> None:
    y, _, keep, _, _ = _inputs()
    lg = np.random.default_rng(1).normal(size=(4, 30, 2, 3)).astype(np.float32)
    with SignalsWriter(tmp_path / "q.npz", label=y) as w:
        for k in range(4):
            w.add_model(lg[k], keep=keep[k])
    assert load_signals(tmp_path / "q.npz").n_queries == 2


@pytest.mark.parametrize(
    ("defect", "field"),
    [
        ("nan", "logits (model 1)"),
        ("probabilities", "logits (model 1)"),
        ("beyond-float32", "logits (model 1)"),
        ("shape", "logits (model 1)"),
        ("keep-shape", "keep (model 1)"),
        ("keep-values", "keep (model 1)"),
        ("unknown-member", "members (model 1)"),
        ("population-member", "keep (model 1)"),
        ("label-out-of-range", "label"),
    ],
)
def test_bad_input_names_it_and_leaves_nothing(tmp_path, defect, field) -> None:
    y, pop, keep, logits, ids = _inputs()
    bad_logits, args = logits[1].copy(), {"keep": keep[1]}
    if defect == "nan":
        bad_logits[3, 0] = np.nan
    elif defect == "probabilities":  # predict_proba's output, not its logarithm
        e = np.exp(bad_logits)
        bad_logits = e / e.sum(axis=1, keepdims=True)
    elif defect == "beyond-float32":  # finite in float64, inf once kept as float32
        bad_logits = bad_logits.astype(np.float64)
        bad_logits[3, 0] = 1e39
    elif defect == "shape":
        bad_logits = bad_logits[:, :2]
    elif defect == "keep-shape":
        args = {"keep": keep[1][:-1]}
    elif defect == "keep-values":
        args = {"keep": np.full(30, 2)}
    elif defect == "unknown-member":
        args = {"members": np.array(["r1", "nobody"])}
    elif defect == "population-member":
        args = {"keep": pop}
    elif defect == "label-out-of-range":
        bad_logits = bad_logits[:, :2]
        logits = logits[..., :2]

    def write() -> None:
        with SignalsWriter(tmp_path / "s.npz", label=y, record_id=ids, population=pop) as w:
            w.add_model(logits[0], keep=keep[0])
            w.add_model(bad_logits, **args)

    with pytest.raises(InputError) as exc:
        write()
    assert exc.value.field == field
    assert list(tmp_path.iterdir()) == []


def test_no_model_is_refused(tmp_path) -> None:
    def write() -> None:
        with SignalsWriter(tmp_path / "s.npz", label=np.zeros(3, int)):
            pass

    with pytest.raises(InputError, match=r"^signals: no model was added"):
        write()
    assert list(tmp_path.iterdir()) == []


def test_an_error_in_the_training_script_leaves_nothing(tmp_path) -> None:
    y, _, keep, logits, _ = _inputs()

    def train() -> None:
        with SignalsWriter(tmp_path / "s", label=y) as w:
            w.add_model(logits[0], keep=keep[0])
            raise RuntimeError("the cluster went down")

    with pytest.raises(RuntimeError):
        train()
    assert list(tmp_path.iterdir()) == []


def test_a_bad_suffix_is_refused() -> None:
    with pytest.raises(InputError, match=r"^path: "):
        SignalsWriter("s.csv", label=np.zeros(3, int))
