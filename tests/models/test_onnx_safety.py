"""ONNX files are data (docs/security.md, "ONNX files"): a scikit-learn pipeline converted by
skl2onnx and a torch module exported by torch load and predict as the originals do; crafted
files (a custom operator domain, onnxruntime's contrib EPContext, a custom op hidden in a
subgraph or a model-local function, tensors kept in external files, truncated and garbage bytes,
an oversized file, inputs and outputs of the wrong type or shape) are refused with one line
naming the input, by the Python loader, ``ExternalTarget.from_onnx``, the service's loader and
``miaudit serve --model`` (exit 2, nothing written).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper

from miaudit.audit import ExternalTarget
from miaudit.errors import InputError
from miaudit.models import OnnxModel, check_onnx_bytes, load_onnx
from tests.onnx_models import export_onnx

OPSET = [helper.make_opsetid("", 17)]
W = np.arange(6, dtype=np.float32).reshape(3, 2) / 10


def _model(nodes, *, inputs=None, outputs=None, initializers=(), opsets=OPSET, **kw) -> bytes:
    """A graph ``X (n, 3) float → Y (n, 2)`` around ``nodes`` (IR 8: every onnxruntime reads it)."""
    graph = helper.make_graph(
        nodes,
        "g",
        inputs or [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
        outputs or [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 2])],
        initializer=list(initializers),
        **kw,
    )
    model = helper.make_model(graph, opset_imports=opsets, ir_version=8)
    return model.SerializeToString()


def _plain() -> bytes:
    return _model(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        initializers=[numpy_helper.from_array(W, "W")],
    )


def _external_initializer(location: str) -> bytes:
    w = numpy_helper.from_array(W, "W")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(W.nbytes))):
        w.external_data.add(key=key, value=value)
    return _model([helper.make_node("MatMul", ["X", "W"], ["Y"])], initializers=[w])


def _custom_domain() -> bytes:
    return _model(
        [helper.make_node("Evil", ["X"], ["Y"], domain="mia.evil")],
        opsets=[*OPSET, helper.make_opsetid("mia.evil", 1)],
    )


def _ep_context() -> bytes:
    """onnxruntime's contrib EPContext: its ep_cache_context may name a file to read."""
    node = helper.make_node(
        "EPContext", ["X"], ["Y"], domain="com.microsoft", embed_mode=0, ep_cache_context="../x.bin"
    )
    return _model([node], opsets=[*OPSET, helper.make_opsetid("com.microsoft", 1)])


def _custom_op_in_subgraph() -> bytes:
    then = helper.make_graph(
        [helper.make_node("Evil", ["X"], ["T"], domain="mia.evil")],
        "then",
        [],
        [helper.make_tensor_value_info("T", TensorProto.FLOAT, [None, 2])],
    )
    other = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["E"])],
        "else",
        [],
        [helper.make_tensor_value_info("E", TensorProto.FLOAT, [None, 2])],
    )
    cond = numpy_helper.from_array(np.array(True), "C")
    node = helper.make_node("If", ["C"], ["Y"], then_branch=then, else_branch=other)
    return _model([node], initializers=[cond, numpy_helper.from_array(W, "W")])


def _custom_function() -> bytes:
    """A model-local function in the standard domain whose body calls a custom operator."""
    fn = helper.make_function(
        "",
        "Wrapped",
        ["A"],
        ["B"],
        [helper.make_node("Evil", ["A"], ["B"], domain="mia.local")],
        [*OPSET, helper.make_opsetid("mia.local", 1)],
    )
    graph = helper.make_graph(
        [helper.make_node("Wrapped", ["X"], ["Y"], domain="")],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 3])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[*OPSET, helper.make_opsetid("mia.local", 1)],
        functions=[fn],
        ir_version=8,
    )
    return model.SerializeToString()


