"""Crafted ``.skops`` files: one per node kind skops has, each carrying a payload that leaves a
trace (a file written by the payload's import or call). Every one is refused by every entry point
that reads model files, with one line naming the file and the untrusted types; and every one is
a real exploit: skops itself, told to trust what the file names, runs the payload (the control).
"""

from __future__ import annotations

import copy
import io
import json
import sys
import types
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest

sio = pytest.importorskip("skops.io")

from miaudit.errors import InputError
from miaudit.models import load_sklearn, save_sklearn
from miaudit.models._skops_policy import allowed_types, untrusted_types


@pytest.fixture(scope="module")
def fitted():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] > 0).astype(int)
    return LogisticRegression().fit(x, y), x


@pytest.fixture
def payload(plant_module):
    """A module whose import, calls and instances write the trace file."""
    name, trace = plant_module(
        "def run(*args, **kwargs):\n    TRACE.write_text('called')\n    return ()\n"
        "class Evil:\n"
        "    def __init__(self, *a, **k):\n        TRACE.write_text('init')\n"
        "    def __setstate__(self, state):\n        TRACE.write_text('setstate')\n"
        "    def __call__(self, *a, **k):\n        TRACE.write_text('call')\n"
    )
    return types.SimpleNamespace(module=name, trace=trace)


