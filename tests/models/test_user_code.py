"""The user's own code as a recipe: validation, finding the code without running it, its hash,
and how a fitted object's outputs become logits (models/_python.py)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from miaudit.datasets import DataConfig, load_dataset
from miaudit.errors import InputError
from miaudit.models import (
    PythonRecipe,
    TorchModuleRecipe,
    check_code_trust,
    code_digests,
    code_names,
    fitted_logits,
    load_function,
    parse_recipe,
    resolve_code_folder,
)
from miaudit.models._python import MARGIN_TOLERANCE, raw_margins
from miaudit.models._sklearn import LOG_FLOOR


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"kind": "python"}, "model.train"),
        ({"kind": "python", "train": "no colon"}, "model.train"),
        ({"kind": "python", "train": "pkg.mod:"}, "model.train"),
        ({"kind": "python", "train": "a:b", "epochs": 3}, "model.epochs"),
        ({"kind": "torch-module"}, "model.factory"),
        ({"kind": "torch-module", "factory": "a.b:c", "train_step": "x"}, "model.train_step"),
        ({"kind": "torch-module", "factory": "a:b", "dropout": 0.5}, "model"),
        ({"kind": "torch-module", "factory": "a:b", "dp": {"noise_multiplier": 1.0}}, "model"),
        ({"kind": "torch-module", "factory": "a:b", "precision": "bfloat16"}, "model"),
        (
            {"kind": "torch-module", "factory": "a:b", "train_step": "a:s", "label_smoothing": 0.1},
            "model",
        ),
        (
            {"kind": "torch-module", "factory": "a:b", "augment": ["shift", "shift"]},
            "model.augment",
        ),
        ({"kind": "keras"}, "model.kind"),
    ],
)
def test_recipe_errors_name_the_field(raw, field) -> None:
    with pytest.raises(InputError) as info:
        parse_recipe(raw)
    assert info.value.field == field


def test_unknown_kind_lists_every_kind() -> None:
    with pytest.raises(InputError, match="'torch-module', 'sklearn' or 'python'"):
        parse_recipe({"kind": "keras"})


def test_recipes_round_trip_and_name_their_code() -> None:
    r = parse_recipe({"kind": "torch-module", "factory": "nets:build", "train_step": "nets:step"})
    assert isinstance(r, TorchModuleRecipe) and r.epochs == 20 and r.optimizer == "adam"
    assert parse_recipe(r.model_dump(mode="json")) == r
    assert code_names(r) == {"model.factory": "nets:build", "model.train_step": "nets:step"}
    p = parse_recipe({"kind": "python", "train": "pkg.fit:Trainer.fit", "params": {"C": 2}})
    assert isinstance(p, PythonRecipe) and code_names(p) == {"model.train": "pkg.fit:Trainer.fit"}
    assert code_names(parse_recipe({"kind": "torch-mlp"})) == {}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"kind": "python", "train": "m:f"}, "model.train"),
        ({"kind": "torch-module", "factory": "m:f"}, "model.factory"),
    ],
)
def test_code_is_refused_without_trust_in_one_line(raw, field) -> None:
    recipe = parse_recipe(raw)
    with pytest.raises(InputError) as err:
        check_code_trust(recipe, trust_code=False)
    msg = str(err.value)
    assert err.value.field == field and "\n" not in msg
    assert "trust_code = true" in msg and "--trust-code" in msg
    check_code_trust(recipe, trust_code=True)


def test_the_code_is_found_and_hashed_without_running_it(plant_module, tmp_path) -> None:
    name, trace = plant_module("def train(x, y, seed):\n    return None\n")
    recipe = PythonRecipe(train=f"{name}:train", path=tmp_path)
    before = code_digests(recipe)
    assert not trace.exists() and name not in sys.modules
    with (tmp_path / f"{name}.py").open("a") as fh:
        fh.write("# edited\n")
    assert code_digests(recipe)["model.train"] != before["model.train"]
    assert not trace.exists()


def test_a_package_module_is_found_without_importing_the_package(tmp_path) -> None:
    pkg = tmp_path / "own_pkg_c0de"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('the package ran')\n")
    (pkg / "nets.py").write_text("def build(n_features, n_classes):\n    return None\n")
    recipe = TorchModuleRecipe(factory="own_pkg_c0de.nets:build", path=tmp_path)
    assert set(code_digests(recipe)) == {"model.factory"}
    assert "own_pkg_c0de" not in sys.modules


def test_a_missing_module_is_refused_naming_the_field(tmp_path) -> None:
    with pytest.raises(InputError) as err:
        code_digests(PythonRecipe(train="no_such_module_c0de:train", path=tmp_path))
    assert err.value.field == "model.train" and str(tmp_path) in str(err.value)


def test_the_config_folder_comes_first(tmp_path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, value in ((a, 1), (b, 2)):
        folder.mkdir()
        (folder / "same_name_c0de.py").write_text(f"def train(*args):\n    return {value}\n")
    try:
        for folder, value in ((a, 1), (b, 2), (a, 1)):
            recipe = resolve_code_folder(PythonRecipe(train="same_name_c0de:train"), folder)
            assert recipe.path == folder.resolve()
            assert load_function(recipe, "model.train")() == value
        # Relative to the config's folder; absolute as given.
        assert resolve_code_folder(PythonRecipe(train="m:f", path="b"), tmp_path).path == b
        assert resolve_code_folder(PythonRecipe(train="m:f", path=a), b).path == a
        assert str(a) not in sys.path and str(b) not in sys.path
    finally:
        sys.modules.pop("same_name_c0de", None)


def test_an_edited_module_is_imported_again_and_a_stale_key_refused(tmp_path) -> None:
    path = tmp_path / "edited_c0de.py"
    path.write_text("def train(*args):\n    return 'old'\n")
    recipe = PythonRecipe(train="edited_c0de:train", path=tmp_path)
    try:
        digest = code_digests(recipe)["model.train"]
        assert load_function(recipe, "model.train", digest)() == "old"
        path.write_text("def train(*args):\n    return 'new'\n")
        with pytest.raises(InputError, match="changed while the run was going"):
            load_function(recipe, "model.train", digest)
        assert load_function(recipe, "model.train")() == "new"
    finally:
        sys.modules.pop("edited_c0de", None)


# --- how a fitted object's outputs become its logits -------------------------------------------


@pytest.fixture(scope="module")
def cancer():
    data = load_dataset(DataConfig(dataset="breast-cancer"))
    return data.features, data.label


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_logistic_regression_gives_its_exact_margins(cancer) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = cancer
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=1e4, max_iter=5000)).fit(x, y)
    logits = fitted_logits(pipe, x, 2)
    margin = pipe.decision_function(x)
    # Binary: the log-odds are the margin itself, beyond where predict_proba rounds to 0 or 1.
    assert np.allclose(logits[:, 1] - logits[:, 0], margin, rtol=1e-5, atol=1e-4)
    assert (pipe.predict_proba(x).max(axis=1) == 1.0).any()  # saturated probabilities …
    assert np.abs(margin).max() > 40  # … whose margins still differ


def test_scores_that_are_not_logits_fall_back_to_log_probabilities() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    digits = load_dataset(DataConfig(dataset="digits"))
    x, y = digits.features / 16.0, digits.label
    ovr = OneVsRestClassifier(LogisticRegression(max_iter=300)).fit(x[:600], y[:600])
    assert raw_margins(ovr, x) is not None  # one-vs-rest scores: not a softmax's logits …
    logits = fitted_logits(ovr, x, 10)
    assert np.allclose(logits, np.log(ovr.predict_proba(x)), atol=1e-5)  # … so log-probabilities


def test_a_class_without_probability_ranks_below_every_other(cancer) -> None:
    from sklearn.ensemble import RandomForestClassifier

    x, y = cancer
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y)
    logits = fitted_logits(forest, x, 3)  # a third class the forest never saw
    assert logits.dtype == np.float32 and np.isfinite(logits).all()
    with np.errstate(divide="ignore"):
        finite = np.log(forest.predict_proba(x))
    seen = np.isfinite(finite)
    assert (~seen).any()  # some records get probability 0 for a class the forest knows
    # Every class without probability (never seen, or given 0) gets the row's floor: at most
    # LOG_FLOOR and below every class with probability.
    floor = logits[:, 2]
    assert (floor <= LOG_FLOOR).all()
    assert np.array_equal(logits[:, :2][~seen], floor[np.nonzero(~seen)[0]])
    assert (floor[:, None] < np.where(seen, logits[:, :2], np.inf)).all()
    assert np.array_equal(logits[:, :2][seen], finite[seen].astype(np.float32))


def test_a_callable_gives_its_logits_as_they_are(cancer) -> None:
    x, _ = cancer
    w = np.random.default_rng(0).normal(size=(x.shape[1], 2)).astype(np.float32)
    assert np.array_equal(fitted_logits(lambda f: f @ w, x, 2), x @ w)
    with pytest.raises(InputError, match=r"expected \(569, 3\)") as err:
        fitted_logits(lambda f: f @ w, x, 3)
    assert err.value.field == "model.train"
    with pytest.raises(InputError, match="no predict_proba and is not callable"):
        fitted_logits(object(), x, 2)


def test_a_callable_giving_per_class_sigmoids_is_refused(cancer) -> None:
    """Red team: a callable ending in a sigmoid (one-vs-rest probabilities, rows not summing to
    1) gave logits that a softmax then read wrong. Refused naming model.train; its logits (the
    values before the sigmoid) pass."""
    x, _ = cancer
    w = np.random.default_rng(0).normal(size=(x.shape[1], 3)) / 1000

    def margins(f):
        return (f - x.mean(axis=0)) @ w

    with pytest.raises(InputError) as err:
        fitted_logits(lambda f: 1 / (1 + np.exp(-margins(f))), x, 3)
    assert err.value.field == "model.train" and "\n" not in err.value.problem
    assert "the returned callable gives values all in [0, 1] on 569 records" in err.value.problem
    assert fitted_logits(margins, x, 3).shape == (569, 3)


def test_classes_outside_the_data_are_refused(cancer) -> None:
    from sklearn.tree import DecisionTreeClassifier

    x, y = cancer
    est = DecisionTreeClassifier(max_depth=2).fit(x, y + 5)
    with pytest.raises(InputError, match="classes") as err:
        fitted_logits(est, x, 2)
    assert err.value.field == "model.train"


def test_xgboost_gives_its_raw_margins(cancer) -> None:
    xgboost = pytest.importorskip("xgboost")
    x, y = cancer
    model = xgboost.XGBClassifier(n_estimators=30, max_depth=3, n_jobs=1, random_state=0)
    model.fit(x, y)
    logits = fitted_logits(model, x, 2).astype(np.float64)
    margin = model.predict(x, output_margin=True)
    assert np.allclose(logits[:, 1] - logits[:, 0], margin, atol=1e-5)
    digits = load_dataset(DataConfig(dataset="digits"))
    multi = xgboost.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1, random_state=0)
    multi.fit(digits.features, digits.label)
    logits = fitted_logits(multi, digits.features, 10).astype(np.float64)
    margins = multi.predict(digits.features, output_margin=True)
    assert np.allclose(_softmax(logits), _softmax(margins), atol=MARGIN_TOLERANCE)
    assert np.allclose(logits - logits[:, :1], margins - margins[:, :1], atol=1e-5)


def test_lightgbm_gives_its_raw_scores(cancer) -> None:
    lightgbm = pytest.importorskip("lightgbm")
    x, y = cancer
    model = lightgbm.LGBMClassifier(n_estimators=30, n_jobs=1, random_state=0, verbose=-1)
    model.fit(x, y)
    logits = fitted_logits(model, x, 2).astype(np.float64)
    assert np.allclose(logits[:, 1] - logits[:, 0], model.predict(x, raw_score=True), atol=1e-5)


# --- the user's helper modules are in the key too -------------------------------------------------


def _project(tmp_path, helper_value: str = "1"):
    """A config folder: train.py imports a package helper at module level and another module
    from inside its function (a lazy import), plus numpy (installed: not the user's code)."""
    pkg = tmp_path / "helpers_c0de"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "values.py").write_text(f"VALUE = {helper_value}\n")
    (tmp_path / "lazy_c0de.py").write_text("SCALE = 10\n")
    (tmp_path / "train_c0de.py").write_text(
        "import numpy as np\n"
        "from helpers_c0de.values import VALUE\n"
        "def train(*args):\n"
        "    from lazy_c0de import SCALE\n"
        "    return VALUE * SCALE\n"
    )
    return PythonRecipe(train="train_c0de:train", path=tmp_path)


