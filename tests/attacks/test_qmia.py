"""QMIA's numbers (docs/method.md §14): calibration on fresh non-members, what its regressor
removes, cross-fitting, determinism and its refusals."""

from __future__ import annotations

import numpy as np
import pytest

from miaudit.attacks import ImageRegressorSettings, QmiaSettings, fit_qmia, qmia_scores
from miaudit.errors import InputError
from miaudit.metrics import roc_auc_score

#: Small fits keep the module fast; the numbers below hold for the default settings too.
FAST = QmiaSettings(max_iter=30, n_folds=3)


def _records(n: int, rng: np.random.Generator, shift: np.ndarray | float = 0.0):
    """Non-member φ with a mean and a scale that depend on the features: μ = 6·x₀, σ = 0.3 + x₁."""
    x = rng.uniform(0, 1, size=(n, 2))
    y = (x[:, 0] > 0.5).astype(np.int64)
    phi = 6 * x[:, 0] + (0.3 + x[:, 1]) * rng.normal(size=n) + shift
    return phi, x, y


def test_fresh_nonmembers_score_as_standard_normal():
    """The standardised residual of non-members outside the fit has mean ≈ 0 and spread ≈ 1
    (1,000 fresh records: a standard error of 0.03 for the mean; tolerance 0.1 / 0.12 for the
    regressor's own error)."""
    rng = np.random.default_rng(0)
    pop, fresh = _records(2500, rng), _records(1000, rng)
    z = qmia_scores(*fresh, *pop, seed=1, settings=FAST)
    assert abs(z.mean()) < 0.1 and abs(z.std() - 1) < 0.12


def test_regressing_out_the_record_beats_the_raw_score():
    """Members sit 1 above their own non-member mean; across records μ spans 6, so the raw φ
    hides them (AUC Φ(1/(1.93·√2)) ≈ 0.64) and QMIA finds them (≈ 0.8 at best)."""
    rng = np.random.default_rng(1)
    pop = _records(2500, rng)
    member = (rng.permutation(1200) < 600).astype(np.int8)
    phi, x, y = _records(1200, rng, shift=1.0 * member)
    z = qmia_scores(phi, x, y, *pop, seed=0, settings=FAST)
    raw, qmia = roc_auc_score(member, phi), roc_auc_score(member, z)
    assert qmia > 0.75 and qmia > raw + 0.1, (raw, qmia)


def test_audited_records_never_enter_the_fit():
    """A record's score depends on the population and itself only, not on the other audited
    records (they are never in the fit)."""
    rng = np.random.default_rng(2)
    pop, audited = _records(500, rng), _records(300, rng)
    all_scores = qmia_scores(*audited, *pop, seed=3, settings=FAST)
    first = qmia_scores(*(a[:10] for a in audited), *pop, seed=3, settings=FAST)
    np.testing.assert_array_equal(first, all_scores[:10])


def test_scale_is_fitted_on_residuals_outside_their_fold():
    """Cross-fitted residuals are not shrunk by their own fit: their mean absolute value is
    larger than the in-sample residuals of the mean regressor fitted on every record."""
    rng = np.random.default_rng(4)
    phi, x, y = _records(1500, rng)
    model = fit_qmia(phi, x, y, seed=0, settings=FAST)
    from miaudit.attacks._qmia import design_matrix

    in_sample = np.abs(phi - model.mean.predict(design_matrix(x, y, True))).mean()
    _, sigma = model.predict(x, y)
    # σ = √(π/2)·E|r| of the cross-fitted residuals, above the in-sample residuals' spread
    assert (sigma / np.sqrt(np.pi / 2)).mean() > in_sample


def test_deterministic_for_a_seed():
    rng = np.random.default_rng(5)
    pop, audited = _records(400, rng), _records(100, rng)
    a = qmia_scores(*audited, *pop, seed=7, settings=FAST)
    np.testing.assert_array_equal(a, qmia_scores(*audited, *pop, seed=7, settings=FAST))
    assert not np.array_equal(a, qmia_scores(*audited, *pop, seed=8, settings=FAST))