def _schema_and_files(est) -> tuple[dict, dict[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(sio.dumps(est))) as zf:
        return json.loads(zf.read("schema.json")), {
            n: zf.read(n) for n in zf.namelist() if n != "schema.json"
        }


def _pack(schema: dict, files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("schema.json", json.dumps(schema))
        for n, b in files.items():
            zf.writestr(n, b)
    return buf.getvalue()


def _json(value) -> dict:
    return {
        "__class__": "str",
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": json.dumps(value),
        "is_json": True,
    }


def _tuple(*items) -> dict:
    return {
        "__class__": "tuple",
        "__module__": "builtins",
        "__loader__": "TupleNode",
        "content": list(items),
    }


def _dict(**items) -> dict:
    return {
        "__class__": "dict",
        "__module__": "builtins",
        "__loader__": "DictNode",
        "content": items,
        "key_types": {
            "__class__": "list",
            "__module__": "builtins",
            "__loader__": "ListNode",
            "content": [{"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode"}]
            * len(items),
        },
    }


def _node(loader: str, module: str, cls: str, **rest) -> dict:
    return {"__class__": cls, "__module__": module, "__loader__": loader, **rest}


def _array_node(files: dict[str, bytes], module: str = "numpy", cls: str = "ndarray") -> dict:
    name = f"{uuid.uuid4()}.npy"
    buf = io.BytesIO()
    np.save(buf, np.arange(3.0), allow_pickle=False)
    files[name] = buf.getvalue()
    return _node("NdArrayNode", module, cls, type="numpy", file=name)


def crafted_nodes(mod: str, files: dict[str, bytes]) -> dict[str, dict]:
    """One crafted node per node kind: what is planted as an attribute of a working model."""
    fn = _node("FunctionNode", mod, "run")
    return {
        "ObjectNode": _node("ObjectNode", mod, "Evil", content=_dict()),
        "ConstructorFromReduceNode": _node(
            "ConstructorFromReduceNode", mod, "run", content=_tuple()
        ),
        "FunctionNode": fn,
        "PartialNode": _node(
            "PartialNode",
            "functools",
            "partial",
            content={"func": fn, "args": _tuple(), "kwds": _dict(), "namespace": _dict()},
        ),
        "MethodNode": _node(
            "MethodNode",
            mod,
            "Evil",
            content={"func": "__call__", "obj": _node("ObjectNode", mod, "Evil")},
        ),
        "OperatorFuncNode": _node(
            "OperatorFuncNode", "operator", "methodcaller", attrs=_tuple(_json("run"))
        ),
        "TypeNode": _node("TypeNode", mod, "Evil"),
        "NdArrayNode": _array_node(files, mod, "run"),
        "DTypeNode": _node("DTypeNode", "numpy", "dtype", content=_array_node(files, mod, "run")),
        "ListNode": _node("ListNode", mod, "run", content=[]),
        "TupleNode": _node("TupleNode", mod, "Evil", content=[]),
        "SetNode": _node("SetNode", mod, "run", content=[]),
        "DictNode": {**_dict(), "__module__": mod, "__class__": "run"},
        "DefaultDictNode": _node(
            "DefaultDictNode",
            "collections",
            "defaultdict",
            content={"main": _dict(), "default_factory": fn},
        ),
        "RandomStateNode": _node("RandomStateNode", mod, "Evil", content=_dict()),
        "LossNode": _node("LossNode", mod, "run", content=_dict(), __reduce__={"args": _tuple()}),
        "TreeNode": _node("TreeNode", mod, "Evil", content=_dict(), __reduce__={"args": _tuple()}),
        "MaskedArrayNode": _node(
            "MaskedArrayNode",
            mod,
            "Evil",
            content={"data": _array_node(files), "mask": _array_node(files)},
        ),
        "SparseMatrixNode": _node(
            "SparseMatrixNode", mod, "Evil", type="scipy", file="missing.npz"
        ),
        "BytesNode": _node("BytesNode", mod, "Evil", file="missing.bin"),
        "BytearrayNode": _node("BytearrayNode", mod, "Evil", file="missing.bin"),
        "SliceNode": _node("SliceNode", mod, "Evil", content={"start": 0, "stop": 1, "step": 1}),
        "JsonNode": _node("JsonNode", mod, "Evil", content="1", is_json=True),
        "UnknownNode": _node("EvilNode", mod, "Evil"),
        # The reported exploit: a numpy *function* that evaluates a string, reached through
        # the old "numpy." prefix rule; its payload writes the trace too (see _runstring).
        "numpy-function": _node(
            "ConstructorFromReduceNode",
            "numpy.testing._private.utils",
            "runstring",
            content=_tuple(
                _json("__import__('pathlib').Path(TRACE).write_text('runstring')"), _json(None)
            ),
        ),
    }


NODE_KINDS = list(crafted_nodes("m", {}))


def crafted_file(est, kind: str, mod: str, trace: Path) -> bytes:
    schema, files = _schema_and_files(est)
    node = crafted_nodes(mod, files)[kind]
    if kind == "numpy-function":
        # runstring(code, dict): the dict is the namespace the code runs in.
        node["content"]["content"][1] = _dict(TRACE=_json(str(trace)))
    schema["content"]["content"]["payload_"] = node
    schema["content"]["key_types"]["content"].append(
        {"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode"}
    )
    return _pack(schema, files)


def _control(data: bytes, trace: Path) -> None:
    """What skops does with the file when told to trust what it names: load, then use any
    callable the model now carries (as a FunctionTransformer would call its ``func``)."""
    try:
        obj = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
        planted = getattr(obj, "payload_", None)
        if callable(planted):
            planted(types.SimpleNamespace(run=lambda: trace.write_text("called")))
    except Exception:  # noqa: S110 - the payload only has to run, not succeed
        pass


#: Node kinds whose loader ignores the class it names (it rebuilds a fixed type), or which fail
#: before using it: no payload can run through them, but the allow-list refuses them all the same.
NO_CODE_PATH = {
    "TreeNode",
    "MaskedArrayNode",
    "SparseMatrixNode",
    "BytesNode",
    "BytearrayNode",
    "SliceNode",
    "JsonNode",
    "UnknownNode",
}


@pytest.mark.parametrize("kind", NODE_KINDS)
def test_crafted_file_is_refused_and_runs_nothing(kind, fitted, payload, tmp_path) -> None:
    est, _x = fitted
    data = crafted_file(est, kind, payload.module, payload.trace)
    path = tmp_path / "model.skops"
    path.write_bytes(data)
    with pytest.raises(InputError) as err:
        load_sklearn(path)
    msg = str(err.value)
    assert "\n" not in msg and "model.skops" in msg
    assert any(name in msg for name in (payload.module, "runstring", "operator.methodcaller")), msg
    assert not payload.trace.exists(), f"the payload ran: {payload.trace.read_text()}"
    if kind not in NO_CODE_PATH:
        _control(data, payload.trace)
        assert payload.trace.exists(), (
            "control: this crafted file does not run its payload under plain skops"
        )


def test_every_entry_point_refuses(fitted, payload, tmp_path, monkeypatch, capsys) -> None:
    """serve --model (file and unit folder), the trade-off's cache read and the Python loader."""
    from miaudit.audit._tradeoff import model_predictor
    from miaudit.cli import main
    from miaudit.models import SklearnRecipe, save_torch_state
    from miaudit.serve import load_predictor

    est, _ = fitted
    data = crafted_file(est, "numpy-function", payload.module, payload.trace)
    (tmp_path / "evil.skops").write_bytes(data)
    unit = tmp_path / "unit"
    unit.mkdir()
    (unit / "model_0.skops").write_bytes(data)
    save_torch_state(
        unit / "preprocess.safetensors",
        {
            "preprocess.scale": np.ones((1, 3), np.float32),
            "preprocess.shift": np.zeros((1, 3), np.float32),
        },
    )
    run = types.SimpleNamespace(
        model_location=lambda m: (unit, 0), config=types.SimpleNamespace(model=SklearnRecipe())
    )
    calls = [
        lambda: load_sklearn(tmp_path / "evil.skops"),
        lambda: load_predictor(tmp_path / "evil.skops"),
        lambda: load_predictor(unit),
        lambda: model_predictor(run, 0),
    ]
    for call in calls:
        with pytest.raises(InputError, match="runstring"):
            call()
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "miaudit",
            "serve",
            "--model",
            str(tmp_path / "evil.skops"),
            "--db",
            f"sqlite:///{tmp_path / 'log.db'}",
            "--secret-file",
            str(tmp_path / "secret"),
            "--port",
            "0",
        ],
    )
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "runstring" in err and len(err.splitlines()) == 1
    assert not payload.trace.exists()