def _forget_project() -> None:
    for name in ("train_c0de", "lazy_c0de", "helpers_c0de", "helpers_c0de.values"):
        sys.modules.pop(name, None)


def test_the_key_hashes_the_users_modules_the_code_imports(tmp_path) -> None:
    from miaudit.models._local_imports import local_closure

    recipe = _project(tmp_path)
    closure = local_closure("train_c0de", tmp_path / "train_c0de.py", tmp_path)
    # numpy is installed, not the user's code; the lazy import inside the function counts
    assert set(closure) == {"train_c0de", "helpers_c0de", "helpers_c0de.values", "lazy_c0de"}
    assert not any(n in sys.modules for n in closure)  # found by reading, nothing ran
    before = code_digests(recipe)["model.train"]
    for edited in ("helpers_c0de/values.py", "lazy_c0de.py", "helpers_c0de/__init__.py"):
        with (tmp_path / edited).open("a") as fh:
            fh.write("# edited\n")
        after = code_digests(recipe)["model.train"]
        assert after != before, edited
        before = after
    # an unrelated file in the folder is not part of the code
    (tmp_path / "notes_c0de.py").write_text("X = 1\n")
    assert code_digests(recipe)["model.train"] == before


def test_literal_dynamic_imports_are_in_the_key(tmp_path) -> None:
    """``importlib.import_module("helper")`` and ``__import__("helper")`` name their module in
    the source: editing it reused the old models (red team: logits sum -3704.23 kept, -3414.62
    from the edited code). A computed name cannot be read, and is not followed."""
    from miaudit.models._local_imports import local_closure

    (tmp_path / "dyn_c0de.py").write_text(
        "import importlib\n"
        "from importlib import import_module\n"
        "def train(x, y, seed):\n"
        "    importlib.import_module('lit_c0de')\n"
        "    __import__('dunder_c0de', fromlist=['part'])\n"
        "    import_module('.inner', 'pkgdyn_c0de')\n"
        "    name = 'computed_c0de'\n"
        "    importlib.import_module(name)\n"
        "    importlib.import_module(f'{name}')\n"
    )
    for name in ("lit_c0de", "computed_c0de"):
        (tmp_path / f"{name}.py").write_text("X = 1\n")
    for package, inner in (("dunder_c0de", "part"), ("pkgdyn_c0de", "inner")):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / f"{inner}.py").write_text("X = 1\n")
    closure = local_closure("dyn_c0de", tmp_path / "dyn_c0de.py", tmp_path)
    assert set(closure) == {
        "dyn_c0de",
        "lit_c0de",
        "dunder_c0de",
        "dunder_c0de.part",
        "pkgdyn_c0de",
        "pkgdyn_c0de.inner",
    }
    recipe = PythonRecipe(train="dyn_c0de:train", path=tmp_path)
    before = code_digests(recipe)["model.train"]
    for edited in ("lit_c0de.py", "dunder_c0de/part.py", "pkgdyn_c0de/inner.py"):
        (tmp_path / edited).write_text("X = 2\n")
        after = code_digests(recipe)["model.train"]
        assert after != before, edited
        before = after


