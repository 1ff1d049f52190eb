"""``miaudit attack OUTPUTS --population POP --attacks qmia`` and the Python ``attack()``: the
features in every format (docs/formats.md) and the one-line refusals (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from miaudit.audit import attack
from miaudit.cli import main
from miaudit.errors import InputError


def _model(n: int, rng: np.random.Generator, member: np.ndarray) -> dict[str, np.ndarray]:
    """Logits whose non-member φ depends on the features (μ = 4·x₀), members 1.5 higher."""
    x = rng.uniform(0, 1, size=(n, 3))
    y = (x[:, 1] > 0.5).astype(np.int64)
    phi = 4 * x[:, 0] + 0.5 * rng.normal(size=n) + 1.5 * member
    logits = np.zeros((n, 2))
    logits[np.arange(n), y] = phi  # two classes: φ = z_y − z_other
    return {"logits": logits, "label": y, "features": x}


def _files(tmp: Path, fmt: str = "npz", ids: bool = True) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    member = (rng.permutation(400) < 200).astype(np.int8)
    out = {**_model(400, rng, member), "member": member}
    pop = _model(300, rng, np.zeros(300))
    if ids:
        out["record_id"] = np.arange(400)
        pop["record_id"] = np.arange(1000, 1300)
    paths = tmp / f"outputs.{fmt}", tmp / f"population.{fmt}"
    for path, arrays in zip(paths, (out, pop), strict=True):
        if fmt == "npz":
            np.savez(path, **arrays)
            continue
        cols = {k: v for k, v in arrays.items() if k not in ("logits", "features")}
        cols |= {f"logit_{c}": arrays["logits"][:, c] for c in range(2)}
        cols |= {f"f{j}": arrays["features"][:, j] for j in range(3)}
        frame = pd.DataFrame(cols)
        frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path)
    return paths


def test_cli_qmia_from_saved_outputs(tmp_path, capsys):
    outputs, pop = _files(tmp_path)
    capsys.readouterr()
    main(["attack", str(outputs), "--population", str(pop), "--attacks", "loss,qmia",
          "--resamples", "20", "--json"])  # fmt: skip
    res = json.loads(capsys.readouterr().out)
    auc = {a["name"]: a["auc"]["point"] for a in res["attacks"]}
    assert auc["qmia"] > auc["loss"] + 0.1 and auc["qmia"] > 0.8, auc


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_feature_columns_in_tables(tmp_path, fmt):
    outputs, pop = _files(tmp_path, fmt)
    res = attack(outputs, population=pop, attacks=["qmia"], feature_columns=["f0", "f1", "f2"],
                 n_resamples=0)  # fmt: skip
    assert res.attacks[0].name == "qmia" and res.attacks[0].auc.point > 0.8


def _refused(argv: list[str], capsys) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_refusals_are_one_line(tmp_path, capsys):
    outputs, pop = _files(tmp_path)
    base = ["attack", str(outputs), "--attacks", "qmia"]
    assert "--population" in _refused(base, capsys)
    arrays = dict(np.load(pop))
    # an audited record in the population, by id
    np.savez(tmp_path / "shared.npz", **{**arrays, "record_id": np.arange(300)})
    err = _refused([*base, "--population", str(tmp_path / "shared.npz")], capsys)
    assert "--population" in err and "also an audited record" in err
    # features: missing, non-finite, another width
    np.savez(tmp_path / "nofeat.npz", **{k: v for k, v in arrays.items() if k != "features"})
    assert "features" in _refused([*base, "--population", str(tmp_path / "nofeat.npz")], capsys)
    bad = arrays["features"].copy()
    bad[3, 1] = np.inf
    np.savez(tmp_path / "inf.npz", **{**arrays, "features": bad})
    err = _refused([*base, "--population", str(tmp_path / "inf.npz")], capsys)
    assert "population.features: contains NaN or inf" in err
    np.savez(tmp_path / "narrow.npz", **{**arrays, "features": arrays["features"][:, :2]})
    err = _refused([*base, "--population", str(tmp_path / "narrow.npz")], capsys)
    assert "population.features" in err and "columns" in err
    np.savez(tmp_path / "members.npz", **{**arrays, "member": np.ones(300)})
    assert "population.member" in _refused(
        [*base, "--population", str(tmp_path / "members.npz")], capsys
    )
    err = _refused([*base, "--population", str(pop), "--features", "nope"], capsys)
    assert "--features" in err
    err = _refused([*base, "--population", str(pop), "--features", "member,f0"], capsys)
    assert "--features: 'member' is not a feature column" in err


@pytest.mark.parametrize(
    "which,name,value,message",
    [
        ("outputs", "label", np.int64(1), "label: must be one value per record (1-D)"),
        ("outputs", "member", np.int8(1), "member: must be one value per record (1-D)"),
        ("population", "record_id", np.int64(3), "population.record_id: must be one value"),
        (
            "population",
            "member",
            np.array(["no"] * 300),
            "population.member: values must be 0 or 1",
        ),
        ("population", "member", np.zeros(3), "population.member: has 3 values for 300"),
        ("population", "member", np.zeros((300, 2)), "population.member: must be one value"),
        ("outputs", "features", "text", "features: values are not numeric (dtype <U"),
        ("population", "features", "dates", "population.features: values are not numeric"),
    ],
)
def test_malformed_arrays_are_refused_in_one_line(tmp_path, capsys, which, name, value, message):
    """Red-team findings: 0-d arrays and a non-numeric POP member were internal errors (exit 1);
    a POP member of another length, and text or dates as features, were silently accepted."""
    outputs, pop = _files(tmp_path)
    arrays = dict(np.load(outputs if which == "outputs" else pop))
    if isinstance(value, str):
        features = arrays["features"]
        value = (
            features.astype(str)
            if value == "text"
            else np.datetime64("2020-01-01") + features.astype(np.int64).astype("timedelta64[s]")
        )
    target = tmp_path / f"crafted_{which}.npz"
    np.savez(target, **{**arrays, name: value})
    paths = (target, pop) if which == "outputs" else (outputs, target)
    argv = ["attack", str(paths[0]), "--population", str(paths[1]), "--attacks", "qmia"]
    assert message in _refused(argv, capsys)


def test_a_population_parquet_problem_names_the_population(tmp_path, capsys):
    outputs, pop = _files(tmp_path, "parquet")
    frame = pd.read_parquet(pop)
    frame["features"] = [list(map(float, range(3)))] * (len(frame) - 1) + [[1.0]]
    frame.to_parquet(tmp_path / "ragged.parquet")
    argv = ["attack", str(outputs), "--population", str(tmp_path / "ragged.parquet")]
    err = _refused([*argv, "--attacks", "qmia"], capsys)
    assert "population.features: rows have differing numbers of values" in err


def test_one_member_and_one_non_member_is_one_line(tmp_path, capsys):
    path = tmp_path / "two.npz"
    np.savez(path, logits=np.array([[2.0, 0.0], [0.0, 1.0]]), label=[0, 1], member=[1, 0])
    # named as the input's member column, not y_true (red team)
    assert "member: 1 member(s) and 1 non-member(s)" in _refused(
        ["attack", str(path), "--attacks", "loss"], capsys
    )


def test_a_one_record_population_says_so(tmp_path, capsys):
    """Red team: "population.member: only one membership class present (all members)" for a
    population file with no member column (the stand-in membership's own complaint)."""
    outputs, pop = _files(tmp_path)
    arrays = dict(np.load(pop))
    np.savez(tmp_path / "one.npz", **{k: v[:1] for k, v in arrays.items()})
    err = _refused(
        ["attack", str(outputs), "--attacks", "qmia", "--population", str(tmp_path / "one.npz")],
        capsys,
    )
    assert "population: holds 1 record(s)" in err


def test_without_ids_identical_rows_are_refused(tmp_path):
    outputs, pop = _files(tmp_path, ids=False)
    o, p = dict(np.load(outputs)), dict(np.load(pop))
    p["features"][5], p["label"][5] = o["features"][7], o["label"][7]
    np.savez(tmp_path / "copy.npz", **p)
    with pytest.raises(InputError, match="audited row 7 has the features and label"):
        attack(outputs, population=tmp_path / "copy.npz", attacks=["qmia"], n_resamples=0)


def test_a_copied_row_is_found_whatever_its_zeros_signs_or_precision(tmp_path):
    """Equal numbers are the same record: −0.0 for 0.0, or float32 in one file and the
    original float64 in the other (a red-team finding: the rows' bytes differed)."""
    outputs, pop = _files(tmp_path, ids=False)
    o, p = dict(np.load(outputs)), dict(np.load(pop))
    row = o["features"][7].astype(np.float64)
    row[0] = 0.0
    o["features"] = o["features"].astype(np.float64)
    o["features"][7] = row
    np.savez(tmp_path / "audited.npz", **o)
    signed = row.copy()
    signed[0] = -0.0
    p["features"] = p["features"].astype(np.float64)
    p["features"][5], p["label"][5] = signed, o["label"][7]
    np.savez(tmp_path / "signed.npz", **p)
    with pytest.raises(InputError, match="audited row 7 has the features and label"):
        attack(
            tmp_path / "audited.npz",
            population=tmp_path / "signed.npz",
            attacks=["qmia"],
            n_resamples=0,
        )
    o32 = {**o, "features": o["features"].astype(np.float32)}
    np.savez(tmp_path / "audited32.npz", **o32)
    p["features"][5] = row * (1 + 1e-12)  # float64 detail that float32 cannot hold
    np.savez(tmp_path / "pop64.npz", **p)
    with pytest.raises(InputError, match="audited row 7 has the features and label"):
        attack(
            tmp_path / "audited32.npz",
            population=tmp_path / "pop64.npz",
            attacks=["qmia"],
            n_resamples=0,
        )


def _images(n: int, rng: np.random.Generator, member: np.ndarray, shape: tuple) -> dict:
    """Images whose brightness sets non-member φ (12·brightness), members 1 higher."""
    img = rng.uniform(0, 1, size=(n, *shape)) * rng.uniform(0, 1, size=(n,) + (1,) * len(shape))
    y = (img.reshape(n, -1).mean(axis=1) > 0.25).astype(np.int64)
    phi = 12 * img.reshape(n, -1).mean(axis=1) + 0.5 * rng.normal(size=n) + member
    logits = np.zeros((n, 2))
    logits[np.arange(n), y] = phi
    return {"logits": logits, "label": y, "features": img}


def test_cli_qmia_on_images_regresses_with_a_cnn(tmp_path, capsys):
    """Features stored as images (n, H, W): QMIA keeps their shape (its CNN regressor); images
    of another shape in the population are refused in one line."""
    rng = np.random.default_rng(1)
    member = (rng.permutation(400) < 200).astype(np.int8)
    out, pop = tmp_path / "outputs.npz", tmp_path / "population.npz"
    np.savez(out, **_images(400, rng, member, (8, 8)), member=member)
    np.savez(pop, **_images(300, rng, np.zeros(300), (8, 8)))
    capsys.readouterr()
    main(["attack", str(out), "--population", str(pop), "--attacks", "loss,qmia",
          "--resamples", "20", "--json"])  # fmt: skip
    auc = {a["name"]: a["auc"]["point"] for a in json.loads(capsys.readouterr().out)["attacks"]}
    assert auc["qmia"] > auc["loss"] + 0.1, auc
    np.savez(pop, **_images(300, rng, np.zeros(300), (1, 4, 16)))
    err = _refused(["attack", str(out), "--population", str(pop), "--attacks", "qmia"], capsys)
    assert "images of shape (1, 4, 16)" in err
    np.savez(pop, **_images(300, rng, np.zeros(300), (8, 8, 3)))
    err = _refused(["attack", str(out), "--population", str(pop), "--attacks", "qmia"], capsys)
    assert "look channels-last (n, H, W, C)" in err