def test_crafted_tree_table_is_refused(tmp_path) -> None:
    """A tree whose node table points outside itself: scikit-learn would index it unchecked."""
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 4))
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(
        x, (x[:, 0] + x[:, 1] > 0).astype(int)
    )
    schema, files = _schema_and_files(tree)
    nodes_file = schema["content"]["content"]["tree_"]["content"]["content"]["nodes"]["file"]
    nodes = np.load(io.BytesIO(files[nodes_file]), allow_pickle=False)
    for field, value in (("left_child", 10**6), ("feature", 99), ("right_child", 0)):
        bad = nodes.copy()
        bad[field][0] = value
        buf = io.BytesIO()
        np.save(buf, bad, allow_pickle=False)
        path = tmp_path / f"{field}.skops"
        path.write_bytes(_pack(copy.deepcopy(schema), {**files, nodes_file: buf.getvalue()}))
        with pytest.raises(InputError, match="node table"):
            load_sklearn(path)
    save_sklearn(tmp_path / "ok.skops", tree)
    np.testing.assert_array_equal(
        load_sklearn(tmp_path / "ok.skops").predict_proba(x), tree.predict_proba(x)
    )


def test_random_generator_names_only_bit_generators(fitted, tmp_path) -> None:
    est, _ = fitted
    est = copy.deepcopy(est)
    est.rng_ = np.random.default_rng(0)
    schema, _files = _schema_and_files(est)
    node = schema["content"]["content"]["rng_"]
    assert untrusted_types(schema)[1] == set()
    node["content"]["bit_generator"]["content"]["bit_generator"]["content"] = json.dumps("seed")
    assert untrusted_types(schema)[1] == {"numpy.random.seed (bit generator)"}