def test_a_single_file_keeps_the_key_it_always_had(plant_module, tmp_path) -> None:
    from miaudit.models._user_code import file_digest

    name, _ = plant_module("import os\ndef train(x, y, seed):\n    return None\n")
    recipe = PythonRecipe(train=f"{name}:train", path=tmp_path)
    assert code_digests(recipe)["model.train"] == file_digest(tmp_path / f"{name}.py")


def test_an_edited_helper_is_imported_again_and_a_stale_key_refused(tmp_path) -> None:
    from miaudit.models._user_code import code_folder

    recipe = _project(tmp_path, helper_value="1")
    try:
        digest = code_digests(recipe)["model.train"]
        with code_folder(tmp_path):  # as the engine runs the code: its folder importable
            assert load_function(recipe, "model.train", digest)() == 10
        (tmp_path / "helpers_c0de" / "values.py").write_text("VALUE = 2\n")
        with pytest.raises(InputError, match="changed while the run was going"):
            load_function(recipe, "model.train", digest)
        with code_folder(tmp_path):
            assert load_function(recipe, "model.train")() == 20  # the new helper, not the old
            (tmp_path / "lazy_c0de.py").write_text("SCALE = 100\n")
            assert load_function(recipe, "model.train")() == 200
    finally:
        _forget_project()


