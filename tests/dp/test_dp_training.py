"""DP-SGD as a recipe option (models/_dp.py): recipes, weights, accounting, fault injection."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("opacus")

from miaudit.datasets import DataConfig, fit_affine, load_dataset
from miaudit.errors import InputError
from miaudit.models import ModelStreams, parse_recipe
from miaudit.models._dp import require_opacus, single_model, train_dp
from miaudit.models._torch_train import build_net

TOL = 1e-5  # float32 forward passes of the same weights through two code paths


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def small():
    return load_dataset(
        DataConfig(
            dataset="purchase",
            purchase={"n_records": 300, "n_features": 40, "n_classes": 5, "flip_rate": 0.1},
        )
    )


def _mlp(**dp):
    return parse_recipe(
        {"kind": "torch-mlp", "hidden": [16], "epochs": 2, "batch_size": 32, "dp": dp}
    )


def _train(recipe, data, seed=0):
    idx = np.arange(0, data.n_records, 2)
    return train_dp(recipe, data, [idx], [fit_affine(data, idx)], [ModelStreams.of(seed, 0)])


def test_recipe_fields_and_errors():
    with pytest.raises(InputError, match=r"model\.dp.*exactly one"):
        parse_recipe({"kind": "torch-mlp", "dp": {}})
    with pytest.raises(InputError, match=r"model\.dp.*exactly one"):
        parse_recipe({"kind": "torch-mlp", "dp": {"epsilon": 1.0, "noise_multiplier": 1.0}})
    with pytest.raises(InputError, match=r"model.dp.accountant"):
        parse_recipe({"kind": "torch-mlp", "dp": {"epsilon": 1.0, "accountant": "gdp"}})
    with pytest.raises(InputError, match=r"early stopping"):
        parse_recipe({"kind": "torch-mlp", "early_stopping": {}, "dp": {"epsilon": 1.0}})
    with pytest.raises(InputError, match=r"no_clipping"):
        parse_recipe(
            {
                "kind": "torch-mlp",
                "dp": {"epsilon": 1.0, "ghost_clipping": True, "fault": "no_clipping"},
            }
        )
    # A recipe without DP serialises exactly as before the field existed (cache keys unchanged).
    assert "dp" not in json.loads(parse_recipe({"kind": "torch-mlp"}).model_dump_json())
    assert json.loads(_mlp(epsilon=2.0).model_dump_json())["dp"]["epsilon"] == 2.0


def test_missing_opacus_names_the_field(monkeypatch):
    monkeypatch.setitem(sys.modules, "opacus", None)
    with pytest.raises(InputError, match=r"model\.dp.*opacus"):
        require_opacus()


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_single_model_computes_what_the_stack_computes(kind):
    if kind == "mlp":
        data = load_dataset(
            DataConfig(
                dataset="purchase", purchase={"n_records": 50, "n_features": 12, "n_classes": 3}
            )
        )
        recipe = parse_recipe({"kind": "torch-mlp", "hidden": [8, 6]})
    else:
        data = load_dataset(DataConfig(dataset="digits", max_records=50))
        recipe = parse_recipe({"kind": "torch-cnn", "channels": [4], "hidden": 8})
    gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    net = build_net(recipe, data, gens)
    x = torch.from_numpy(data.features[:20])
    with torch.no_grad():
        stacked = net.forward(x.expand(3, -1, -1))
    for k in range(3):
        with torch.no_grad():
            single = single_model(recipe, net, k).eval()(x)
        np.testing.assert_allclose(single.numpy(), stacked[k].numpy(), atol=TOL, rtol=TOL)


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_target_epsilon_is_spent_and_recorded(small, accountant):
    res = _train(_mlp(epsilon=2.0, accountant=accountant), small)
    (p,) = res.privacy
    # Opacus searches σ so that the accountant's ε lands just under the target (its tolerance 0.01·ε).
    assert 0.9 * 2.0 <= p["epsilon"] <= 2.0 + 1e-9
    assert p["accountant"] == accountant and p["delta"] == 1e-5 and p["noise_multiplier"] > 0
    assert p["steps"] > 0 and 0 < p["sample_rate"] < 1 and p["fault_injection"] == "none"
    assert res.logits.shape == (1, small.n_records, 5) and np.all(np.isfinite(res.logits))


@pytest.mark.parametrize("ghost", [False, True])
def test_every_poisson_round_is_a_step_empty_batches_included(small, ghost, caplog):
    """Red team: empty Poisson batches were skipped, so the accountant counted only the rounds
    that drew a record (batch_size 1: 97 of 160 steps, ε 0.84 recorded for rounds worth 1.0);
    whether a round was skipped depends on whether a record was drawn."""
    from opacus.accountants import create_accountant

    recipe = parse_recipe(
        {
            "kind": "torch-mlp",
            "hidden": [8],
            "epochs": 2,
            "batch_size": 1,
            "dp": {"epsilon": 1.0, "accountant": "prv", "ghost_clipping": ghost},
        }
    )
    idx = np.arange(0, small.n_records, 2)  # 150 records: q = 1/150, 300 rounds
    res = train_dp(recipe, small, [idx], [fit_affine(small, idx)], [ModelStreams.of(0, 0)])
    (p,) = res.privacy
    assert p["steps"] == 2 * len(idx)  # about 37 % of these rounds drew no record
    fresh = create_accountant("prv")
    fresh.history = [(p["noise_multiplier"], p["sample_rate"], p["steps"])]
    assert p["epsilon"] == pytest.approx(fresh.get_epsilon(delta=p["delta"]), rel=1e-9)
    assert 0.9 <= p["epsilon"] <= 1.0 + 1e-9  # the target is what the rounds spend
    assert np.all(np.isfinite(res.logits))
    assert "batch is empty" not in caplog.text  # an ordinary step, not a warning to the user


def test_reproducible_and_ghost_clipping_trains(small):
    a, b = (
        _train(_mlp(noise_multiplier=1.0), small, seed=4),
        _train(_mlp(noise_multiplier=1.0), small, seed=4),
    )
    np.testing.assert_array_equal(a.logits, b.logits)
    assert not np.array_equal(a.logits, _train(_mlp(noise_multiplier=1.0), small, seed=5).logits)
    g = _train(_mlp(noise_multiplier=1.0, ghost_clipping=True), small, seed=4)
    assert g.privacy[0]["ghost_clipping"] and g.privacy[0]["epsilon"] == pytest.approx(
        a.privacy[0]["epsilon"], rel=1e-9
    )


def test_seeded_noise_is_replayed_exactly_and_secret_noise_is_not(small):
    """The DP adversary knows every other record and the recipe; with noise drawn from the
    published seed they replay the training with and without a record and one replay matches
    the released model exactly (red team: 0.0 against 0.0077). With ``randomness = "secret"``
    no replay matches (the loader's and the noise's seeds come from the OS)."""
    others = np.arange(2, small.n_records, 2)
    with_record, without = np.concatenate([[0], others]), others
    seeded = _mlp(noise_multiplier=1.0)
    # fit_affine of the released model's own records in every replay: the comparison is the noise's
    fit = fit_affine(small, with_record)

    def run(recipe, idx):
        return train_dp(recipe, small, [idx], [fit], [ModelStreams.of(3, 0)]).logits

    released = run(seeded, with_record)
    np.testing.assert_array_equal(released, run(seeded, with_record))  # the replay "member"
    assert not np.array_equal(released, run(seeded, without))  # the replay "non-member"
    secret = _mlp(noise_multiplier=1.0, randomness="secret")
    released = run(secret, with_record)
    assert not np.array_equal(released, run(secret, with_record))
    record = train_dp(secret, small, [with_record], [fit], [ModelStreams.of(3, 0)]).privacy[0]
    assert record["randomness"] == "secret"


def test_zero_noise_fault_is_exactly_no_noise_while_the_accountant_keeps_sigma(small):
    honest_zero = _train(_mlp(noise_multiplier=0.0), small, seed=7)
    faulty = _train(_mlp(noise_multiplier=1.0, fault="zero_noise"), small, seed=7)
    noisy = _train(_mlp(noise_multiplier=1.0), small, seed=7)
    # The faulty run computes what an honest σ = 0 run computes, bit for bit ...
    np.testing.assert_array_equal(faulty.logits, honest_zero.logits)
    assert not np.array_equal(faulty.logits, noisy.logits)
    # ... but records the configured σ's ε, like the correct run; the honest σ = 0 run spends ∞.
    assert (
        faulty.privacy[0]["noise_multiplier"] == 1.0
        and faulty.privacy[0]["fault_injection"] == "zero_noise"
    )
    assert faulty.privacy[0]["epsilon"] == pytest.approx(noisy.privacy[0]["epsilon"], rel=1e-12)
    assert math.isinf(honest_zero.privacy[0]["epsilon"])


def test_engine_dispatches_dp_and_records_privacy(tmp_path):
    from miaudit.engine import TrainConfig, _cache, train

    cfg = TrainConfig.model_validate(
        {
            "data": {
                "dataset": "purchase",
                "purchase": {"n_records": 200, "n_features": 20, "n_classes": 4},
            },
            "model": {
                "kind": "torch-mlp",
                "hidden": [8],
                "epochs": 1,
                "batch_size": 32,
                "dp": {"epsilon": 4.0, "accountant": "rdp"},
            },
            "plan": {"models": 2, "unit_size": 2},
            "engine": {"workers": 0, "threads": 1, "progress": False},
            "seed": 3,
        }
    )
    run = train(cfg, tmp_path)
    folder = _cache.unit_dir(run.cache, run.signals.info.units[0])
    privacy = json.loads((folder / _cache.MANIFEST).read_text())["info"]["privacy"]
    assert len(privacy) == 2 and all(
        p["accountant"] == "rdp" and 3.6 <= p["epsilon"] <= 4.0 for p in privacy
    )
    assert run.signals.info.privacy == privacy  # and in the signals store, saved with it
    from miaudit.data import load_signals

    assert load_signals(run.signals_path).info.privacy == privacy
    from safetensors import safe_open

    with safe_open(str(folder / "weights.safetensors"), framework="np") as fh:
        assert json.loads(fh.metadata()["privacy"]) == privacy
    again = train(cfg, tmp_path)
    assert again.reused == (0,)  # the DP recipe's key is stable


def test_an_infinite_epsilon_is_written_as_standard_json(tmp_path):
    """Red team: σ = 0 records ε = ∞, written as the literal Infinity (not JSON: strict readers
    refused the unit's manifest, its weights' metadata and the signals file). It is null now,
    read back as ∞."""
    from safetensors import safe_open

    from miaudit.audit import PrivacySpent
    from miaudit.data import load_signals
    from miaudit.engine import TrainConfig, _cache, train

    def strict(text: str) -> object:
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in a JSON file"))

    cfg = TrainConfig.model_validate(
        {
            "data": {"dataset": "purchase", "purchase": {"n_records": 120, "n_features": 8}},
            "model": {
                "kind": "torch-mlp",
                "hidden": [4],
                "epochs": 1,
                "dp": {"noise_multiplier": 0.0},
            },
            "plan": {"models": 2, "unit_size": 2},
            "engine": {"workers": 0, "threads": 1, "progress": False},
            "seed": 3,
        }
    )
    run = train(cfg, tmp_path)
    folder = _cache.unit_dir(run.cache, run.signals.info.units[0])
    manifest = strict((folder / _cache.MANIFEST).read_text())
    assert [p["epsilon"] for p in manifest["info"]["privacy"]] == [None, None]  # type: ignore[index]
    with safe_open(str(folder / "weights.safetensors"), framework="np") as fh:
        assert [p["epsilon"] for p in strict(fh.metadata()["privacy"])] == [None, None]  # type: ignore[union-attr]
    for p in load_signals(run.signals_path).info.privacy:
        assert PrivacySpent.model_validate(p).epsilon == math.inf
    assert train(cfg, tmp_path).reused == (0,)  # the manifest reads back


def test_shuffled_batches_are_refused_because_the_accountant_assumes_poisson_sampling(
    small, tmp_path, monkeypatch, capsys
):
    # Refused: from Python, naming the field ...
    with pytest.raises(
        InputError, match=r"^model\.dp\.poisson_sampling: false is not covered by the accountant"
    ):
        _mlp(epsilon=1.0, poisson_sampling=False)
    # ... and from the CLI: one line, exit 2, nothing written.
    from tests.cli.test_cli import run_main

    cfg = tmp_path / "train.toml"
    cfg.write_text(
        '[data]\ndataset = "breast-cancer"\n[model]\nkind = "torch-mlp"\ndp = { epsilon = 1.0, poisson_sampling = false }\n'
    )
    out = tmp_path / "out"
    code, _, err = run_main(monkeypatch, capsys, "train", str(cfg), "--out", str(out))
    assert code == 2 and "model.dp.poisson_sampling" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    # Accepted the other way (explicitly true, or by default), and recorded as Poisson-sampled.
    res = _train(_mlp(noise_multiplier=1.0, poisson_sampling=True), small)
    assert res.privacy[0]["poisson_sampling"] is True and 0 < res.privacy[0]["sample_rate"] < 1