def test_not_a_skops_file(tmp_path) -> None:
    for name, data in (
        ("zip.skops", b"not a zip"),
        ("empty.skops", _pack_raw({"x.txt": b""})),
        ("list.skops", _pack_raw({"schema.json": b"[]"})),
    ):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match="not a skops file"):
            load_sklearn(tmp_path / name)


def _pack_raw(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    return buf.getvalue()


def test_allow_list_is_concrete_classes_only() -> None:
    """No prefix, no function: every name resolves to a class (those importable here)."""
    import importlib

    names = allowed_types()
    assert not any(n.endswith((".", "*")) for n in names)
    checked = 0
    for name in sorted(names):
        module, _, cls = name.rpartition(".")
        try:
            obj = getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError):
            continue  # a name this scikit-learn/numpy version does not have
        assert isinstance(obj, type), f"{name} is not a class"
        checked += 1
    assert checked > 100


@pytest.mark.parametrize(
    "estimator",
    [
        "sklearn.linear_model.LogisticRegression",
        "sklearn.ensemble.RandomForestClassifier",
        "sklearn.ensemble.HistGradientBoostingClassifier",
        "sklearn.ensemble.GradientBoostingClassifier",
        "sklearn.neural_network.MLPClassifier",
        "sklearn.naive_bayes.GaussianNB",
        "sklearn.tree.DecisionTreeClassifier",
    ],
)
def test_supported_models_round_trip(estimator, tmp_path) -> None:
    import importlib

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    module, _, cls = estimator.rpartition(".")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(120, 5))
    y = (x[:, 0] + 0.5 * rng.normal(size=120) > 0).astype(int) + (x[:, 1] > 1)
    params = {
        "MLPClassifier": {"max_iter": 2000},
        "HistGradientBoostingClassifier": {"max_iter": 10},
    }.get(cls, {})
    model = make_pipeline(
        StandardScaler(), getattr(importlib.import_module(module), cls)(**params)
    ).fit(x, y)
    save_sklearn(tmp_path / "m.skops", model)
    np.testing.assert_allclose(
        load_sklearn(tmp_path / "m.skops").predict_proba(x), model.predict_proba(x)
    )


def _walk_nodes(tree):
    if isinstance(tree, dict):
        yield tree
        for v in tree.values():
            yield from _walk_nodes(v)
    elif isinstance(tree, list):
        for v in tree:
            yield from _walk_nodes(v)


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _int(value) -> dict:
    return {
        "__class__": "int",
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": json.dumps(value),
        "is_json": True,
    }


def _xy(n=80, d=2):
    rng = np.random.default_rng(5)
    x = rng.random((n, d))
    return x, (x[:, 0] > 0.5).astype(int)


def _tree_without_width():
    from sklearn.tree import DecisionTreeClassifier

    schema, files = _schema_and_files(
        DecisionTreeClassifier(max_depth=2, random_state=0).fit(*_xy())
    )
    c = schema["content"]["content"]
    del c["n_features_in_"]
    schema["content"]["key_types"]["content"].pop()
    tree = c["tree_"]
    tree["__reduce__"]["args"]["content"][0] = _int(10**9)
    nodes = np.load(io.BytesIO(files[tree["content"]["content"]["nodes"]["file"]]))
    nodes["feature"][0] = 9 * 10**8
    files[tree["content"]["content"]["nodes"]["file"]] = _npy(nodes)
    return schema, files


def _float_width():
    from sklearn.tree import DecisionTreeClassifier

    schema, files = _schema_and_files(
        DecisionTreeClassifier(max_depth=2, random_state=0).fit(*_xy())
    )
    schema["content"]["content"]["n_features_in_"] = {
        "__class__": "float",
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": "2.0",
        "is_json": True,
    }
    return schema, files


