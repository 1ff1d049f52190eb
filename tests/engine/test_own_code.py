"""The engine on the user's own code: ``python`` and ``torch-module`` recipes train through the
same plans and cache as the built-in kinds; the code's file hash is in the key (an edit
retrains, a move does not); without ``trust_code`` nothing is imported."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from miaudit.engine import load_config, train
from miaudit.errors import InputError

PIPELINE = """
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

CALLS = []


def fit(features, labels, seed, C=1.0):
    CALLS.append(seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000))
    return model.fit(features, labels)
"""

MODULE = """
import torch


def build(n_features, n_classes, width=8):
    return torch.nn.Sequential(
        torch.nn.Linear(n_features, width), torch.nn.ReLU(), torch.nn.Linear(width, n_classes)
    )
"""


def _project(folder: Path, name: str, body: str, model: str, trust: bool = True) -> Path:
    """A user's folder: their module and a train config beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(body)
    lines = [f"trust_code = {str(trust).lower()}", "seed = 5", "[data]"]
    lines += ['dataset = "breast-cancer"', "[model]", model, "[plan]", "models = 4"]
    lines += ["unit_size = 2", "[engine]", "workers = 0", "progress = false"]
    cfg = folder / "train.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


@pytest.fixture
def pipeline_project(tmp_path):
    name = "own_pipeline_c0de"
    model = f'kind = "python"\ntrain = "{name}:fit"\nparams = {{ C = 10.0 }}'
    yield name, _project(tmp_path / "project", name, PIPELINE, model)
    sys.modules.pop(name, None)


def _unit_parts(run) -> dict:
    folder = run.cache / "units" / run.signals.info.units[0]
    return json.loads((folder / "manifest.json").read_text())


def test_a_python_recipe_trains_in_this_process_and_caches_its_outputs(
    pipeline_project, tmp_path
) -> None:
    name, cfg_path = pipeline_project
    cfg = load_config(cfg_path)
    assert cfg.model.path == cfg_path.parent.resolve()  # the config's folder comes first
    cfg = cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"workers": None})})
    run = train(cfg, tmp_path / "out")
    assert run.trained == (0, 1) and run.signals.logits.shape == (4, 569, 2)
    # No worker processes by default: the user's function ran here, once per model.
    assert len(sys.modules[name].CALLS) == 4
    unit = run.cache / "units" / run.signals.info.units[0]
    assert sorted(p.name for p in unit.iterdir()) == ["logits.npy", "manifest.json"]
    key = json.loads(_unit_parts(run)["parts"]["recipe"])
    assert set(key["code"]) == {"model.train"} and "path" not in key
    # Members score higher than non-members on their own model: the signals are its logits.
    logits, keep, label = run.signals.logits, run.signals.keep, run.signals.label
    p_true = np.take_along_axis(logits, label[None, :, None], axis=2)[..., 0]
    assert p_true[keep].mean() > p_true[~keep & run.signals.pool[None]].mean()


def test_an_edit_retrains_and_a_move_does_not(pipeline_project, tmp_path) -> None:
    _, cfg_path = pipeline_project
    cache = tmp_path / "cache"
    first = train(_with_cache(cfg_path, cache), tmp_path / "a")
    again = train(_with_cache(cfg_path, cache), tmp_path / "b")
    assert again.reused == (0, 1) and again.trained == ()
    assert np.array_equal(first.signals.logits, again.signals.logits)
    moved = tmp_path / "moved"
    shutil.copytree(cfg_path.parent, moved)
    assert train(_with_cache(moved / "train.toml", cache), tmp_path / "c").reused == (0, 1)
    with (cfg_path.parent / f"{pipeline_project[0]}.py").open("a") as fh:
        fh.write("\n# an edit of the training code\n")
    edited = train(_with_cache(cfg_path, cache), tmp_path / "d")
    assert edited.reused == () and edited.trained == (0, 1)


