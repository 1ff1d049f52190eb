"""Training on a CUDA GPU (``engine.device``): reproducible run to run, close to the CPU, the
same audit answers, the settings restored. Every test here needs a GPU and is skipped, with the
reason, where torch sees none (test_device.py covers what the CPU can check)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from miaudit.datasets import digits, fit_affine, purchase_like, subset
from miaudit.engine import train
from miaudit.models import ModelStreams, parse_recipe, train_unit

from .conftest import small_config

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU: torch.cuda.is_available() is False"
)

RECIPES = {
    "mlp-adam": {"kind": "torch-mlp", "hidden": [32], "epochs": 3, "batch_size": 32},
    "mlp-sgd-dropout-bf16": {
        "kind": "torch-mlp",
        "hidden": [32, 16],
        "epochs": 3,
        "batch_size": 40,
        "optimizer": "sgd",
        "dropout": 0.2,
        "label_smoothing": 0.1,
        "precision": "bfloat16",
    },
    "mlp-early-stopping": {
        "kind": "torch-mlp",
        "hidden": [32],
        "epochs": 5,
        "batch_size": 32,
        "early_stopping": {"patience": 1},
    },
    "cnn-augment": {
        "kind": "torch-cnn",
        "channels": [8],
        "hidden": 16,
        "epochs": 2,
        "batch_size": 32,
        "augment": ["hflip", "shift"],
        "dropout": 0.1,
    },
}


def _data(kind: str):
    if kind == "torch-cnn":
        return subset(digits(), np.arange(400))
    return purchase_like(n_records=600, n_features=40, n_classes=5, seed=3)


def _unit(recipe: dict, device: str):
    data = _data(recipe["kind"])
    rng = np.random.default_rng(0)
    sets = [np.sort(rng.choice(data.n_records, data.n_records // 2, replace=False)) for _ in "abc"]
    affines = [fit_affine(data, s) for s in sets]
    streams = [ModelStreams.of(11, k) for k in range(3)]
    return train_unit(parse_recipe(recipe), data, sets, affines, streams, threads=1, device=device)


@pytest.mark.parametrize("name", list(RECIPES))
def test_two_gpu_runs_give_the_same_bits(name) -> None:
    a, b = _unit(RECIPES[name], "cuda"), _unit(RECIPES[name], "cuda")
    assert a.logits.dtype == np.float32 and isinstance(a.logits, np.ndarray)
    np.testing.assert_array_equal(a.logits, b.logits)
    for key, t in a.state.items():
        assert t.device.type == "cpu" and torch.equal(t, b.state[key]), key
    assert a.kept_epoch == b.kept_epoch


def test_gpu_sgd_logits_are_the_cpu_ones_up_to_rounding() -> None:
    # Same initial weights and batches (drawn on the CPU); plain SGD (no Adam normalisation to
    # amplify a rounding difference in a near-zero gradient) at a small learning rate: the
    # logits differ by float32 rounding in the matmuls only (~1e-6 relative here).
    recipe = {**RECIPES["mlp-adam"], "optimizer": "sgd", "lr": 0.01, "epochs": 1}
    gpu, cpu = _unit(recipe, "cuda"), _unit(recipe, "cpu")
    np.testing.assert_allclose(gpu.logits, cpu.logits, rtol=0, atol=1e-4)


def test_dp_sgd_on_the_gpu_is_reproducible_and_spends_the_cpu_budget() -> None:
    pytest.importorskip("opacus")
    recipe = {
        "kind": "torch-mlp",
        "hidden": [16],
        "epochs": 2,
        "batch_size": 32,
        "dp": {"noise_multiplier": 1.0},
    }
    a, b, cpu = _unit(recipe, "cuda"), _unit(recipe, "cuda"), _unit(recipe, "cpu")
    np.testing.assert_array_equal(a.logits, b.logits)
    assert np.isfinite(a.logits).all()
    # Poisson sampling draws on the CPU: the same steps, so the accountant spends the same ε.
    assert a.privacy is not None and cpu.privacy is not None
    assert [p["steps"] for p in a.privacy] == [p["steps"] for p in cpu.privacy]
    assert [p["epsilon"] for p in a.privacy] == [p["epsilon"] for p in cpu.privacy]


def test_deterministic_settings_are_restored_after_training() -> None:
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    _unit(RECIPES["mlp-adam"], "cuda")
    after = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    assert after == before


@pytest.mark.parametrize("workers", [0, 1])
def test_the_engine_trains_on_the_gpu_and_keys_it(tmp_path, workers) -> None:
    gpu = train(small_config(engine__device="cuda", engine__workers=workers), tmp_path)
    assert gpu.signals.info.device == "cuda"
    manifest = json.loads(next(gpu.cache.glob("units/*/manifest.json")).read_text())
    assert manifest["parts"]["device"] == "cuda"
    again = train(small_config(engine__device="cuda", engine__workers=workers), tmp_path)
    assert again.reused == gpu.trained and again.trained == ()
    np.testing.assert_array_equal(again.signals.logits, gpu.signals.logits)
    cpu = train(small_config(), tmp_path)  # same cache: the CPU's units are other units
    assert cpu.reused == () and cpu.trained == gpu.trained


def test_a_gpu_audit_agrees_with_the_cpu_audit(tmp_path) -> None:
    from benchmarks.bench_gpu import ATTACKS, AUC_TOL, SIZES, audit_on

    p = SIZES["small"]
    _, cpu = audit_on(p, "cpu", tmp_path)
    _, gpu = audit_on(p, "cuda", tmp_path)
    for attack in ATTACKS:  # AUC_TOL: why rounding cannot move an AUC further (bench_gpu.py)
        assert abs(gpu[attack] - cpu[attack]) <= AUC_TOL, (attack, gpu[attack], cpu[attack])