def _boosting_stage_wider():
    from sklearn.ensemble import GradientBoostingClassifier

    schema, files = _schema_and_files(
        GradientBoostingClassifier(n_estimators=2, max_depth=2, random_state=0).fit(*_xy())
    )
    last = [n for n in _walk_nodes(schema) if n.get("__class__") == "DecisionTreeRegressor"][-1]
    last["content"]["content"]["n_features_in_"] = _int(10**9)
    tree = last["content"]["content"]["tree_"]
    tree["__reduce__"]["args"]["content"][0] = _int(10**9)
    return schema, files


def _boosting(**kw):
    from sklearn.ensemble import GradientBoostingClassifier

    x, y = _xy()
    if kw.pop("multiclass", False):
        y = np.digitize(x[:, 1], [0.33, 0.66])
    return GradientBoostingClassifier(n_estimators=2, max_depth=1, random_state=0, **kw).fit(x, y)


def _boosting_stages_wider_than_its_classes():
    """Red team: predict_stages added column k of estimators_ into column k of a (n, 1) buffer
    for all 600 columns: heap corruption (glibc aborted the server) from a file that loaded."""
    model = _boosting(init="zero")
    model.estimators_ = np.repeat(model.estimators_, 600, axis=1)
    return _schema_and_files(model)


def _boosting_member_two_outputs():
    from sklearn.tree import DecisionTreeRegressor

    model = _boosting(multiclass=True)
    x, _ = _xy()
    model.estimators_[0, 0] = DecisionTreeRegressor(max_depth=1).fit(x, np.c_[x[:, 0], x[:, 1]])
    return _schema_and_files(model)


def _boosting_prior_narrower():
    model = _boosting(multiclass=True)
    model.init_.class_prior_ = model.init_.class_prior_[:2]
    model.init_.n_classes_ = 2
    return _schema_and_files(model)


def _boosting_other_start():
    from sklearn.linear_model import LogisticRegression

    return _schema_and_files(_boosting(init=LogisticRegression()))


def _categorical_boosting():
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = _xy(200)
    x[:, 1] = np.arange(200) % 3
    model = HistGradientBoostingClassifier(
        max_iter=2, categorical_features=[1], random_state=0
    ).fit(x, y)
    return _schema_and_files(model)


def _sparse_indices():
    from sklearn.linear_model import LogisticRegression

    schema, files = _schema_and_files(LogisticRegression().fit(*_xy()).sparsify())
    name = schema["content"]["content"]["coef_"]["file"]
    parts = dict(np.load(io.BytesIO(files[name])))
    parts["indices"] = np.array([0, 5 * 10**7], dtype=parts["indices"].dtype)
    buf = io.BytesIO()
    np.savez(buf, **parts)
    files[name] = buf.getvalue()
    return schema, files


def _svc():
    from sklearn.svm import SVC, LinearSVC  # noqa: F401 - SVC: libsvm tables indexed unchecked

    return _schema_and_files(SVC().fit(*_xy()))


@pytest.mark.parametrize(
    "craft",
    [
        _tree_without_width,
        _float_width,
        _boosting_stage_wider,
        _boosting_stages_wider_than_its_classes,
        _boosting_member_two_outputs,
        _boosting_prior_narrower,
        _boosting_other_start,
        _categorical_boosting,
        _sparse_indices,
        _svc,
    ],
)
def test_crafted_arrays_that_would_crash_predict_are_refused(craft, tmp_path) -> None:
    """Files that pass the type allow-list but whose arrays scikit-learn's compiled code would
    index outside memory at predict time (each crashed the process before; found by a red team)."""
    schema, files = craft()
    path = tmp_path / "m.skops"
    path.write_bytes(_pack(schema, files))
    with pytest.raises(InputError) as err:
        load_sklearn(path)
    assert "\n" not in str(err.value) and "m.skops" in str(err.value)