def test_relative_imports_inside_a_package_are_followed(tmp_path) -> None:
    from miaudit.models._local_imports import local_closure

    pkg = tmp_path / "proj_c0de"
    (pkg / "sub").mkdir(parents=True)
    for f in ("__init__.py", "sub/__init__.py"):
        (pkg / f).write_text("")
    (pkg / "sub" / "nets.py").write_text("from . import blocks\nfrom ..config import WIDTH\n")
    (pkg / "sub" / "blocks.py").write_text("")
    (pkg / "config.py").write_text("WIDTH = 3\n")
    closure = local_closure("proj_c0de.sub.nets", pkg / "sub" / "nets.py", None)
    assert set(closure) == {
        "proj_c0de",
        "proj_c0de.sub",
        "proj_c0de.sub.nets",
        "proj_c0de.sub.blocks",
        "proj_c0de.config",
    }


# --- the user's code failing: named as theirs, never an exit of miaudit's ------------------------

USERS = """
import sys

def exits(features, labels, seed):
    sys.exit(0)

def raises(features, labels, seed):
    raise ValueError("boom in user code")
"""


@pytest.mark.parametrize(
    ("train", "workers", "said"),
    [
        ("users_fail:exits", 0, "model.train: users_fail:exits called sys.exit(0)"),
        ("users_fail:exits", 1, "model.train: users_fail:exits called sys.exit(0)"),
        ("users_fail:raises", 0, "model.train: users_fail:raises raised ValueError: boom"),
        (
            "users_bad_syntax:train",
            0,
            "model.train: importing 'users_bad_syntax' raised SyntaxError",
        ),
    ],
)
def test_the_users_code_failing_is_one_line_exit_2(
    tmp_path, monkeypatch, capsys, train: str, workers: int, said: str
) -> None:
    """Red team: sys.exit(0) in a train function ended `miaudit audit` with exit 0 and no output
    (a --fail-on gate passed, in a worker process too); an exception or a syntax error in it was
    a miaudit "internal error … please report it", exit 1."""
    from miaudit.cli import main

    (tmp_path / "users_fail.py").write_text(USERS)
    (tmp_path / "users_bad_syntax.py").write_text("def train(:\n")
    config = tmp_path / "a.toml"
    config.write_text(
        f'seed = 1\ntrust_code = true\n[data]\ndataset = "breast-cancer"\n[model]\nkind = "python"\n'
        f'train = "{train}"\n[engine]\nworkers = {workers}\nprogress = false\n'
        '[audit]\nreferences = 1\nattacks = ["loss"]\nresamples = 10\n'
    )
    monkeypatch.delenv("MIAUDIT_DEBUG", raising=False)
    try:
        with pytest.raises(SystemExit) as exc:
            main(
                ["audit", str(config), "--out", str(tmp_path / "out"), "--fail-on", "auc.point>0.5"]
            )
    finally:
        for name in ("users_fail", "users_bad_syntax"):
            sys.modules.pop(name, None)
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("warning")]
    assert exc.value.code == 2 and len(err) == 1 and err[0].startswith(f"error: {said}")
    assert "internal error" not in err[0] and not (tmp_path / "out").exists()


def test_a_callable_giving_probabilities_is_refused_and_honest_logits_kept(cancer) -> None:
    """Red team (own model, F2): a ``train`` returning ``lambda x: model.predict_proba(x)`` had
    its probabilities stored as logits and softmaxed a second time (LiRA AUC 0.559 -> 0.682 on
    the same forest, no message). It is refused, naming model.train and what to return; logits
    that happen to be all positive, and log-probabilities, are kept."""
    from sklearn.ensemble import RandomForestClassifier

    x, y = cancer
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y)
    with pytest.raises(InputError) as err:
        fitted_logits(lambda f: forest.predict_proba(f), x, 2)
    assert err.value.field == "model.train" and "\n" not in err.value.problem
    assert "probabilities" in err.value.problem
    assert "return a callable giving logits (or log-probabilities)" in err.value.problem
    w = np.random.default_rng(0).normal(size=(x.shape[1], 2)).astype(np.float32)
    positive = fitted_logits(lambda f: np.abs(f @ w) + 0.01, x, 2)
    assert (positive > 0).all()
    p = np.clip(forest.predict_proba(x), 1e-6, 1.0)
    assert np.allclose(fitted_logits(lambda f: np.log(p), x, 2), np.log(p))
