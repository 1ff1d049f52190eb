"""``miaudit serve`` with the user's own runtime: an ONNX file, and a torch module built by the
user's factory (trusted code, ``--trust-code``) from safetensors weights."""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from miaudit.errors import InputError
from miaudit.models import save_torch_state
from miaudit.serve import ServeSpec, load_predictor
from tests.onnx_models import export_onnx

FACTORY = """
import torch


def build(n_features, n_classes, hidden=8):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(n_features, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, n_classes)
    )
"""


@pytest.fixture
def factory(plant_module):
    name, trace = plant_module(FACTORY)
    return f"{name}:build", trace


@pytest.fixture
def weights(tmp_path):
    """Weights of the factory's module with hidden=5, n_features=4, n_classes=3, recorded in the
    file's metadata."""
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    path = tmp_path / "weights.safetensors"
    save_torch_state(path, net.state_dict(), metadata={"n_features": "4", "n_classes": "3"})
    return path, net


def _serve(monkeypatch, *args: str):
    """Run ``miaudit serve``; the spec that would go to uvicorn's workers, or the SystemExit."""
    from miaudit.cli import _serve, main

    captured = {}
    monkeypatch.setattr(_serve, "_run_workers", lambda spec, **_: captured.setdefault("spec", spec))
    monkeypatch.setattr(sys, "argv", ["miaudit", "serve", *args, "--port", "0"])
    main()
    return captured["spec"]


def test_onnx_model_answers_predict(make_service, tmp_path) -> None:
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    from tests.serve.conftest import synthetic

    x, y = synthetic()
    forest = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(x, y)
    path = tmp_path / "forest.onnx"
    path.write_bytes(
        to_onnx(forest, x[:1].astype(np.float32), options={"zipmap": False}).SerializeToString()
    )
    svc = make_service(predictor=load_predictor(path))
    token = svc.token("trusted")  # policy "full": the model's own probabilities
    r = svc.post(token, json={"records": x[:5].tolist()})
    assert r.status_code == 200, r.text
    got = np.asarray([p["scores"] for p in r.json()["predictions"]])
    np.testing.assert_allclose(got, forest.predict_proba(x[:5]), atol=1e-5)
    r = svc.post(token, json={"records": [[0.0] * 5]})
    assert r.status_code == 422  # the width comes from the ONNX graph


def test_factory_without_trust_is_refused_and_runs_nothing(
    factory, weights, tmp_path, monkeypatch, capsys
) -> None:
    name, trace = factory
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(SystemExit) as exit_:
        _serve(monkeypatch, "--model", str(weights[0]), "--factory", name)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--factory" in err and "--trust-code" in err
    assert not trace.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_factory_with_trust_serves_the_module(factory, weights, tmp_path, monkeypatch) -> None:
    name, trace = factory
    monkeypatch.chdir(tmp_path)
    spec = _serve(
        monkeypatch,
        "--model",
        str(weights[0]),
        "--factory",
        name,
        "--params",
        json.dumps({"hidden": 5}),
        "--trust-code",
        "--db",
        f"sqlite:///{tmp_path / 'g.db'}",
    )
    assert trace.exists() and spec.trust_code and spec.params == {"hidden": 5}
    spec = ServeSpec.from_json(spec.to_json())  # as a uvicorn worker reads it
    predictor = spec.build().predictor
    x = np.random.default_rng(0).normal(size=(7, 4))
    with torch.no_grad():
        expected = torch.softmax(weights[1](torch.as_tensor(x, dtype=torch.float32)), 1).numpy()
    assert predictor.n_features == 4
    np.testing.assert_allclose(predictor.predict_proba(x), expected, atol=1e-6)


def test_factory_params_from_a_toml_file(factory, weights, tmp_path, monkeypatch) -> None:
    name, _ = factory
    (tmp_path / "params.toml").write_text("hidden = 5\n")
    monkeypatch.chdir(tmp_path)
    spec = _serve(
        monkeypatch,
        "--model",
        str(weights[0]),
        "--factory",
        name,
        "--params",
        "params.toml",
        "--trust-code",
    )
    assert spec.params == {"hidden": 5}
    (tmp_path / "dated.toml").write_text("hidden = 5\nwhen = 2026-12-06\n")
    with pytest.raises(SystemExit) as exit_:
        _serve(monkeypatch, "--model", str(weights[0]), "--factory", name, "--params", "dated.toml")
    assert exit_.value.code == 2


@pytest.mark.parametrize(
    "args, field, words",
    [
        ((), "--factory", "holds weights only"),
        (("--factory", "{f}", "--trust-code"), "--model", "does not fit"),  # hidden=8 ≠ 5
        (("--factory", "{f}", "--trust-code", "--params", "[1]"), "--params", "JSON object"),
        (("--factory", "{f}", "--trust-code", "--params", '{"depth": 2}'), "--params", "refused"),
        (("--factory", "nocolon", "--trust-code"), "--factory", "package.module:function"),
        (("--params", "{}"), "--factory", "give --factory"),
        (
            ("--factory", "{f}", "--trust-code", "--n-classes", "4", "--params", '{"hidden": 5}'),
            "--model",
            "does not fit",
        ),
    ],
)
def test_factory_bad_inputs_name_the_option(
    factory, weights, tmp_path, monkeypatch, capsys, args, field, words
) -> None:
    name, _ = factory
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        _serve(monkeypatch, "--model", str(weights[0]), *(a.replace("{f}", name) for a in args))
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{field}:" in err and words in err, err
    assert not (tmp_path / "guard.db").exists()