def test_zip_bomb_is_refused_before_inflating(tmp_path) -> None:
    from sklearn.tree import DecisionTreeClassifier

    schema, files = _schema_and_files(DecisionTreeClassifier(max_depth=1).fit(*_xy()))
    schema["content"]["content"]["zzz"] = {
        "__class__": "ndarray",
        "__module__": "numpy",
        "__loader__": "NdArrayNode",
        "type": "numpy",
        "file": "bomb.npy",
    }
    schema["content"]["key_types"]["content"].append(
        {"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode"}
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("schema.json", json.dumps(schema))
        for n, b in files.items():
            zf.writestr(n, b)
        zf.writestr("bomb.npy", bytes(64 * 2**20))  # 64 MiB of zeros deflate about 1,000-fold
    path = tmp_path / "bomb.skops"
    path.write_bytes(buf.getvalue())
    assert path.stat().st_size < 2**20
    with pytest.raises(InputError, match="zip bomb"):
        load_sklearn(path)


def test_many_small_members_that_inflate_together_are_a_zip_bomb(tmp_path) -> None:
    """Red team: members each under the per-member floor (16 MiB) passed the ratio rule; 48 of
    them (776 KiB on disk) inflated to 768 MiB."""
    from sklearn.tree import DecisionTreeClassifier

    schema, files = _schema_and_files(DecisionTreeClassifier(max_depth=1).fit(*_xy()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("schema.json", json.dumps(schema))
        for n, b in files.items():
            zf.writestr(n, b)
        for i in range(3):
            zf.writestr(f"pad{i}.npy", bytes(10 * 2**20))  # each under the floor
    path = tmp_path / "small-bombs.skops"
    path.write_bytes(buf.getvalue())
    with pytest.raises(InputError, match="fold overall"):
        load_sklearn(path)


@pytest.mark.parametrize("kw", [{}, {"multiclass": True}, {"init": "zero", "multiclass": True}])
def test_fitted_gradient_boosting_still_loads(kw, tmp_path) -> None:
    model = _boosting(**kw)
    path = tmp_path / "gb.skops"
    sio.dump(model, path)
    x, _ = _xy()
    np.testing.assert_array_equal(load_sklearn(path).predict_proba(x), model.predict_proba(x))


def _fitted_state(kind: str):
    """A model fitted honestly, then given one inconsistent attribute, as a crafted file would
    hold it (each crashed a subprocess or read memory into its output before: a red team)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures

    x, y = _xy(120, 4)
    x[:, 3] = np.arange(120) % 3
    if kind.startswith("one-hot"):
        model = make_pipeline(OneHotEncoder(handle_unknown="ignore"), LogisticRegression())
        model.fit(x[:, 3:], y)
        enc = model[0]
        if kind == "one-hot-widths":
            enc._n_features_outs = [1]
        elif kind == "one-hot-unsorted":
            enc.categories_ = [np.array([2.0, 0.0, 1.0])]
        elif kind == "one-hot-drop":
            enc.drop_idx_ = np.array([-1000], dtype=object)
            enc._drop_idx_after_grouping = np.array([-1000], dtype=object)
        else:
            enc._infrequent_enabled = True
        return model
    if kind.startswith("neighbours"):
        model = KNeighborsClassifier(3, algorithm="brute", metric="manhattan").fit(x, y)
        if kind == "neighbours-labels":
            model._y = np.full_like(model._y, 10**9)
        else:
            model._fit_X = model._fit_X[:, :1].copy()
        return model
    if kind.startswith("hist"):
        model = HistGradientBoostingClassifier(max_iter=2).fit(x, y)
        if kind == "hist-boosting-in-fit":
            model._in_fit = True
        else:  # scikit-learn checks the input's width only against n_features_in_
            del model.n_features_in_
        return model
    if kind == "neighbours-mahalanobis":
        return KNeighborsClassifier(
            3, algorithm="brute", metric="mahalanobis", metric_params={"VI": np.eye(1)}
        ).fit(x, y)
    if kind == "one-hot-complex":
        model = make_pipeline(OneHotEncoder(handle_unknown="ignore"), LogisticRegression())
        model.fit(x[:, 3:], y)
        model[0].categories_ = [np.array([2.0, 0.0, 1.0], dtype=np.complex128)]
        return model
    model = make_pipeline(PolynomialFeatures(2), LogisticRegression()).fit(x, y)
    model[0]._n_out_full += 5  # np.empty columns no term fills: stale memory in the answers
    return model


@pytest.mark.parametrize(
    "kind",
    [
        "one-hot-widths",
        "one-hot-unsorted",
        "one-hot-drop",
        "one-hot-infrequent",
        "neighbours-labels",
        "neighbours-narrow-table",
        "hist-boosting-in-fit",
        "hist-boosting-without-width",
        "neighbours-mahalanobis",
        "one-hot-complex",
        "polynomial-wider",
    ],
)
def test_crafted_states_that_would_corrupt_memory_are_refused(kind, tmp_path) -> None:
    path = tmp_path / "m.skops"
    sio.dump(_fitted_state(kind), path)
    with pytest.raises(InputError) as err:
        load_sklearn(path)
    assert "crafted" in str(err.value) or "not checked here" in str(err.value)


@pytest.mark.parametrize("cls", ["MultiLabelBinarizer", "KNeighborsTransformer"])
def test_transformers_whose_sparse_output_is_unchecked_are_refused(cls, tmp_path) -> None:
    from sklearn.neighbors import KNeighborsTransformer
    from sklearn.preprocessing import MultiLabelBinarizer

    x, _ = _xy()
    model = MultiLabelBinarizer().fit([[1, 2]]) if cls == "MultiLabelBinarizer" else None
    model = model or KNeighborsTransformer(n_neighbors=2, algorithm="brute").fit(x)
    path = tmp_path / "m.skops"
    sio.dump(model, path)
    with pytest.raises(InputError, match=cls):
        load_sklearn(path)


def test_an_array_named_many_times_is_a_zip_bomb_by_reference(tmp_path) -> None:
    """Red team (verification): skops inflates a member once per node naming it; an 18 KB file
    naming one 16 MiB member 60 times took 1.4 GB."""
    from sklearn.tree import DecisionTreeClassifier

    schema, files = _schema_and_files(DecisionTreeClassifier(max_depth=1).fit(*_xy()))
    node = {"__class__": "ndarray", "__module__": "numpy", "__loader__": "NdArrayNode"}
    schema["content"]["content"]["zzz"] = {
        "__class__": "list",
        "__module__": "builtins",
        "__loader__": "ListNode",
        "content": [{**node, "type": "numpy", "file": "pad.npy"} for _ in range(30)],
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("schema.json", json.dumps(schema))
        for n, b in files.items():
            zf.writestr(n, b)
        pad = io.BytesIO()
        np.save(pad, np.zeros(2 * 2**20 // 8))  # 2 MiB, under every per-member floor
        zf.writestr("pad.npy", pad.getvalue())
    path = tmp_path / "ref.skops"
    path.write_bytes(buf.getvalue())
    with pytest.raises(InputError, match="by reference"):
        load_sklearn(path)


def test_meta_estimators_keeping_an_unfitted_boosting_template_load(tmp_path) -> None:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import BaggingClassifier, GradientBoostingClassifier

    x, y = _xy()
    for model in (
        CalibratedClassifierCV(GradientBoostingClassifier(n_estimators=2), cv=2),
        BaggingClassifier(GradientBoostingClassifier(n_estimators=2), n_estimators=2),
    ):
        model.fit(x, y)
        path = tmp_path / "meta.skops"
        sio.dump(model, path)
        np.testing.assert_allclose(load_sklearn(path).predict_proba(x), model.predict_proba(x))