def test_refusals_name_the_input():
    rng = np.random.default_rng(6)
    phi, x, y = _records(200, rng)
    with pytest.raises(InputError, match="population: QMIA needs at least 50"):
        qmia_scores(phi[:5], x[:5], y[:5], phi[:20], x[:20], y[:20])
    with pytest.raises(InputError, match="features: has 1 columns, the population's 2"):
        qmia_scores(phi, x[:, :1], y, phi, x, y, settings=FAST)


def test_one_far_population_score_is_refused_naming_its_record():
    """A single population φ a million times the others' scale moved boosting's every
    prediction and the scale's floor, and QMIA reported no leak (red team); it is refused in
    one line. Heavy but natural tails stay: Student-t with 2 degrees of freedom over 20,000
    records reaches about 100 interquartile ranges, a tenth of the bound."""
    rng = np.random.default_rng(8)
    phi, x, y = _records(400, rng)
    crafted = phi.copy()
    crafted[17] = 1e6
    with pytest.raises(InputError, match=r"population\.phi: record 17's φ = 1e\+06 lies"):
        qmia_scores(phi[:10], x[:10], y[:10], crafted, x, y, settings=FAST)
    crafted[17] = 1e300
    with pytest.raises(InputError, match="record 17's φ"):
        fit_qmia(crafted, x, y, settings=FAST)
    tails = rng.standard_t(2, size=20_000)
    fit_qmia(tails, rng.uniform(size=(20_000, 2)), np.zeros(20_000, np.int64), settings=FAST)


def test_scores_beyond_float_range_are_refused_not_returned():
    """Image features near float32's largest value: the CNN's standardisation overflowed and
    every score was NaN (red team); refused in one line instead."""
    rng = np.random.default_rng(9)
    big = (rng.normal(size=(60, 64)) * 1e37).astype(np.float32)
    labels = rng.integers(0, 3, 60)
    settings = QmiaSettings(n_folds=2, network=ImageRegressorSettings(epochs=1))
    with pytest.raises(InputError, match=r"population\.features: images too large"):
        qmia_scores(
            rng.normal(size=10), big[:10], labels[:10], rng.normal(size=50), big[10:],
            labels[10:], settings=settings, image_shape=(1, 8, 8),
        )  # fmt: skip


def test_audited_records_whose_scores_overflow_are_refused():
    """A fit on ordinary images, then audited images near float32's largest value: the CNN's
    predictions overflow; the scores are refused, never returned as NaN."""
    rng = np.random.default_rng(10)
    images = rng.normal(size=(60, 64)).astype(np.float32)
    labels = rng.integers(0, 3, 60)
    images[:10] = np.clip(images[:10], -1, 1) * np.float32(3e38)
    settings = QmiaSettings(n_folds=2, network=ImageRegressorSettings(epochs=1))
    with pytest.raises(InputError, match="non-finite scores"):
        qmia_scores(
            rng.normal(size=10), images[:10], labels[:10], rng.normal(size=50), images[10:],
            labels[10:], settings=settings, image_shape=(1, 8, 8),
        )  # fmt: skip


#: A smaller CNN fit for the image tests (the defaults' numbers hold as well, slower).
FAST_IMAGES = QmiaSettings(n_folds=3, network=ImageRegressorSettings(epochs=15))


def _images(n: int, rng: np.random.Generator, shift: np.ndarray | float = 0.0):
    """6×6 images whose brightness map sets non-member φ: μ = 10·(mean of the left half)."""
    img = rng.uniform(0, 1, size=(n, 6, 6)) * rng.uniform(0, 1, size=(n, 1, 1))
    y = (img[:, :, 3:].mean(axis=(1, 2)) > 0.25).astype(np.int64)
    phi = 10 * img[:, :, :3].mean(axis=(1, 2)) + 0.5 * rng.normal(size=n) + shift
    return phi, img.reshape(n, 36), y


