"""A config may name code only when it opts in (``trust_code = true`` or ``--trust-code``);
estimator names are checked against scikit-learn's classifiers before anything is imported."""

from __future__ import annotations

import sys

import pytest

from miaudit.errors import InputError
from miaudit.models import SklearnRecipe
from miaudit.models._sklearn import estimator_class, make_estimator


@pytest.fixture
def user_module(plant_module):
    """A module whose import leaves a trace and which defines a scikit-learn-style classifier."""
    return plant_module(
        "from sklearn.linear_model import LogisticRegression\nclass MyClassifier(LogisticRegression):\n    pass\n"
    )


def _toml(path, estimator: str, trust: bool | None = None, kind: str = "train") -> None:
    lines = [] if trust is None else [f"trust_code = {str(trust).lower()}"]
    lines += [
        "seed = 3",
        "[data]",
        'dataset = "breast-cancer"',
        "[model]",
        'kind = "sklearn"',
        f'estimator = "{estimator}"',
        "params = { max_iter = 300 }",
    ]
    lines += ["[engine]", "workers = 0", "progress = false"]
    if kind == "train":
        lines += ["[plan]", "models = 2", "unit_size = 2"]
    else:
        lines += ["[audit]", "references = 1", 'attacks = ["loss"]', "resamples = 10"]
    path.write_text("\n".join(lines) + "\n")


def test_estimator_outside_sklearn_is_refused_before_import(user_module, tmp_path) -> None:
    from miaudit.audit import load_audit_config
    from miaudit.engine import load_config

    name, trace = user_module
    for loader, kind in ((load_config, "train"), (load_audit_config, "audit")):
        for trust in (None, False):
            path = tmp_path / f"{kind}-{trust}.toml"
            _toml(path, f"{name}.MyClassifier", trust, kind)
            with pytest.raises(InputError) as err:
                loader(path)
            assert (
                str(err.value).startswith("model.estimator:")
                and "trust_code" in str(err.value)
                and "--trust-code" in str(err.value)
            )
    with pytest.raises(InputError, match="trust_code"):
        estimator_class(SklearnRecipe(estimator=f"{name}.MyClassifier"))
    with pytest.raises(InputError, match="trust_code"):
        make_estimator(SklearnRecipe(estimator=f"{name}.MyClassifier"), seed=1)
    assert not trace.exists() and name not in sys.modules


def test_sklearn_classifiers_need_no_trust() -> None:
    from sklearn.ensemble import RandomForestClassifier

    assert (
        estimator_class(SklearnRecipe(estimator="sklearn.ensemble.RandomForestClassifier"))
        is RandomForestClassifier
    )
    assert (
        estimator_class(SklearnRecipe(estimator="sklearn.ensemble._forest.RandomForestClassifier"))
        is RandomForestClassifier
    )
    # A scikit-learn name that is not a classifier is code too: refused without trust.
    with pytest.raises(InputError, match="not one of scikit-learn's classifiers"):
        estimator_class(SklearnRecipe(estimator="sklearn.utils._testing.ignore_warnings"))


def test_cli_refuses_without_opt_in_and_runs_with_it(
    user_module, tmp_path, monkeypatch, capsys
) -> None:
    from miaudit.cli import main

    name, trace = user_module

    def run(*args: str) -> int:
        monkeypatch.setattr(sys, "argv", ["miaudit", *args])
        try:
            main()
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0

    cfg = tmp_path / "train.toml"
    _toml(cfg, f"{name}.MyClassifier")
    assert run("train", str(cfg), "--out", str(tmp_path / "refused")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--trust-code" in err
    assert not trace.exists() and not (tmp_path / "refused" / "signals").exists()

    # The command-line opt-in: the named code is imported and trains the models.
    assert run("train", str(cfg), "--out", str(tmp_path / "flag"), "--trust-code") == 0, (
        capsys.readouterr().err
    )
    assert trace.exists() and (tmp_path / "flag" / "signals").is_dir()

    # The config's own opt-in does the same.
    trace.unlink()
    sys.modules.pop(name, None)
    cfg_trusted = tmp_path / "trusted.toml"
    _toml(cfg_trusted, f"{name}.MyClassifier", trust=True)
    assert run("train", str(cfg_trusted), "--out", str(tmp_path / "config")) == 0
    assert trace.exists()
    assert (
        f"sets trust_code = true: it imports and runs '{name}.MyClassifier'"
        in capsys.readouterr().err
    )


def test_an_edited_estimator_module_is_imported_again(plant_module, tmp_path) -> None:
    """The cache key hashes the estimator's file as it is now; a long-lived process (a notebook)
    that imported the old bytes trained the old class under the new key (it is imported afresh,
    as the code a python recipe names is)."""
    name, _ = plant_module(
        "from sklearn.linear_model import LogisticRegression\n"
        "class MyClassifier(LogisticRegression):\n    VERSION = 'old'\n"
    )
    recipe = SklearnRecipe(estimator=f"{name}.MyClassifier")
    assert estimator_class(recipe, trust_code=True).VERSION == "old"
    source = tmp_path / f"{name}.py"
    source.write_text(source.read_text().replace("'old'", "'new'"))
    assert estimator_class(recipe, trust_code=True).VERSION == "new"
    assert make_estimator(recipe, 1, trust_code=True).VERSION == "new"