def _external_attribute_tensor() -> bytes:
    value = numpy_helper.from_array(W, "w")
    value.ClearField("raw_data")
    value.data_location = TensorProto.EXTERNAL
    value.external_data.add(key="location", value="/etc/hostname")
    nodes = [
        helper.make_node("Constant", [], ["W"], value=value),
        helper.make_node("MatMul", ["X", "W"], ["Y"]),
    ]
    return _model(nodes)


def _typed_input(elem: int, shape: list) -> bytes:
    x = helper.make_tensor_value_info("X", elem, shape)
    y = helper.make_tensor_value_info("Y", elem, shape)
    return _model([helper.make_node("Identity", ["X"], ["Y"])], inputs=[x], outputs=[y])


CRAFTED = {
    "custom-domain": (_custom_domain, "operator domain 'mia.evil'"),
    "contrib-ep-context": (_ep_context, "operator domain 'com.microsoft'"),
    "custom-op-in-subgraph": (_custom_op_in_subgraph, "operator domain 'mia.evil'"),
    "custom-function": (_custom_function, "operator domain 'mia.local'"),
    "external-data-outside": (lambda: _external_initializer("../outside.bin"), "external data"),
    "external-data-beside": (lambda: _external_initializer("w.bin"), "external data"),
    "external-attribute-tensor": (_external_attribute_tensor, "external data"),
    "truncated": (lambda: _plain()[: len(_plain()) // 2], "truncated or not an ONNX file"),
    "garbage": (lambda: bytes(range(7, 250)) * 4, "ONNX"),
    "empty": (lambda: b"", "holds no graph"),
    "int64-input": (
        lambda: _typed_input(TensorProto.INT64, [None, 3]),
        "input 'X' is tensor(int64)",
    ),
    "rank-3-input": (lambda: _typed_input(TensorProto.FLOAT, [None, 3, 1]), "input 'X' has shape"),
    # Red team: a fixed batch (an export without dynamic axes) passed the load's 2-record trial,
    # then raised onnxruntime's own error on any other count.
    "fixed-batch": (lambda: _typed_input(TensorProto.FLOAT, [2, 3]), "takes exactly 2 records"),
    "zipmap": (None, "ZipMap"),
}


@pytest.fixture(scope="module")
def sklearn_pipeline():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4))
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y), x


def _skl2onnx(pipeline, x, **options) -> bytes:
    from skl2onnx import to_onnx

    return to_onnx(pipeline, x[:1].astype(np.float32), options=options).SerializeToString()


def _crafted(kind: str, sklearn_pipeline) -> bytes:
    build = CRAFTED[kind][0]
    if build is None:  # skl2onnx's default output: a list of {class: probability} dicts
        return _skl2onnx(*sklearn_pipeline)
    return build()


def test_sklearn_pipeline_through_skl2onnx(sklearn_pipeline, tmp_path) -> None:
    pipeline, x = sklearn_pipeline
    path = tmp_path / "pipeline.onnx"
    path.write_bytes(_skl2onnx(pipeline, x, zipmap=False))
    model = load_onnx(path, n_features=4, n_classes=3)
    assert (model.kind, model.n_features, model.n_classes) == ("probs", 4, 3)
    np.testing.assert_allclose(model.predict_proba(x), pipeline.predict_proba(x), atol=1e-5)
    target = ExternalTarget.from_onnx(path, x, np.arange(10))
    assert target.kind == "probs" and target.outputs.shape == (120, 3)