def test_images_regress_with_a_cnn_calibrated_on_fresh_nonmembers():
    """The CNN regressor learns the image's own brightness map: fresh non-members score with
    mean ≈ 0 and spread ≈ 1 (tolerances as above, wider for the smaller fit), and members
    1 higher are found far better than by φ itself."""
    rng = np.random.default_rng(7)
    pop = _images(600, rng)
    z = qmia_scores(*_images(600, rng), *pop, seed=0, settings=FAST_IMAGES, image_shape=(1, 6, 6))
    assert abs(z.mean()) < 0.15 and abs(z.std() - 1) < 0.2, (z.mean(), z.std())
    member = (rng.permutation(600) < 300).astype(np.int8)
    phi, x, y = _images(600, rng, shift=1.0 * member)
    s = qmia_scores(phi, x, y, *pop, seed=0, settings=FAST_IMAGES, image_shape=(1, 6, 6))
    assert roc_auc_score(member, s) > roc_auc_score(member, phi) + 0.1


def test_image_fits_are_deterministic_and_views_average():
    """Same seed, same scores; with views (n, Q, d) the score is the mean of the per-view
    standardised residuals of one fitted model."""
    rng = np.random.default_rng(8)
    pop, audited = _images(200, rng), _images(50, rng)
    kw = {"seed": 3, "settings": FAST_IMAGES, "image_shape": (1, 6, 6)}
    a = qmia_scores(*audited, *pop, **kw)
    np.testing.assert_array_equal(a, qmia_scores(*audited, *pop, **kw))
    two = [np.stack([v, v[:, ::-1] if v.ndim == 2 else v], axis=1) for v in pop[:2]]
    model = fit_qmia(*two, pop[2], seed=3, settings=FAST_IMAGES, image_shape=(1, 6, 6))
    phi, x, y = audited
    views = (np.stack([phi, phi + 1], axis=1), np.stack([x, x[:, ::-1]], axis=1))
    per_view = [model.score(views[0][:, q], views[1][:, q], y) for q in range(2)]
    np.testing.assert_allclose(model.score(*views, y), np.mean(per_view, axis=0))
    with pytest.raises(InputError, match="image_shape: \\(1, 5, 5\\) does not hold"):
        fit_qmia(*pop, settings=FAST_IMAGES, image_shape=(1, 5, 5))
    # a class the fit never saw is predicted by the trained classes' mean output, not refused
    assert np.isfinite(model.score(phi, x, np.full_like(y, 7))).all()
    with pytest.raises(InputError, match="labels: must be non-negative"):
        model.score(phi, x, np.full_like(y, -1))


def test_a_class_held_out_of_a_fold_or_absent_is_scored():
    """A class with one population record is missing from one cross-fitting fold's fit; its
    residual there, and audited records of a class the population lacks, still get a score."""
    rng = np.random.default_rng(10)
    phi, x, y = _images(120, rng)
    y = y.copy()
    y[0] = 2  # the top class, once
    audited = _images(40, rng)
    s = qmia_scores(
        *audited[:2], np.full(40, 3), phi, x, y, settings=FAST_IMAGES, image_shape=(1, 6, 6)
    )
    assert np.isfinite(s).all()
    with pytest.raises(InputError, match=r"population\.phi: contains NaN or inf"):
        qmia_scores(*audited, np.where(np.arange(120) == 5, np.inf, phi), x, y, settings=FAST)
    with pytest.raises(InputError, match="features: has values that are not finite as float32"):
        qmia_scores(audited[0], audited[1] * 1e39, audited[2], phi, x, y, image_shape=(1, 6, 6))
    with pytest.raises(InputError, match=r"population\.labels: must be non-negative integer"):
        qmia_scores(*audited, phi, x, y - 1, settings=FAST)
    with pytest.raises(InputError, match=r"audited\.labels: must have shape"):
        qmia_scores(*audited[:2], audited[2][:3], phi, x, y, settings=FAST)


