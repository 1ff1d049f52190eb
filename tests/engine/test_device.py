"""``engine.device``: validated (a GPU this machine lacks is refused before training), CPU
bits unchanged by naming the CPU, recorded in the cache key and the signals' info.

What needs a GPU is in test_device_cuda.py (skipped without one)."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from miaudit.data import load_signals
from miaudit.datasets import digits, fit_affine, purchase_like, subset
from miaudit.engine import KeyParts, load_config, parse_config, train
from miaudit.engine._run import default_workers
from miaudit.errors import InputError
from miaudit.models import MLPRecipe, ModelStreams, parse_recipe, train_unit
from miaudit.models._nets import one_hot_add

from .conftest import small_config

NO_CUDA = not torch.cuda.is_available()


@pytest.fixture
def two_fake_gpus(monkeypatch):
    """Validation as on a machine with two GPUs (nothing here trains on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def _unit(data, recipe, device: str | None):
    rng = np.random.default_rng(0)
    sets = [np.sort(rng.choice(data.n_records, data.n_records // 2, replace=False)) for _ in "ab"]
    affines = [fit_affine(data, s) for s in sets]
    streams = [ModelStreams.of(11, k) for k in range(2)]
    kw = {} if device is None else {"device": device}
    return train_unit(recipe, data, sets, affines, streams, threads=1, **kw)


@pytest.mark.parametrize(
    "recipe",
    [
        {"kind": "torch-mlp", "hidden": [16], "epochs": 2, "batch_size": 32},
        {
            "kind": "torch-mlp",
            "hidden": [16, 8],
            "epochs": 2,
            "batch_size": 40,
            "optimizer": "sgd",
            "dropout": 0.2,
            "label_smoothing": 0.1,
            "precision": "bfloat16",
        },
        {
            "kind": "torch-cnn",
            "channels": [4],
            "hidden": 8,
            "epochs": 1,
            "batch_size": 16,
            "augment": ["hflip", "shift"],
            "dropout": 0.1,
        },
    ],
    ids=["mlp-adam", "mlp-sgd-dropout-bf16", "cnn-augment"],
)
def test_naming_the_cpu_changes_no_bit(recipe) -> None:
    data = (
        subset(digits(), np.arange(80))
        if recipe["kind"] == "torch-cnn"
        else purchase_like(n_records=300, n_features=30, n_classes=4, seed=3)
    )
    r = parse_recipe(recipe)
    default, cpu = _unit(data, r, None), _unit(data, r, "cpu")
    np.testing.assert_array_equal(default.logits, cpu.logits)
    assert cpu.logits.dtype == np.float32
    for name, t in cpu.state.items():
        assert t.device.type == "cpu" and torch.equal(t, default.state[name]), name


def test_the_engine_on_the_cpu_is_the_default_bit_for_bit(tmp_path) -> None:
    default = train(small_config(), tmp_path / "a")
    named = train(small_config(engine__device="cpu"), tmp_path / "b")
    np.testing.assert_array_equal(default.signals.logits, named.signals.logits)
    assert named.signals.info.device == "cpu"
    assert load_signals(named.signals_path).info.device == "cpu"
    manifest = json.loads(next(named.cache.glob("units/*/manifest.json")).read_text())
    assert manifest["parts"]["device"] == "cpu"


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:-1", "CUDA", "cuda:0 ", "mps", ""])
def test_a_bad_device_is_refused_naming_engine_device(device) -> None:
    with pytest.raises(InputError, match=r"^engine\.device: .*cpu.*cuda") as err:
        small_config(engine__device=device)
    assert "\n" not in str(err.value)


@pytest.mark.skipif(not NO_CUDA, reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_a_gpu_is_refused_where_torch_sees_none(device) -> None:
    with pytest.raises(InputError, match=r"^engine\.device: .*no CUDA GPU") as err:
        small_config(engine__device=device)
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match=r"^engine\.device: "):
        _unit(purchase_like(n_records=60, n_features=5, seed=1), MLPRecipe(epochs=1), device)


@pytest.mark.skipif(not NO_CUDA, reason="this machine has a CUDA GPU")
def test_the_cli_refuses_a_gpu_in_one_line_with_status_2(tmp_path, monkeypatch, capsys) -> None:
    from miaudit.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text('[data]\ndataset = "breast-cancer"\n[engine]\ndevice = "cuda"\n')
    monkeypatch.setattr(sys, "argv", ["miaudit", "train", str(cfg), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2
    assert len(err.splitlines()) == 1 and "engine.device" in err and "CUDA" in err
    assert not (tmp_path / "o" / "models").exists()  # refused before anything trained


def test_a_gpu_index_beyond_the_visible_ones_is_refused(two_fake_gpus) -> None:
    assert small_config(engine__device="cuda:1").engine.device == "cuda:1"
    with pytest.raises(InputError, match=r"^engine\.device: 'cuda:2' .* 2 CUDA GPU"):
        small_config(engine__device="cuda:2")


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:1"])
def test_the_device_round_trips_through_config_files(tmp_path, two_fake_gpus, device) -> None:
    cfg = small_config(engine__device=device)
    assert parse_config(cfg.model_dump(mode="json")) == cfg
    # The CPU, the default, is left out of dumps: configs naming no device hash as before.
    assert ("device" in cfg.model_dump(mode="json")["engine"]) == (device != "cpu")
    path = tmp_path / "c.toml"
    path.write_text(
        f'seed = 7\n[data]\ndataset = "breast-cancer"\n'
        f'[model]\nkind = "torch-mlp"\nhidden = [16]\nepochs = 3\nbatch_size = 32\n'
        f"[plan]\nmodels = 4\nunit_size = 2\n"
        f'[engine]\nworkers = 0\nthreads = 1\nprogress = false\ndevice = "{device}"\n'
    )
    assert load_config(path) == cfg


def test_the_device_is_part_of_the_cache_key(tmp_path, two_fake_gpus) -> None:
    base = KeyParts(data="d", recipe="r", seed=1, members="m", layout="l", threads=1, versions="v")
    assert base.device == "cpu"
    keys = {dataclasses.replace(base, device=d).key() for d in ("cpu", "cuda", "cuda:1")}
    assert len(keys) == 3
    from miaudit.datasets import load_dataset
    from miaudit.engine._plan import complementary_plan
    from miaudit.engine._run import unit_jobs

    def jobs(device: str):
        cfg = small_config(engine__device=device)
        data = load_dataset(cfg.data)
        plan = complementary_plan(
            data.n_records, cfg.plan.models, seed=cfg.seed, unit_size=cfg.plan.unit_size
        )
        return unit_jobs(cfg, data, plan, tmp_path)

    cpu, gpu = jobs("cpu"), jobs("cuda")
    assert [j.device for j in gpu] == ["cuda", "cuda"]
    assert not {j.key for j in cpu} & {j.key for j in gpu}


def test_one_worker_per_gpu_unless_configured(two_fake_gpus) -> None:
    assert default_workers(small_config(engine__workers=None, engine__device="cuda")) == 1
    assert default_workers(small_config(engine__workers=3, engine__device="cuda:1")) == 3
    cpu = small_config(engine__workers=None, engine__threads=1)
    assert default_workers(cpu) >= 1


def test_dp_audit_refuses_a_gpu_rather_than_ignoring_it(two_fake_gpus) -> None:
    from miaudit.audit import dp_audit, parse_audit_config

    cfg = parse_audit_config(
        {
            "data": {"dataset": "breast-cancer"},
            "model": {"kind": "torch-mlp", "hidden": [8]},
            "engine": {"device": "cuda"},
        }
    )
    with pytest.raises(InputError, match=r"^engine\.device: dp-audit trains on the CPU"):
        dp_audit(cfg)


def test_the_gpu_label_update_is_the_cpu_scatter_add_bit_for_bit() -> None:
    gen = torch.Generator().manual_seed(0)
    g = torch.softmax(torch.randn(3, 50, 7, generator=gen), -1) - 0.1 / 7
    y = torch.randint(0, 7, (3, 50), generator=gen)
    want = g.clone().scatter_add_(2, y.unsqueeze(-1), torch.full((3, 50, 1), 0.1 - 1.0))
    got = g.clone()
    one_hot_add(got, y, 0.1 - 1.0)
    assert torch.equal(got, want)