def test_torch_module_through_torch_onnxexport_onnx(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    path = export_onnx(net, tmp_path / "net.onnx")
    x = np.random.default_rng(1).normal(size=(5000, 4))  # over one onnxruntime batch
    with torch.no_grad():
        logits = net(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
    model = load_onnx(path)
    assert isinstance(model, OnnxModel) and model.kind == "logits" and model.n_classes == 3
    np.testing.assert_allclose(model.outputs(x), logits, atol=1e-5)
    probs = model.predict_proba(x)
    np.testing.assert_allclose(probs, torch.softmax(torch.as_tensor(logits), 1).numpy(), atol=1e-6)
    target = ExternalTarget.from_onnx(path, x, np.arange(3))
    assert target.kind == "logits"
    np.testing.assert_allclose(target.outputs, logits, atol=1e-5)


@pytest.mark.parametrize("kind", sorted(CRAFTED))
def test_crafted_file_is_refused_by_every_loader(kind, sklearn_pipeline, tmp_path) -> None:
    from miaudit.serve import load_predictor

    path = tmp_path / "evil.onnx"
    path.write_bytes(_crafted(kind, sklearn_pipeline))
    (tmp_path / "w.bin").write_bytes(W.tobytes())
    expected = re.escape(CRAFTED[kind][1])
    features = np.zeros((4, 4 if kind == "zipmap" else 3))  # the width each graph declares
    for call, field in (
        (lambda: load_onnx(path), "model"),
        (lambda: ExternalTarget.from_onnx(path, features, np.arange(2)), "model"),
        (lambda: load_predictor(path), "--model"),
    ):
        with pytest.raises(InputError, match=expected) as err:
            call()
        assert err.value.field == field and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "kind", ["custom-domain", "external-data-outside", "truncated", "int64-input"]
)
def test_serve_refuses_in_one_line_and_writes_nothing(
    kind, sklearn_pipeline, tmp_path, monkeypatch, capsys
) -> None:
    from miaudit.cli import main

    model = tmp_path / "model" / "evil.onnx"
    model.parent.mkdir()
    model.write_bytes(_crafted(kind, sklearn_pipeline))
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.chdir(state)
    monkeypatch.setattr(
        sys, "argv", ["miaudit", "serve", "--model", str(model), "--port", "0"]
    )  # the default database and secret would go to the current folder
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --model: evil.onnx") or "--model: evil.onnx" in err, err
    assert len(err.splitlines()) == 1 and CRAFTED[kind][1] in err
    assert list(state.iterdir()) == [] and [p.name for p in model.parent.iterdir()] == ["evil.onnx"]


def test_external_data_is_a_real_vector(tmp_path) -> None:
    """The control: onnxruntime, given the file's path, reads the tensor from the file the model
    names; miaudit refuses before onnxruntime sees the model."""
    path = tmp_path / "m.onnx"
    path.write_bytes(_external_initializer("w.bin"))
    (tmp_path / "w.bin").write_bytes((W * 7).tobytes())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"X": np.eye(3, dtype=np.float32)})[0]
    np.testing.assert_allclose(out, W * 7)
    with pytest.raises(InputError, match="external data"):
        load_onnx(path)


def test_size_cap_and_shape_checks(sklearn_pipeline, tmp_path) -> None:
    pipeline, x = sklearn_pipeline
    path = tmp_path / "pipeline.onnx"
    path.write_bytes(_skl2onnx(pipeline, x, zipmap=False))
    with pytest.raises(InputError, match="limit is"):
        load_onnx(path, max_bytes=100)
    with pytest.raises(InputError, match="expects 4 features per record; the data have 5"):
        load_onnx(path, n_features=5)
    with pytest.raises(InputError, match="gives 3 class scores; the data have 2 classes"):
        load_onnx(path, n_classes=2)
    with pytest.raises(InputError, match="has no output 'nope'"):
        load_onnx(path, output="nope")
    model = load_onnx(path)
    with pytest.raises(InputError, match=r"takes \(records, 4\)") as err:
        model.predict_proba(np.zeros((2, 5)))
    assert err.value.field == "features"
    with pytest.raises(InputError, match="cannot read"):
        load_onnx(tmp_path / "missing.onnx")