def test_image_qmia_is_at_chance_when_membership_changes_nothing():
    """Null: "members" drawn exactly like non-members. AUC over 300 + 300 records has a
    standard error of about 0.024; tolerance 0.06 (2.5 of them)."""
    rng = np.random.default_rng(9)
    pop = _images(400, rng)
    member = (rng.permutation(600) < 300).astype(np.int8)
    s = qmia_scores(*_images(600, rng), *pop, seed=1, settings=FAST_IMAGES, image_shape=(1, 6, 6))
    assert abs(roc_auc_score(member, s) - 0.5) < 0.06


def test_fit_outputs_scores_chunks_as_one_run():
    """The registry's split of a population attack: fitted once, its scorer gives each chunk of
    records exactly the scores one ``score_outputs`` call gives them all."""
    from miaudit.attacks import OutputSignals, PopulationSignals, fit_outputs, score_outputs

    rng = np.random.default_rng(11)
    (pphi, px, py), (phi, x, y) = _records(600, rng), _records(250, rng)
    pop = PopulationSignals({"scaled_logit": pphi}, py, px)
    whole = score_outputs(
        "qmia",
        OutputSignals({"scaled_logit": phi}, y, seed=4, features=x, population=pop),
    ).score
    scorer = fit_outputs("qmia", pop, seed=4)
    chunks = [
        scorer(OutputSignals({"scaled_logit": phi[s]}, y[s], features=x[s])).score
        for s in (slice(0, 100), slice(100, 250))
    ]
    np.testing.assert_array_equal(np.concatenate(chunks), whole)


def test_fit_outputs_checks_the_population_once_and_each_chunk():
    from miaudit.attacks import OutputSignals, PopulationSignals, fit_outputs

    rng = np.random.default_rng(12)
    pphi, px, py = _records(300, rng)
    with pytest.raises(InputError, match=r"population\.features"):
        fit_outputs("qmia", PopulationSignals({"scaled_logit": pphi}, py, px[:, :1][:10]))
    with pytest.raises(InputError, match="does not fit on population records"):
        fit_outputs("loss", PopulationSignals({"scaled_logit": pphi}, py, px))
    scorer = fit_outputs("qmia", PopulationSignals({"scaled_logit": pphi}, py, px), seed=1)
    bad = px[:5].copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="features"):
        scorer(OutputSignals({"scaled_logit": pphi[:5]}, py[:5], features=bad))
    with pytest.raises(InputError, match="columns"):
        scorer(OutputSignals({"scaled_logit": pphi[:5]}, py[:5], features=px[:5, :1]))
    # Red team: these were a ValueError, a UFuncTypeError, a torch RuntimeError, a TypeError.
    for shape in ((1, 1, 8, 8), "abc", (1, 8.5, 8), (0, 8, 8), (True, 8, 8)):
        with pytest.raises(InputError, match=r"image_shape: must be \(C, H, W\)"):
            fit_outputs(
                "qmia", PopulationSignals({"scaled_logit": pphi}, py, px), image_shape=shape
            )
    text = PopulationSignals({"scaled_logit": pphi.astype(str)}, py, px)
    with pytest.raises(InputError, match=r"population\.signals\['scaled_logit'\]: must be numeric"):
        fit_outputs("qmia", text)


def test_large_images_are_pooled_before_the_cnn():
    """Images with a side over 64 pixels are average-pooled to 64 first (1024 × 1024 images took
    7 GB); smaller ones go in as they are, so their fits are unchanged."""
    from torch import nn

    from miaudit.attacks._qmia_net import MAX_SIDE, _network

    settings = ImageRegressorSettings()
    small, large = _network((1, 28, 28), 3, settings), _network((3, 1024, 200), 3, settings)
    assert not any(isinstance(m, nn.AdaptiveAvgPool2d) for m in small)
    pools = [m for m in large if isinstance(m, nn.AdaptiveAvgPool2d)]
    assert len(pools) == 1 and pools[0].output_size == (MAX_SIDE, MAX_SIDE)
    linear = next(m for m in large if isinstance(m, nn.Linear))
    assert linear.in_features == settings.channels[1] * (MAX_SIDE // 4) ** 2
    import torch

    assert large(torch.zeros(2, 3 * 1024 * 200)).shape == (2, 3)