def test_params_are_part_of_the_key(pipeline_project, tmp_path) -> None:
    _, cfg_path = pipeline_project
    cache = tmp_path / "cache"
    train(_with_cache(cfg_path, cache), tmp_path / "a")
    cfg = _with_cache(cfg_path, cache)
    other = cfg.model_copy(update={"model": cfg.model.model_copy(update={"params": {"C": 0.1}})})
    assert train(other, tmp_path / "b").reused == ()


def _with_cache(cfg_path: Path, cache: Path):
    cfg = load_config(cfg_path)
    return cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"cache": cache})})


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ('kind = "python"\ntrain = "{name}:fit"', "model.train"),
        ('kind = "torch-module"\nfactory = "{name}:build"', "model.factory"),
    ],
)
def test_without_trust_nothing_is_imported(plant_module, tmp_path, model, field) -> None:
    from miaudit.audit import load_audit_config

    name, trace = plant_module("def fit(*a):\n    pass\ndef build(*a):\n    pass\n")
    cfg_path = _project(tmp_path / "p", name, "", model.format(name=name), trust=False)
    for loader in (load_config, load_audit_config):
        text = cfg_path.read_text()
        if loader is load_audit_config:
            text = text.replace("[plan]\nmodels = 4\n", "[plan]\n")
        path = cfg_path.with_name(f"{loader.__name__}.toml")
        path.write_text(text)
        with pytest.raises(InputError) as err:
            loader(path)
        assert err.value.field == field and "--trust-code" in str(err.value)
    assert not trace.exists() and name not in sys.modules


def test_the_cli_refuses_in_one_line_and_runs_with_the_flag(tmp_path, monkeypatch, capsys) -> None:
    from miaudit.cli import main

    name = "own_cli_c0de"
    model = f'kind = "python"\ntrain = "{name}:fit"'
    cfg = _project(tmp_path / "p", name, PIPELINE, model, trust=False)

    def run(*args: str) -> int:
        monkeypatch.setattr(sys, "argv", ["miaudit", *args])
        try:
            main()
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0

    try:
        assert run("train", str(cfg), "--out", str(tmp_path / "refused")) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "model.train: " in err
        assert name not in sys.modules
        assert run("train", str(cfg), "--out", str(tmp_path / "ok"), "--trust-code") == 0
        assert (tmp_path / "ok" / "signals" / "signals.npz").is_file()
    finally:
        sys.modules.pop(name, None)


def test_a_self_trusting_config_names_the_code_it_runs(
    pipeline_project, tmp_path, monkeypatch, capsys
) -> None:
    from miaudit.cli import main

    name, cfg_path = pipeline_project
    monkeypatch.setattr(sys, "argv", ["miaudit", "train", str(cfg_path), "--out", str(tmp_path)])
    main()
    assert f"sets trust_code = true: it imports and runs '{name}:fit'" in capsys.readouterr().err


CLASSIFIER = """
import numpy as np
from sklearn.linear_model import LogisticRegression


class Clf(LogisticRegression):
    def predict_proba(self, X):
        return super().predict_proba(X)
"""


def test_an_edited_estimator_of_the_users_retrains(tmp_path, monkeypatch) -> None:
    from miaudit.engine import parse_config

    name = "own_clf_c0de"
    (tmp_path / f"{name}.py").write_text(CLASSIFIER)
    monkeypatch.syspath_prepend(str(tmp_path))
    raw = {
        "seed": 5,
        "trust_code": True,
        "data": {"dataset": "breast-cancer", "max_records": 100},
        "model": {"kind": "sklearn", "estimator": f"{name}.Clf"},
        "plan": {"models": 2, "unit_size": 2},
        "engine": {"workers": 0, "progress": False, "cache": str(tmp_path / "cache")},
    }
    try:
        first = train(parse_config(raw), tmp_path / "a")
        flat = "return np.full_like(super().predict_proba(X), 0.5)"
        (tmp_path / f"{name}.py").write_text(
            CLASSIFIER.replace("return super().predict_proba(X)", flat)
        )
        sys.modules.pop(name, None)  # a new process: the edited class is the one imported
        edited = train(parse_config(raw), tmp_path / "b")
    finally:
        sys.modules.pop(name, None)
    assert edited.reused == () and edited.trained == (0,)
    assert not np.array_equal(first.signals.logits, edited.signals.logits)
    assert set(json.loads(_unit_parts(edited)["parts"]["recipe"])["code"]) == {"model.estimator"}


