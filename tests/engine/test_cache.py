"""The unit cache: every key part invalidates, reuse is verified and reported, bits match."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from miaudit.engine import KeyParts, _cache, train

from .conftest import small_config


def test_every_key_part_changes_the_key() -> None:
    base = KeyParts(data="d", recipe="r", seed=1, members="m", layout="l", threads=1, versions="v")
    keys = {base.key()}
    for f in dataclasses.fields(KeyParts):
        value = getattr(base, f.name)
        changed = dataclasses.replace(
            base, **{f.name: value + 1 if isinstance(value, int) else value + "x"}
        )
        keys.add(changed.key())
    assert len(keys) == 1 + len(dataclasses.fields(KeyParts))


def test_rerun_reuses_verified_units_with_identical_bits(tmp_path, capsys) -> None:
    first = train(small_config(), tmp_path)
    assert first.trained == (0, 1) and first.reused == ()
    again = train(small_config(), tmp_path)
    assert again.trained == () and again.reused == (0, 1)
    np.testing.assert_array_equal(first.signals.logits, again.signals.logits)
    assert "reusing 2 of 2 unit(s)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change",
    [
        {"model__lr": 2e-3},
        {"model__precision": "bfloat16"},
        {"seed": 8},
        {"engine__threads": 2},
        {"plan__unit_size": 4},
        {"data": {"dataset": "breast-cancer", "max_records": 500}},
        {"plan__pool_fraction": 0.6},
    ],
    ids=["recipe", "precision", "seed", "threads", "layout", "data", "members"],
)
def test_any_key_part_change_retrains(tmp_path, change) -> None:
    train(small_config(), tmp_path)
    run = train(small_config(**change), tmp_path)
    assert run.reused == () and len(run.trained) == run.plan.n_units


def test_library_version_change_retrains(tmp_path, monkeypatch) -> None:
    train(small_config(), tmp_path)
    monkeypatch.setattr(_cache, "library_versions", lambda: "torch=99;sklearn=99;numpy=99")
    assert train(small_config(), tmp_path).reused == ()


def _unit_keys(cfg, tmp_path) -> set[str]:
    from miaudit.datasets import load_dataset
    from miaudit.engine import make_plan
    from miaudit.engine._run import unit_jobs

    data = load_dataset(cfg.data)
    return {j.key for j in unit_jobs(cfg, data, make_plan(cfg, data.n_records), tmp_path)}


def test_opacus_and_scipy_versions_key_dp_units_only(tmp_path, monkeypatch) -> None:
    """A DP-SGD unit's noise, σ and recorded ε come from Opacus (and SciPy's PRV accountant):
    an upgrade of either must retrain it; other recipes' keys do not move."""
    import importlib.metadata

    pytest.importorskip("opacus")
    dp = small_config(
        model={"kind": "torch-mlp", "hidden": [8], "epochs": 1, "dp": {"epsilon": 4.0}}
    )
    plain = small_config()
    before = {"dp": _unit_keys(dp, tmp_path), "plain": _unit_keys(plain, tmp_path)}
    real = importlib.metadata.version
    for upgraded in ("opacus", "scipy"):
        monkeypatch.setattr(
            importlib.metadata,
            "version",
            lambda name, up=upgraded: "99.0" if name == up else real(name),
        )
        assert _unit_keys(dp, tmp_path).isdisjoint(before["dp"]), upgraded
        assert _unit_keys(plain, tmp_path) == before["plain"], upgraded
    assert _cache.key_versions(plain.model) == _cache.library_versions()


def test_torch_without_metadata_keys_by_its_module_imported_or_not(monkeypatch) -> None:
    """A torch build without package metadata keyed "absent" where torch was not imported yet
    (the coordinator) and its version where it was (a worker): two keys for one installation,
    which the workers' version check would refuse."""
    import importlib
    import importlib.metadata
    import sys
    import types

    real_version, real_import = importlib.metadata.version, importlib.import_module

    def no_torch_metadata(name: str) -> str:
        if name == "torch":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    fake = types.SimpleNamespace(__version__="2.99.0+source")
    monkeypatch.setattr(importlib.metadata, "version", no_torch_metadata)
    monkeypatch.setattr(
        importlib, "import_module", lambda n, *a: fake if n == "torch" else real_import(n, *a)
    )
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # not imported yet
    assert "torch=2.99.0+source;" in _cache.library_versions()


def test_a_worker_with_other_library_versions_refuses_to_train(tmp_path) -> None:
    """A Ray node with another torch build published its units under the coordinator's key
    and versions; the worker now compares and refuses, publishing nothing."""
    from miaudit.datasets import load_dataset
    from miaudit.engine import make_plan
    from miaudit.engine._run import unit_jobs
    from miaudit.engine._unit import run_unit
    from miaudit.errors import InputError

    cfg = small_config()
    data = load_dataset(cfg.data)
    job = unit_jobs(cfg, data, make_plan(cfg, data.n_records), tmp_path)[0]
    here = job.parts.versions
    other = here.replace("torch=", "torch=0.1+cu121-was-")
    job = dataclasses.replace(job, parts=dataclasses.replace(job.parts, versions=other))
    with pytest.raises(InputError) as info:
        run_unit(job)
    assert info.value.field == "library versions"
    assert "torch" in info.value.problem and "0.1+cu121" in info.value.problem
    assert "\n" not in str(info.value)
    assert not (tmp_path / "units").exists() or not any((tmp_path / "units").iterdir())


def test_changed_members_of_one_unit_retrain_that_unit_only(tmp_path) -> None:
    first = train(small_config(), tmp_path)
    keep = first.plan.keep.copy()
    i = int(np.flatnonzero(keep[3])[0])
    keep[3, i] = False  # model 3 (unit 1) loses one record
    run = train(small_config(plan__kind="user"), tmp_path, keep=keep)
    assert run.reused == (0,) and run.trained == (1,)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (
            lambda d: (d / "logits.npy").write_bytes((d / "logits.npy").read_bytes()[:-10]),
            "wrong size",
        ),
        (lambda d: _flip_byte(d / "weights.safetensors"), "does not match its recorded hash"),
        (lambda d: (d / "manifest.json").unlink(), "manifest missing"),
        (lambda d: (d / "weights.safetensors").unlink(), "weights.safetensors missing"),
    ],
    ids=["truncated", "corrupted", "no-manifest", "missing-file"],
)
def test_damaged_units_are_refused_and_retrained(tmp_path, damage, reason) -> None:
    first = train(small_config(), tmp_path)
    damage(_cache.unit_dir(first.cache, first.signals.info.units[1]))
    run = train(small_config(), tmp_path)
    assert run.reused == (0,) and run.trained == (1,)
    assert reason in run.refused[1] and "refused" in run.summary()
    np.testing.assert_array_equal(first.signals.logits, run.signals.logits)


def _flip_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_manifest_records_the_key_parts(tmp_path) -> None:
    run = train(small_config(), tmp_path)
    manifest = json.loads(
        (_cache.unit_dir(run.cache, run.signals.info.units[0]) / "manifest.json").read_text()
    )
    assert manifest["parts"]["seed"] == 7 and manifest["parts"]["threads"] == 1
    assert set(manifest["files"]) == {"logits.npy", "weights.safetensors"}