def test_one_class_score_and_two_outputs_are_refused(tmp_path) -> None:
    one = tmp_path / "one.onnx"
    one.write_bytes(
        _model(
            [helper.make_node("MatMul", ["X", "W"], ["Y"])],
            outputs=[helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])],
            initializers=[numpy_helper.from_array(W[:, :1], "W")],
        )
    )
    with pytest.raises(InputError, match="gives 1 class scores"):
        load_onnx(one)
    two = tmp_path / "two.onnx"
    two.write_bytes(
        _model(
            [helper.make_node("MatMul", ["X", "W"], ["Y"]), helper.make_node("Neg", ["Y"], ["Z"])],
            outputs=[
                helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 2]),
                helper.make_tensor_value_info("Z", TensorProto.FLOAT, [None, 2]),
            ],
            initializers=[numpy_helper.from_array(W, "W")],
        )
    )
    with pytest.raises(InputError, match="has 2 float"):
        load_onnx(two)
    assert load_onnx(two, output="Z", kind="probs").kind == "probs"


def test_walk_refuses_malformed_protobuf() -> None:
    good = _plain()
    check_onnx_bytes(good)
    for bad, why in (
        (good + b"\x0b", "malformed"),  # a group start: not in ONNX's schema
        (b"\x3a\x05\x0a\x03", "truncated"),  # a graph field longer than the file
        (b"\x3a" + b"\xff" * 11, "malformed"),  # a length varint over ten bytes
        (b"\x38\x01", "wrong encoding"),  # the graph field as a number
    ):
        with pytest.raises(ValueError, match=why):
            check_onnx_bytes(bad)


def test_session_runs_with_one_thread_and_no_files(tmp_path, monkeypatch) -> None:
    """The session's options: one intra-op thread, no profile or optimised-model file."""
    seen = {}
    real = ort.InferenceSession

    def spy(data, sess_options=None, providers=None):
        seen.update(
            threads=sess_options.intra_op_num_threads,
            profiling=sess_options.enable_profiling,
            optimized=sess_options.optimized_model_filepath,
            fmt=sess_options.get_session_config_entry("session.load_model_format"),
            providers=providers,
            data_is_bytes=isinstance(data, bytes),
        )
        return real(data, sess_options=sess_options, providers=providers)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    path = tmp_path / "m.onnx"
    path.write_bytes(_plain())
    monkeypatch.chdir(tmp_path)
    load_onnx(path)
    assert seen == {
        "threads": 1,
        "profiling": False,
        "optimized": "",
        "fmt": "ONNX",
        "providers": ["CPUExecutionProvider"],
        "data_is_bytes": True,
    }
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["m.onnx"]


def _scores(path: Path, last: str | None, output: str) -> Path:
    """``X @ W + B`` (a bias with a negative entry), then ``last`` (Softmax, LogSoftmax or
    nothing), as the graph's one output named ``output``."""
    nodes = [
        helper.make_node("MatMul", ["X", "W"], ["M"]),
        helper.make_node("Add", ["M", "B"], ["S"]),
    ]
    if last is None:
        nodes.append(helper.make_node("Identity", ["S"], [output]))
    else:
        nodes.append(helper.make_node(last, ["S"], [output], axis=1))
    path.write_bytes(
        _model(
            nodes,
            outputs=[helper.make_tensor_value_info(output, TensorProto.FLOAT, [None, 2])],
            initializers=[
                numpy_helper.from_array(W, "W"),
                numpy_helper.from_array(np.array([0.5, -1.0], dtype=np.float32), "B"),
            ],
        )
    )
    return path