def test_sizes_come_from_options_when_the_file_has_no_metadata(factory, tmp_path) -> None:
    name, _ = factory
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    path = tmp_path / "w.safetensors"
    save_torch_state(path, net.state_dict())
    from miaudit.serve import ModuleSource

    with pytest.raises(InputError, match="does not record it") as err:
        load_predictor(path, module=ModuleSource(name, trust_code=True))
    assert err.value.field == "--n-features"
    module = ModuleSource(name, n_features=4, n_classes=2, trust_code=True)
    assert load_predictor(path, module=module).n_features == 4


@pytest.mark.parametrize("claimed", ["\u00b2", "250000000", "0", "-3", " 4", "9999999"])
def test_metadata_sizes_that_are_not_counts_are_refused_before_the_factory_runs(
    factory, tmp_path, claimed
) -> None:
    """Red team: a 224-byte file claiming 250 million features had the factory allocate 2.2 GB
    before its weights were checked; "²" passed str.isdigit and failed int() (exit 1)."""
    from safetensors.torch import save_file

    name, _ = factory
    path = tmp_path / "w.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"n_features": claimed, "n_classes": "2"})
    from miaudit.serve import ModuleSource

    with pytest.raises(InputError, match="not a count from 1 to 9,999,999 within"):
        load_predictor(path, module=ModuleSource(name, trust_code=True))


def test_weights_giving_non_finite_logits_are_refused(factory, tmp_path) -> None:
    name, _ = factory
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    with torch.no_grad():
        net[2].bias.fill_(float("nan"))
    path = tmp_path / "w.safetensors"
    save_torch_state(path, net.state_dict())
    from miaudit.serve import ModuleSource

    module = ModuleSource(name, n_features=4, n_classes=2, trust_code=True)
    with pytest.raises(InputError, match="not finite"):
        load_predictor(path, module=module)


def test_a_softmax_onnx_export_is_served_once_its_output_is_said(
    tmp_path, monkeypatch, capsys
) -> None:
    """A torch export ending in a softmax, its output named "output": read as logits it would go
    through a softmax twice, so it is refused, naming --model-output; with --model-output probs
    it serves the module's own probabilities."""
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(dim=1))
    path = tmp_path / "soft.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, and offline
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, torch.zeros(1, 4), str(path), input_names=["x"], output_names=["output"],
            dynamic_axes={"x": {0: "n"}, "output": {0: "n"}}, dynamo=False,
        )  # fmt: skip
    with pytest.raises(InputError, match=r"^--model: .*--model-output probs"):
        ServeSpec(db="sqlite:///x.db", model=str(path)).build_predictor()
    spec = ServeSpec(db="sqlite:///x.db", model=str(path), model_output="probs")
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(spec.build_predictor().predict_proba(x), want, atol=1e-5)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        _serve(monkeypatch, "--model", str(tmp_path / "m.skops"), "--model-output", "probs")
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--model-output: applies to an .onnx --model only" in err


def test_a_sigmoid_onnx_export_named_logits_is_refused_on_the_calibration_records(
    tmp_path, monkeypatch, capsys
) -> None:
    """A multi-label head (``nn.Sigmoid``) exported as "logits": its load sees two zero records,
    too few to tell, and the service would answer a softmax of sigmoid values. The detectors'
    calibration records are benign records the model is run on before serving: there it is
    refused, exit 2, naming --model, and nothing is written."""
    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    path = export_onnx(torch.nn.Sequential(body, torch.nn.Sigmoid()), tmp_path / "sig.onnx")
    benign = tmp_path / "benign.npz"
    np.savez(benign, features=np.random.default_rng(3).normal(size=(300, 4)))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        _serve(monkeypatch, "--model", str(path), "--detector-calibration", str(benign))
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--model: " in err and "per-class sigmoid" in err
    assert not list(tmp_path.glob("*.db")) and not list(tmp_path.glob("*.secret"))


def test_a_served_torch_module_ending_in_a_sigmoid_or_softmax_is_refused() -> None:
    """The user's module is served as a softmax of its outputs: sigmoid values or probabilities
    would be answered wrong. On benign records both are refused naming --model; logits pass."""
    from miaudit.serve import TorchModulePredictor, check_served_outputs

    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    x = np.random.default_rng(4).normal(size=(300, 4))
    for head, why in (
        (torch.nn.Sigmoid(), "per-class sigmoid"),
        (torch.nn.Softmax(dim=1), "twice"),
    ):
        with pytest.raises(InputError, match=why) as err:
            check_served_outputs(TorchModulePredictor(torch.nn.Sequential(body, head), 4), x)
        assert err.value.field == "--model"
    check_served_outputs(TorchModulePredictor(body, 4), x)
