"""Output policies: grammar, closed forms, label-only never leaks a probability, signals under each policy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.optimize import minimize

from miaudit.defenses import (
    ExposedLabels,
    ExposedScores,
    Full,
    LabelOnly,
    Noise,
    Round,
    TopK,
    apply_policy,
    completed_probabilities,
    computable_signals,
    exposed_signals,
    parse_policy,
    project_to_simplex,
    round_probs,
    top_k,
)
from miaudit.errors import InputError
from miaudit.signals import SIGNALS, compute_signals

EXACT = 1e-12  # float64 arithmetic on values in [0, 1]


def _probs(n: int = 500, c: int = 6, seed: int = 0) -> np.ndarray:
    z = np.random.default_rng(seed).normal(scale=2.0, size=(n, c))
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


ALL_POLICIES = ["full", "top-1", "top-3", "round:0", "round:2", "label-only", "noise:0.05"]


# --- grammar --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("full", Full()),
        ("top-3", TopK(3)),
        ("TOP-1", TopK(1)),
        (" round:2 ", Round(2)),
        ("label-only", LabelOnly()),
        ("noise:0.05", Noise(0.05)),
        ("noise:1", Noise(1.0)),
    ],
)
def test_parse_and_round_trip(spec, expected):
    policy = parse_policy(spec)
    assert policy == expected
    assert parse_policy(str(policy)) == policy
    assert parse_policy(policy) is policy


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "bogus",
        "top-0",
        "top-",
        "top-x",
        "top-2.5",
        "top--1",
        "round:",
        "round:-1",
        "round:16",
        "round:1.5",
        "label_only",
        "noise:",
        "noise:0",
        "noise:-0.1",
        "noise:nan",
        "noise:inf",
        "noise:x",
    ],
)
def test_bad_specs_name_the_field(spec):
    with pytest.raises(InputError) as err:
        parse_policy(spec, field="defense.output")
    assert err.value.field == "defense.output"
    assert "\n" not in str(err.value)


def test_bad_direct_construction_and_non_strings():
    with pytest.raises(InputError, match=r"output.k"):
        TopK(0)
    with pytest.raises(InputError, match=r"output.k"):
        TopK(True)  # a bool is not a count
    with pytest.raises(InputError, match=r"output.decimals"):
        Round(16)
    with pytest.raises(InputError, match=r"output.sigma"):
        Noise(float("nan"))
    with pytest.raises(InputError, match=r"output"):
        parse_policy(3)  # type: ignore[arg-type]


# --- the functions --------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 5])
def test_top_k_keeps_the_k_largest_as_they_are(k):
    p = _probs()
    out = top_k(p, k)
    assert ((out > 0).sum(axis=1) == k).all()  # continuous draws: no ties
    kept = out > 0
    np.testing.assert_array_equal(out[kept], p[kept])  # not renormalised
    # Every kept value ≥ every dropped one (brute force per row).
    assert all(p[i][kept[i]].min() >= p[i][~kept[i]].max() for i in range(p.shape[0]))
    np.testing.assert_array_equal(top_k(p, 6), p)
    np.testing.assert_array_equal(top_k(p, 60), p)


def test_top_k_ties_keep_the_lower_class_index():
    p = np.array([[0.1, 0.3, 0.3, 0.3]])
    np.testing.assert_array_equal(top_k(p, 2), [[0.0, 0.3, 0.3, 0.0]])


@pytest.mark.parametrize("d", [0, 1, 2, 4])
def test_round_closed_form(d):
    p = _probs()
    out = round_probs(p, d)
    np.testing.assert_array_equal(out, np.round(p, d))
    assert np.abs(out - p).max() <= 0.5 * 10.0**-d + EXACT
    assert not np.signbit(out).any()  # no −0.0: one tie group with 0.0
    assert np.allclose(out * 10**d, np.round(out * 10**d), atol=1e-9)  # on the grid


def test_label_only_never_returns_a_probability():
    p = _probs()
    out = apply_policy("label-only", p)
    assert isinstance(out, ExposedLabels) and not isinstance(out, ExposedScores)
    assert [f.name for f in dataclasses.fields(out)] == ["labels", "policy"]
    assert out.labels.dtype == np.int64 and out.labels.shape == (p.shape[0],)
    np.testing.assert_array_equal(out.labels, p.argmax(axis=1))
    assert not hasattr(out, "values")
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.labels = p  # type: ignore[misc]


@pytest.mark.parametrize("spec", ALL_POLICIES)
def test_every_policy_returns_the_models_label(spec):
    p = _probs(seed=1)
    out = apply_policy(spec, p, rng=0)
    np.testing.assert_array_equal(out.labels, p.argmax(axis=1))
    assert isinstance(out, ExposedLabels) == (spec == "label-only")
    if isinstance(out, ExposedScores):
        assert out.values.shape == p.shape and out.values.dtype == np.float64


def test_noise_rows_are_on_the_simplex_and_seeded():
    p = _probs(n=2000)
    a = apply_policy("noise:0.1", p, rng=5)
    b = apply_policy("noise:0.1", p, rng=5)
    c = apply_policy("noise:0.1", p, rng=6)
    assert (
        isinstance(a, ExposedScores)
        and isinstance(b, ExposedScores)
        and isinstance(c, ExposedScores)
    )
    assert (a.values >= 0).all()
    np.testing.assert_allclose(a.values.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)
    with pytest.raises(InputError, match=r"rng"):
        apply_policy("noise:0.1", p)


def test_simplex_projection_closed_forms_and_brute_force():
    p = _probs(n=50, c=5)
    np.testing.assert_allclose(project_to_simplex(p), p, atol=EXACT)  # already on it
    np.testing.assert_allclose(
        project_to_simplex(p + 0.37), p, atol=EXACT
    )  # a shift along 1 is the normal
    rng = np.random.default_rng(2)
    for v in rng.normal(size=(5, 4)):
        res = minimize(
            lambda x, v=v: ((x - v) ** 2).sum(),
            np.full(4, 0.25),
            method="SLSQP",
            bounds=[(0, 1)] * 4,
            constraints=({"type": "eq", "fun": lambda x: x.sum() - 1},),
            options={"ftol": 1e-14, "maxiter": 500},
        )
        np.testing.assert_allclose(
            project_to_simplex(v[None])[0], res.x, atol=1e-6
        )  # SLSQP's own accuracy


def test_bad_probs_shape():
    with pytest.raises(InputError, match=r"probs"):
        apply_policy("full", np.ones(3))


# --- signals under policies -----------------------------------------------------------------------


def test_computable_signals_table():
    assert computable_signals("label-only") == ("correctness",)
    for spec in ("full", "top-1", "round:2", "noise:0.1"):
        assert computable_signals(spec) == SIGNALS


def test_full_signals_are_compute_signals():
    p, y = _probs(), np.random.default_rng(3).integers(0, 6, 500)
    got = exposed_signals(apply_policy("full", p), y)
    want = compute_signals(p, y, kind="probs")
    assert set(got) == set(SIGNALS)
    for name in SIGNALS:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=1e-12)


def test_label_only_leaves_correctness_only():
    p, y = _probs(), np.random.default_rng(3).integers(0, 6, 500)
    out = apply_policy("label-only", p)
    sig = exposed_signals(out, y)
    assert list(sig) == ["correctness"]
    np.testing.assert_array_equal(sig["correctness"], (p.argmax(axis=1) == y).astype(float))
    with pytest.raises(InputError, match=r"loss cannot be computed under label-only"):
        exposed_signals(out, y, which=("loss",))


def test_top_k_signals_exact_when_shown_completed_when_hidden():
    p, y = _probs(), np.random.default_rng(4).integers(0, 6, 500)
    out = apply_policy("top-2", p)
    assert isinstance(out, ExposedScores)
    conf = exposed_signals(out, y, which=("confidence",))["confidence"]
    shown = out.values[np.arange(500), y] > 0
    assert 0 < shown.sum() < 500
    np.testing.assert_allclose(conf[shown], p[np.arange(500), y][shown], rtol=1e-12)  # exact
    # Hidden: the residual mass spread evenly over the 4 hidden classes, never above the 2nd value.
    resid = (1 - out.values.sum(axis=1)) / 4
    np.testing.assert_allclose(conf[~shown], resid[~shown], rtol=1e-9)
    assert (conf[~shown] <= np.sort(p, axis=1)[:, -2][~shown] + EXACT).all()
    np.testing.assert_allclose(completed_probabilities(out).sum(axis=1), 1.0, atol=1e-12)


def test_top_k_with_nothing_left_to_spread_stays_finite():
    out = apply_policy("top-1", np.array([[1.0, 0.0, 0.0]]))
    sig = exposed_signals(out, np.array([1]))
    assert all(np.isfinite(v).all() for v in sig.values())


def test_round_signals_read_zero_as_a_quarter_unit():
    p = np.array([[0.996, 0.004, 0.0], [0.5, 0.3, 0.2]])
    out = apply_policy("round:2", p)
    loss = exposed_signals(out, np.array([1, 2]), which=("loss",))["loss"]
    # Row 0: (1.00, 0.00, 0.00) → (1, 0.0025, 0.0025) renormalised; row 1 is exact.
    assert loss[0] == pytest.approx(-np.log(0.0025 / 1.005), rel=1e-12)
    assert loss[1] == pytest.approx(-np.log(0.2), rel=1e-12)


def test_threshold_signals_still_rank_members_under_restriction():
    """Confidence under top-1 and round:1 keeps most of the full-output ranking (a sanity direction)."""
    from miaudit.metrics import roc_auc_score
    from tests.conftest import simulated_outputs

    o = simulated_outputs(n=3000, classes=4, shift=1.5, seed=2)
    z = o.values - o.values.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    full_auc = roc_auc_score(
        o.member, exposed_signals(apply_policy("full", p), o.label)["confidence"]
    )
    for spec in ("top-1", "round:1"):
        auc = roc_auc_score(o.member, exposed_signals(apply_policy(spec, p), o.label)["confidence"])
        assert 0.55 < auc <= full_auc + 0.01, spec


def test_labels_shape_checked():
    with pytest.raises(InputError, match=r"labels"):
        exposed_signals(apply_policy("full", _probs(n=4)), np.zeros(3, dtype=int))
    with pytest.raises(InputError, match=r"which"):
        exposed_signals(apply_policy("full", _probs(n=4)), np.zeros(4, dtype=int), which=("bogus",))


# --- surface and layering -------------------------------------------------------------------------


def test_public_names_are_pinned():
    import miaudit.defenses

    assert set(miaudit.defenses.__all__) >= {
        "OutputPolicy",
        "Full",
        "TopK",
        "Round",
        "LabelOnly",
        "Noise",
        "parse_policy",
        "apply_policy",
        "Exposed",
        "ExposedScores",
        "ExposedLabels",
        "top_k",
        "round_probs",
        "label_only",
        "noise",
        "full",
        "computable_signals",
        "exposed_signals",
    }
    for name in miaudit.defenses.__all__:
        assert hasattr(miaudit.defenses, name), name


def test_policies_are_numpy_only():
    """Attacks and the prediction service import the policies: they need nothing but numpy (the
    layering of every package is tests/test_layering.py)."""
    import ast
    from pathlib import Path

    import miaudit.defenses

    root = Path(miaudit.defenses.__file__).parent
    policy_mods = {
        n.module
        for n in ast.walk(ast.parse((root / "_output_policy.py").read_text()))
        if isinstance(n, ast.ImportFrom)
    }
    assert policy_mods <= {"__future__", "dataclasses", "typing", "miaudit.errors"}


def test_top_k_matches_a_stable_sort_with_many_ties():
    """Brute force: a stable sort of −p keeps the lower class index first among equal values."""
    p = np.random.default_rng(5).integers(0, 4, size=(400, 7)) / 4.0  # many exact ties
    for k in (1, 2, 3, 6):
        keep = np.argsort(-p, axis=1, kind="stable")[:, :k]
        want = np.zeros_like(p)
        np.put_along_axis(want, keep, np.take_along_axis(p, keep, axis=1), axis=1)
        np.testing.assert_array_equal(top_k(p, k), want)


def test_top_1_on_two_classes_hides_nothing() -> None:
    """Lesson 2 compares top-1 with full on Adult: with two classes the other score is one minus
    the top one, and the completion recovers it exactly, so every signal equals full's."""
    from miaudit.defenses import apply_policy, exposed_signals

    rng = np.random.default_rng(0)
    p1 = rng.uniform(0.001, 0.999, size=500)
    probs = np.column_stack([p1, 1 - p1])
    labels = rng.integers(0, 2, size=500)
    top = exposed_signals(apply_policy("top-1", probs), labels)
    full = exposed_signals(apply_policy("full", probs), labels)
    assert set(top) == set(full)
    for name in full:
        np.testing.assert_allclose(top[name], full[name], rtol=1e-12, atol=1e-12, err_msg=name)
