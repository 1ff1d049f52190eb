"""End to end: configs, determinism, the signals file, the CLI command function."""

from __future__ import annotations

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from miaudit.data import load_signals
from miaudit.engine import load_config, train
from miaudit.errors import InputError

from .conftest import small_config

TOML = """
seed = 7
[data]
dataset = "breast-cancer"
[model]
kind = "torch-mlp"
hidden = [16]
epochs = 3
batch_size = 32
[plan]
models = 4
unit_size = 2
[engine]
workers = 0
progress = false
"""

YAML = """
seed: 7
data: {dataset: breast-cancer}
model: {kind: torch-mlp, hidden: [16], epochs: 3, batch_size: 32}
plan: {models: 4, unit_size: 2}
engine: {workers: 0, progress: false}
"""


def test_toml_and_yaml_give_the_same_config(tmp_path) -> None:
    (tmp_path / "a.toml").write_text(TOML)
    (tmp_path / "a.yaml").write_text(YAML)
    assert load_config(tmp_path / "a.toml") == load_config(tmp_path / "a.yaml") == small_config()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (TOML.replace("hidden = [16]", "hidden = [16, 0]"), "model.hidden.1"),
        (TOML.replace("models = 4", "models = 0"), "plan.models"),
        (TOML.replace("[engine]", "[engine]\ncores = 3"), "engine.cores"),
        (TOML.replace("seed = 7", "seed = -1"), "seed"),
        ("seed = [", "config"),
    ],
)
def test_config_errors_name_the_field(tmp_path, text, field) -> None:
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(InputError) as info:
        load_config(tmp_path / "c.toml")
    assert info.value.field == field


def test_relative_paths_are_relative_to_the_config(tmp_path) -> None:
    (tmp_path / "c.toml").write_text('[data]\npath = "d.csv"\nlabel = "y"\n')
    assert load_config(tmp_path / "c.toml").data.path == tmp_path / "d.csv"


def test_fresh_runs_are_bit_identical_and_signals_round_trip(tmp_path) -> None:
    a = train(small_config(), tmp_path / "a")
    b = train(small_config(), tmp_path / "b")
    np.testing.assert_array_equal(a.signals.logits, b.signals.logits)
    back = load_signals(a.signals_path)
    np.testing.assert_array_equal(back.logits, a.signals.logits)
    np.testing.assert_array_equal(back.keep, a.plan.keep)
    np.testing.assert_array_equal(back.population, a.plan.population)
    assert back.logits.dtype == np.float32 and back.n_models == 4
    assert a.signals_path.stat().st_mode & 0o777 == 0o600
    assert back.info.recipe["precision"] == "float32"
    # The models learned something: training accuracy well above chance.
    assert (back.logits.argmax(-1) == back.label)[back.keep].mean() > 0.85


def test_worker_processes_give_the_same_bits(tmp_path) -> None:
    inline = train(small_config(), tmp_path / "a")
    pooled = train(small_config(engine__workers=2), tmp_path / "b")
    np.testing.assert_array_equal(inline.signals.logits, pooled.signals.logits)


def test_the_default_unit_size_leaves_the_keys_and_bits_alone(tmp_path) -> None:
    """With ``plan.unit_size`` unset, in this process and on 2 workers give the same units, so
    the same keys and bits (they followed the workers: other keys, logits 1.9e-6 apart)."""
    plan = {"models": 4}
    inline = train(small_config(plan=plan), tmp_path / "a")
    pooled = train(small_config(plan=plan, engine__workers=2), tmp_path / "b")
    assert (inline.plan.unit_size, pooled.plan.unit_size) == (2, 2)
    assert inline.signals.info.units == pooled.signals.info.units
    np.testing.assert_array_equal(inline.signals.logits, pooled.signals.logits)


def test_sklearn_and_cnn_recipes(tmp_path) -> None:
    sk = train(
        small_config(
            model={
                "kind": "sklearn",
                "estimator": "sklearn.linear_model.LogisticRegression",
                "params": {"max_iter": 500},
            }
        ),
        tmp_path / "s",
    )
    assert sk.signals.logits.shape == (4, 569, 2)
    assert len(list(sk.cache.glob("units/*/model_*.skops"))) == 4
    cnn = train(
        small_config(
            data={"dataset": "digits", "max_records": 300},
            model={
                "kind": "torch-cnn",
                "channels": [4],
                "hidden": 8,
                "epochs": 1,
                "augment": ["shift"],
            },
        ),
        tmp_path / "c",
    )
    assert cnn.signals.logits.shape == (4, 300, 5, 10)
    with pytest.raises(InputError) as info:
        train(
            small_config(
                data={"dataset": "digits"}, model={"kind": "torch-cnn", "augment": ["hflip"]}
            ),
            tmp_path / "x",
        )
    assert info.value.field == "model.augment"


