"""Model adapters: safe files saved by miaudit (skops, safetensors) and an upstream HTTP endpoint."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from miaudit.errors import InputError
from miaudit.serve import (
    EstimatorPredictor,
    ServeConfig,
    TorchMLPPredictor,
    UpstreamPredictor,
    create_app,
    load_predictor,
)
from tests.serve.conftest import N_FEATURES, SECRET, free_port, synthetic

X, _ = synthetic(30, seed=5)


def test_skops_file(model_file, estimator) -> None:
    pred = load_predictor(model_file)
    np.testing.assert_array_equal(pred.predict_proba(X), estimator.predict_proba(X))
    assert pred.n_features == N_FEATURES


def test_sklearn_unit_folder_applies_its_preprocessing(tmp_path, estimator) -> None:
    from miaudit.models import save_sklearn, save_torch_state

    scale = np.stack([np.full(N_FEATURES, 2.0), np.full(N_FEATURES, 0.5)]).astype(np.float32)
    shift = np.stack([np.zeros(N_FEATURES), np.ones(N_FEATURES)]).astype(np.float32)
    save_sklearn(tmp_path / "model_3.skops", estimator)
    save_sklearn(tmp_path / "model_7.skops", estimator)
    save_torch_state(
        tmp_path / "preprocess.safetensors", {"preprocess.scale": scale, "preprocess.shift": shift}
    )
    pred = load_predictor(tmp_path, index=7)
    np.testing.assert_allclose(
        pred.predict_proba(X), estimator.predict_proba(X * 0.5 + 1.0), rtol=1e-6
    )
    with pytest.raises(InputError, match="model_5"):
        load_predictor(tmp_path, index=5)


@pytest.mark.parametrize(
    "pre",
    [
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ",
        {"preprocess.scale": np.ones((1, N_FEATURES))},
        {"preprocess.scale": np.ones((1, 1)), "preprocess.shift": np.zeros((1, 1))},
        {"preprocess.scale": np.ones((1, N_FEATURES, 2)), "preprocess.shift": np.zeros((1, 6))},
        {
            "preprocess.scale": np.full((1, N_FEATURES), np.nan),
            "preprocess.shift": np.zeros((1, 6)),
        },
        {"preprocess.scale": np.ones((0, N_FEATURES)), "preprocess.shift": np.zeros((0, 6))},
    ],
    ids=["garbage", "no-shift", "one-column", "rank-3", "nan", "no-rows"],
)
def test_a_bad_unit_standardisation_is_one_line(tmp_path, estimator, pre) -> None:
    """Red team: each was an internal error (exit 1), or served 4 rows per record (rank 3)."""
    from miaudit.models import save_sklearn, save_torch_state

    save_sklearn(tmp_path / "model_0.skops", estimator)
    save_sklearn(tmp_path / "model_x.skops", estimator)  # not a model of the unit: ignored
    target = tmp_path / "preprocess.safetensors"
    if isinstance(pre, bytes):
        target.write_bytes(pre)
    else:
        save_torch_state(target, {k: v.astype(np.float32) for k, v in pre.items()})
    with pytest.raises(InputError, match=r"preprocess\.safetensors") as err:
        load_predictor(tmp_path, index=0)
    assert err.value.field == "--model" and "\n" not in str(err.value)


def test_torch_mlp_unit_matches_the_stacked_net(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from miaudit.models import MLPRecipe, save_torch_state
    from miaudit.models._nets import StackedMLP

    recipe = MLPRecipe(hidden=[8, 5])
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    net = StackedMLP(recipe, N_FEATURES, 3, gens)
    scale = np.random.default_rng(0).uniform(0.5, 2, size=(2, N_FEATURES)).astype(np.float32)
    shift = np.random.default_rng(1).normal(size=(2, N_FEATURES)).astype(np.float32)
    state = {**net.state_dict(), "preprocess.scale": scale, "preprocess.shift": shift}
    meta = {"models": json.dumps([10, 11]), "recipe": recipe.model_dump_json()}
    save_torch_state(tmp_path / "weights.safetensors", state, meta)
    pred = load_predictor(tmp_path, index=11)
    assert isinstance(pred, TorchMLPPredictor)
    xs = (X * scale[1] + shift[1]).astype(np.float32)
    with torch.no_grad():
        logits = net.forward(torch.from_numpy(np.stack([xs, xs])))[1].numpy()
    want = np.exp(logits - logits.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    np.testing.assert_allclose(pred.predict_proba(X), want, atol=1e-5)


@pytest.mark.parametrize(
    ("privacy", "warned"),
    [
        (None, False),  # not DP-trained
        ([{"epsilon": 2.0}, {"epsilon": 2.0}], True),  # written before the field: seeded
        ([{"epsilon": 2.0, "randomness": "seeded"}] * 2, True),
        ([{"epsilon": 2.0, "randomness": "secret"}] * 2, False),
        ([{"epsilon": 2.0, "randomness": "secret", "fault_injection": "zero_noise"}] * 2, True),
    ],
)
def test_a_dp_unit_with_replayable_noise_is_served_with_a_warning(tmp_path, privacy, warned):
    """Seeded DP noise is replayed by whoever knows the seed (every results file states it):
    its ε does not hold for a model served to others (red team)."""
    torch = pytest.importorskip("torch")
    from miaudit.models import MLPRecipe, save_torch_state
    from miaudit.models._nets import StackedMLP

    recipe = MLPRecipe(hidden=[4])
    net = StackedMLP(recipe, N_FEATURES, 3, [torch.Generator().manual_seed(s) for s in (1, 2)])
    ones, zeros = np.ones((2, N_FEATURES), np.float32), np.zeros((2, N_FEATURES), np.float32)
    state = {**net.state_dict(), "preprocess.scale": ones, "preprocess.shift": zeros}
    meta = {"models": "[0, 1]", "recipe": recipe.model_dump_json()}
    if privacy is not None:
        meta["privacy"] = json.dumps(privacy)
    save_torch_state(tmp_path / "weights.safetensors", state, meta)
    said = load_predictor(tmp_path, index=1).warnings
    assert bool(said) == warned
    fault = privacy is not None and privacy[0].get("fault_injection")
    assert not said or ("void" in said[0] if fault else 'randomness = "secret"' in said[0])


def test_no_model_is_a_named_input_error(tmp_path) -> None:
    with pytest.raises(InputError) as err:
        load_predictor(tmp_path / "missing.pkl")
    assert err.value.field == "--model"
    (tmp_path / "evil.skops").write_bytes(b"not a zip")
    with pytest.raises(Exception):  # noqa: B017, PT011 - skops refuses it; never unpickled
        load_predictor(tmp_path / "evil.skops")


def test_estimator_without_predict_proba() -> None:
    with pytest.raises(InputError):
        EstimatorPredictor(object())


def test_upstream_proxy_through_a_real_unguarded_server(estimator, tmp_path) -> None:
    import uvicorn

    app = create_app(
        ServeConfig(
            predictor=EstimatorPredictor(estimator),
            db=f"sqlite:///{tmp_path}/u.db",
            secret=SECRET,
            guard=False,
        )
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        up = UpstreamPredictor(
            f"http://127.0.0.1:{port}/predict", n_features=N_FEATURES, timeout=5.0
        )
        np.testing.assert_allclose(up.predict_proba(X), estimator.predict_proba(X))
        guarded = create_app(
            ServeConfig(predictor=up, db=f"sqlite:///{tmp_path}/g.db", secret=SECRET)
        )
        from miaudit.serve import asgi_client

        tok = guarded.state.store.create_key(SECRET, "public").token
        with asgi_client(guarded) as c:
            r = c.post(
                "/predict",
                json={"records": X[:4].tolist()},
                headers={"Authorization": f"Bearer {tok}"},
            )
        assert (
            r.status_code == 200
            and [p["label"] for p in r.json()["predictions"]] == estimator.predict(X[:4]).tolist()
        )
        guarded.state.store.close()
        bad = UpstreamPredictor(f"http://127.0.0.1:{free_port()}/predict", timeout=1.0)
        from miaudit.serve._predictor import UpstreamError

        with pytest.raises(UpstreamError) as refused:
            bad.predict_proba(X[:1])
        assert refused.value.sent is False  # no connection: nothing reached it (refunded)
        up.close()
        bad.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
