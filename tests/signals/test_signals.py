"""Signals against closed forms, and stable at the extremes (docs/method.md §1)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from miaudit.signals import SIGNALS, compute_signals


def naive(z: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Textbook formulas in float64 on moderate logits (the brute-force reference)."""
    p = softmax(z, axis=-1)
    py = p[np.arange(len(y)), y]
    others = p.sum(-1) - py
    mask = np.ones_like(p, dtype=bool)
    mask[np.arange(len(y)), y] = False
    return {
        "loss": -np.log(py),
        "confidence": py,
        "scaled_logit": np.log(py) - np.log(others),
        "entropy": -(p * np.log(p)).sum(-1),
        "modified_entropy": -(1 - py) * np.log(py) - np.where(mask, p * np.log(1 - p), 0).sum(-1),
        "correctness": (p.argmax(-1) == y).astype(float),
    }


@pytest.mark.parametrize("classes", [2, 10, 1000])
def test_matches_textbook_formulas(classes):
    rng = np.random.default_rng(classes)
    z = 3 * rng.normal(size=(200, classes))
    y = rng.integers(0, classes, 200)
    got = compute_signals(z, y)
    ref = naive(z, y)
    for name in SIGNALS:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_probabilities_and_logits_agree():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(100, 5))
    y = rng.integers(0, 5, 100)
    a = compute_signals(z, y)
    b = compute_signals(softmax(z, axis=-1), y, kind="probs")
    for name in SIGNALS:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_stay_finite_and_exact(dtype):
    z = np.array([[1e4, -1e4], [1e4, -1e4], [0.0, 0.0]], dtype=dtype)
    y = np.array([0, 1, 0])
    s = compute_signals(z, y)
    for name in SIGNALS:
        assert np.isfinite(s[name]).all(), name
    assert s["scaled_logit"].tolist() == [2e4, -2e4, 0.0]  # z_y − logsumexp of the others
    assert s["loss"].tolist() == [0.0, 2e4, np.log(2)]
    assert s["modified_entropy"][1] == pytest.approx(4e4)  # −1·log p_y − p_0 log(1 − p_0)
    assert s["entropy"][2] == pytest.approx(np.log(2))


def test_scaled_logit_stays_informative_when_p_y_rounds_to_one():
    # p_y is exactly 1.0 in float64 for both rows, yet φ still orders them.
    z = np.array([[40.0, 0.0], [60.0, 0.0]])
    s = compute_signals(z, np.array([0, 0]))
    assert (s["confidence"] == 1.0).all()
    assert s["scaled_logit"].tolist() == pytest.approx([40.0, 60.0])
    assert s["loss"][0] > s["loss"][1] >= 0.0


def test_probability_one_is_finite():
    p = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    s = compute_signals(p, np.array([0, 0]), kind="probs")
    for name in SIGNALS:
        assert np.isfinite(s[name]).all(), name
    assert s["scaled_logit"][0] > 100 and s["scaled_logit"][1] < -100


def test_float32_input_large_c_matches_float64():
    rng = np.random.default_rng(1)
    z = (5 * rng.normal(size=(50, 1000))).astype(np.float32)
    y = rng.integers(0, 1000, 50)
    a = compute_signals(z, y)
    b = compute_signals(z.astype(np.float64), y)
    for name in SIGNALS:
        np.testing.assert_array_equal(a[name], b[name])


def test_leading_axes_and_chunking_do_not_change_values(monkeypatch):
    import miaudit.signals._compute as mod

    rng = np.random.default_rng(2)
    z = rng.normal(size=(3, 40, 4))
    y = rng.integers(0, 4, 40)
    whole = compute_signals(z, np.broadcast_to(y, (3, 40)))
    monkeypatch.setattr(mod, "_CHUNK_ELEMENTS", 7)
    chunked = compute_signals(z, np.broadcast_to(y, (3, 40)))
    for name in SIGNALS:
        assert whole[name].shape == (3, 40)
        np.testing.assert_array_equal(whole[name], chunked[name])
    one = compute_signals(z[1], y)
    np.testing.assert_array_equal(one["scaled_logit"], whole["scaled_logit"][1])


def test_unknown_signal():
    with pytest.raises(ValueError, match="unknown signals"):
        compute_signals(np.zeros((1, 2)), np.array([0]), which=("perplexity",))