def test_a_scikit_learn_estimator_keys_as_before() -> None:
    from miaudit.engine import _cache
    from miaudit.models import SklearnRecipe

    recipe = SklearnRecipe(estimator="sklearn.ensemble.RandomForestClassifier")
    assert _cache.recipe_key(recipe) == json.dumps(recipe.model_dump(mode="json"), sort_keys=True)


HUGE = """
import numpy as np


class Sure:
    '''A model whose margins are finite but beyond float32 once made log-probabilities.'''

    classes_ = np.array([0, 1])

    def decision_function(self, x):
        return np.where(x[:, 0] > np.median(x[:, 0]), 1e39, -1e39)

    def predict_proba(self, x):
        p1 = (self.decision_function(x) > 0).astype(float)
        return np.stack([1 - p1, p1], axis=1)


def fit(features, labels, seed):
    return Sure()


def huge(features, labels, seed):
    return lambda x: np.full((len(x), 2), 1e39)


def nan(features, labels, seed):
    return lambda x: np.full((len(x), 2), np.nan)
"""


@pytest.mark.parametrize(
    ("function", "problem"),
    [
        (
            "fit",
            "training diverged: models [0, 1] of unit 0 give non-finite logits; check what "
            "model.train ('own_huge_c0de:fit') fits and returns",
        ),
        (
            "huge",
            "the returned callable's logits: value 1e+39 at index (0, 0) does not fit float32",
        ),
        ("nan", "the returned callable gave logit nan at index (0, 0): logits must be finite"),
    ],
)
def test_outputs_that_overflow_name_the_users_function_not_model_lr(
    tmp_path, function, problem
) -> None:
    """Red team (own model, finding 5c): a ``python`` recipe whose outputs overflow float32 was
    told "lower model.lr" (it has no lr), after a RuntimeWarning. The refusal names the
    function, and nothing is published or warned."""
    import warnings

    name = "own_huge_c0de"
    cfg = _project(tmp_path / "p", name, HUGE, f'kind = "python"\ntrain = "{name}:{function}"')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(InputError) as err:
                train(load_config(cfg), tmp_path / "out")
    finally:
        sys.modules.pop(name, None)
    assert err.value.field in ("model", "model.train")
    assert problem in err.value.problem and "model.lr" not in err.value.problem


def test_divergence_advice_names_the_recipes_own_knobs() -> None:
    from miaudit.engine._unit import _divergence_advice
    from miaudit.models import MLPRecipe, TorchModuleRecipe

    module = _divergence_advice(TorchModuleRecipe(factory="nets:build", train_step="nets:step"))
    assert "model.factory ('nets:build')" in module and "model.train_step ('nets:step')" in module
    assert "model.lr" in module  # the generic trainer's lr is the user's too
    assert _divergence_advice(MLPRecipe()) == "lower model.lr or check the data"


PROBS = """
from sklearn.ensemble import RandomForestClassifier


def fit(features, labels, seed):
    forest = RandomForestClassifier(n_estimators=5, random_state=seed).fit(features, labels)
    return lambda x: forest.predict_proba(x)
"""


def test_a_callable_giving_probabilities_is_refused_before_anything_is_cached(tmp_path) -> None:
    """Red team (own model, F2): a ``train`` returning a callable that gives predict_proba had
    its probabilities cached as logits and softmaxed twice by every attack, silently. The run
    stops in one line naming model.train, and no unit is cached."""
    name = "own_probs_c0de"
    cfg = _project(tmp_path / "p", name, PROBS, f'kind = "python"\ntrain = "{name}:fit"')
    cache = tmp_path / "cache"
    try:
        with pytest.raises(InputError) as err:
            train(_with_cache(cfg, cache), tmp_path / "out")
    finally:
        sys.modules.pop(name, None)
    assert err.value.field == "model.train" and "\n" not in err.value.problem
    assert "logits (or log-probabilities)" in err.value.problem
    assert not list(cache.rglob("logits.npy"))