def test_cli_train_command(tmp_path) -> None:
    from miaudit.cli._train import train as train_cmd

    app = typer.Typer()
    app.command("train")(train_cmd)
    app.command("other")(lambda: None)  # keeps "train" a subcommand
    (tmp_path / "c.toml").write_text(TOML)
    result = CliRunner().invoke(
        app, ["train", str(tmp_path / "c.toml"), "--out", str(tmp_path / "o"), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "trained 2 unit(s)" in result.output
    again = CliRunner().invoke(
        app, ["train", str(tmp_path / "c.toml"), "--out", str(tmp_path / "o"), "--no-progress"]
    )
    assert "reused 2 verified unit(s)" in again.output
    bad = CliRunner().invoke(
        app, ["train", str(tmp_path / "c.toml"), "--out", str(tmp_path / "o"), "--workers", "-1"]
    )
    assert isinstance(bad.exception, InputError) and bad.exception.field == "engine.workers"
    (tmp_path / "o" / "audit.json").write_text("{}")  # now an audit's folder
    mixed = CliRunner().invoke(
        app, ["train", str(tmp_path / "c.toml"), "--out", str(tmp_path / "o"), "--no-progress"]
    )
    # red team: training into an audit's folder replaced its signals beside its results
    assert isinstance(mixed.exception, InputError) and "holds a `miaudit audit` run" in str(
        mixed.exception
    )


def test_model_location_points_at_the_weights(tmp_path) -> None:
    from miaudit.models import load_torch_state

    run = train(small_config(), tmp_path)
    folder, pos = run.model_location(3)
    state = load_torch_state(folder / "weights.safetensors")
    assert pos == 1 and state["layer0.weight"].shape[0] == 2
    with pytest.raises(InputError):
        run.model_location(4)


def test_a_failed_run_leaves_no_train_json(tmp_path, monkeypatch) -> None:
    from miaudit.engine import _run

    def fail(*args: object) -> None:
        raise RuntimeError("assembling failed")

    monkeypatch.setattr(_run, "_assemble", fail)
    cfg = small_config(
        data={"dataset": "breast-cancer", "max_records": 100},
        model={"kind": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"},
    )
    with pytest.raises(RuntimeError, match="assembling failed"):
        train(cfg, tmp_path)
    assert not (tmp_path / "train.json").exists()


@pytest.mark.parametrize("folder", ["signals", "models"])
def test_a_link_where_train_writes_a_folder_is_refused(tmp_path, folder) -> None:
    elsewhere = tmp_path / "another-run"
    elsewhere.mkdir()
    (elsewhere / "signals.npz").write_bytes(b"another run's signals")
    out = tmp_path / "out"
    out.mkdir()
    (out / folder).symlink_to(elsewhere)
    cfg = small_config(
        data={"dataset": "breast-cancer", "max_records": 100},
        model={"kind": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"},
    )
    with pytest.raises(InputError) as err:
        train(cfg, out)
    assert err.value.field == "--out" and str(out / folder) in str(err.value)
    assert "is a link" in str(err.value) and len(str(err.value).splitlines()) == 1
    assert [p.name for p in elsewhere.iterdir()] == ["signals.npz"]
    assert (elsewhere / "signals.npz").read_bytes() == b"another run's signals"


def test_restricted_folders_are_0700_whatever_the_umask(tmp_path) -> None:
    """Red team: under umask 000 the run folder, signals/, models/ and models/units/ were
    created 0777 (any local user could replace signals.npz); the files in them were 0600."""
    import os
    import stat

    out = tmp_path / "run"
    old = os.umask(0)
    try:
        train(small_config(), out)
    finally:
        os.umask(old)
    for folder in (out, out / "signals", out / "models", out / "models" / "units"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_a_folder_the_user_made_keeps_its_mode(tmp_path) -> None:
    import os
    import stat

    out = tmp_path / "run"
    out.mkdir()
    out.chmod(0o755)
    train(small_config(), out)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(out / "signals").st_mode) == 0o700