def test_a_softmax_output_not_named_as_probabilities_is_refused(tmp_path) -> None:
    """Red team (own model, finding 2a): a torch export ending in a softmax, its output named
    "output", was read as logits, and its probabilities went through a softmax again (AUCs
    moved, nothing printed). The trial batch shows rows ≥ 0 summing to 1: refused, naming the
    way to say it; with ``kind="probs"`` the file loads as probabilities."""
    path = _scores(tmp_path / "softmax.onnx", "Softmax", "output")
    x = np.random.default_rng(0).normal(size=(6, 3))
    for load in (
        lambda: load_onnx(path),
        lambda: ExternalTarget.from_onnx(path, x, np.array([0, 1])),
    ):
        with pytest.raises(InputError) as err:
            load()
        assert err.value.field == "model"
        assert "softmax.onnx's output 'output' gives rows that are non-negative and sum to 1" in (
            err.value.problem
        )
        assert "pass kind='probs'" in err.value.problem
        assert "output_names=['probs']" in err.value.problem
    model = load_onnx(path, kind="probs")
    assert model.kind == "probs"
    np.testing.assert_allclose(model.predict_proba(x), model.outputs(x))
    target = ExternalTarget.from_onnx(path, x, np.array([0, 1]), kind="probs")
    assert target.kind == "probs"
    np.testing.assert_allclose(target.outputs.sum(axis=1), 1.0, atol=1e-6)


def test_log_probabilities_by_name_are_logits_and_a_misnamed_output_is_refused(tmp_path) -> None:
    """An output named ``log_probs`` (a LogSoftmax) is read as logits (it was read as
    probabilities, and refused as "negative probability"); an output named as probabilities
    that gives negative values is refused at load, naming ``kind='logits'``."""
    x = np.random.default_rng(1).normal(size=(5, 3))
    log_probs = load_onnx(_scores(tmp_path / "lp.onnx", "LogSoftmax", "log_probs"))
    assert (log_probs.kind, log_probs.output_name) == ("logits", "log_probs")
    plain = load_onnx(_scores(tmp_path / "plain.onnx", None, "logits"))
    np.testing.assert_allclose(log_probs.predict_proba(x), plain.predict_proba(x), atol=1e-6)
    named = _scores(tmp_path / "named.onnx", None, "probs")
    with pytest.raises(InputError) as err:
        load_onnx(named)
    assert err.value.field == "model"
    assert "named.onnx's output 'probs' is named as probabilities but gives negative values" in (
        err.value.problem
    )
    assert "pass kind='logits'" in err.value.problem
    assert load_onnx(named, kind="logits").kind == "logits"


def test_per_class_sigmoids_named_as_logits_are_refused_on_the_records(tmp_path) -> None:
    """Red team: a torch module ending in ``nn.Sigmoid`` (a multi-label or one-vs-rest head),
    exported with ``output_names=["logits"]``, loaded as logits, and its values in (0, 1) went
    through a softmax (every signal wrong, nothing said). On the audited records it is refused
    naming the file and the fix; the same network without the sigmoid loads; fewer than
    ``MIN_SIGMOID_ROWS`` records are too few to tell and pass."""
    torch = pytest.importorskip("torch")
    from miaudit.models import MIN_SIGMOID_ROWS

    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    sig = export_onnx(
        torch.nn.Sequential(body, torch.nn.Sigmoid()), tmp_path / "sig.onnx", "logits"
    )
    x = np.random.default_rng(2).normal(size=(200, 4))
    assert load_onnx(sig).kind == "logits"  # the trial batch: two zero records, too few
    with pytest.raises(InputError) as err:
        ExternalTarget.from_onnx(sig, x, np.arange(3))
    assert err.value.field == "model" and "\n" not in err.value.problem
    assert "sig.onnx's output 'logits' gives values all in [0, 1] on 200 records" in (
        err.value.problem
    )
    assert "per-class sigmoid probabilities" in err.value.problem
    assert "without its final nn.Sigmoid" in err.value.problem
    with pytest.raises(InputError, match="per-class sigmoid"):
        load_onnx(sig, kind="logits").record_outputs(x)
    few = ExternalTarget.from_onnx(sig, x[: MIN_SIGMOID_ROWS - 1], np.arange(3))
    assert few.kind == "logits"
    plain = export_onnx(body, tmp_path / "plain.onnx", "logits")
    target = ExternalTarget.from_onnx(plain, x, np.arange(3))
    with torch.no_grad():
        logits = body(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(target.outputs, logits, atol=1e-5)
