"""Packaging: the package imports only what pyproject.toml declares, and the CLI works with no
optional dependency installed."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "miaudit"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

# Modules that may import an extra's package at module level: they are reached only through a
# lazy import, after the extra has been asked for. Everything else imports only base packages at
# module level (and extras only inside functions).
MODULE_LEVEL_EXTRAS = {
    "serve/": "serve",
    "models/_dp.py": "torch",
    "models/_dp_multirun.py": "torch",
    "models/_generic_torch.py": "torch",
    "models/_lm.py": "torch",
    "models/_lm_candidates.py": "torch",
    "models/_lm_dp.py": "torch",
    "models/_nets.py": "torch",
    "models/_reference.py": "torch",
    "models/_stacked_adam.py": "torch",
    "models/_torch_train.py": "torch",
}


def _dist(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = PYPROJECT["project"]
    base = {_dist(r) for r in project["dependencies"]}
    extras = {
        name: {_dist(r) for r in reqs} for name, reqs in project["optional-dependencies"].items()
    }
    return base, extras


def _imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """(top-level module name, imported at module level?) of every absolute import."""
    out: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                out.extend((a.name.split(".")[0], top) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                out.append((child.module.split(".")[0], top))
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # never runs
            else:
                inner = top and not isinstance(
                    child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
                )
                visit(child, inner)

    visit(tree, True)
    return out


def test_the_package_imports_only_declared_dependencies() -> None:
    base, extras = _declared()
    every_extra = set().union(*extras.values())
    dists = {
        k: {d.lower().replace("_", "-") for d in v} for k, v in packages_distributions().items()
    }
    stdlib = set(sys.stdlib_module_names)
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        allowed_extra = next(
            (extra for prefix, extra in MODULE_LEVEL_EXTRAS.items() if rel.startswith(prefix)), None
        )
        for name, top in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if name in stdlib or name == "miaudit" or name == "__future__":
                continue
            provided = dists.get(name)
            if not provided:
                problems.append(
                    f"{rel}: imports {name!r}, which no installed distribution provides"
                )
                continue
            if (
                top
                and not provided & base
                and not (allowed_extra and provided & extras[allowed_extra])
            ):
                problems.append(
                    f"{rel}: imports {name!r} ({', '.join(sorted(provided))}) at module level, not a base dependency"
                )
            elif not provided & (base | every_extra):
                problems.append(
                    f"{rel}: imports {name!r} ({', '.join(sorted(provided))}), declared nowhere in pyproject.toml"
                )
    assert problems == [], "\n".join(problems)


def test_the_ast_check_sees_imports_inside_functions_and_skips_type_checking() -> None:
    tree = ast.parse(
        textwrap.dedent("""
        import numpy
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            import torch
        def f():
            import fastapi
        class C:
            import scipy.stats
    """)
    )
    assert _imports(tree) == [
        ("numpy", True),
        ("typing", True),
        ("fastapi", False),
        ("scipy", True),
    ]


# --- the CLI with every optional dependency blocked -------------------------------------------------

BLOCKED = sorted(
    {
        "torch",
        "safetensors",
        "skops",
        "opacus",
        "ray",
        "fastapi",
        "starlette",
        "uvicorn",
        "sqlalchemy",
        "httpx",
        "psycopg",
        "click",
        "pytest",
        "hypothesis",
        "schemathesis",
        "transformers",
        "tokenizers",
        "peft",
        "faker",
    }
)
PRELUDE = f"""
import sys
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None
sys.meta_path.insert(0, _Blocked())
from miaudit.cli import main
main()
"""


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PRELUDE, *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


@pytest.fixture(scope="module")
def no_extras(tmp_path_factory) -> Path:
    from tests.conftest import simulated_outputs

    tmp = tmp_path_factory.mktemp("noextras")
    simulated_outputs(n=400, seed=2).save(tmp / "outputs.parquet")
    (tmp / "bad.csv").write_text("logit_0,logit_1,label,member\n0.1,nan,0,1\n0.2,0,1,0\n")
    (tmp / "mlp.yaml").write_text(
        "seed: 1\ndata: {dataset: digits}\nmodel: {kind: torch-mlp, hidden: [8], epochs: 1}\nplan: {models: 2}\n"
    )
    (tmp / "text.toml").write_text("[data]\nrecords = 20\n")
    return tmp


@pytest.mark.parametrize(
    ("args", "code", "expect"),
    [
        (["--version"], 0, None),
        (["--help"], 0, None),
        (["attack"], 2, "Missing argument"),
        (["attack", "outputs.parquet", "--bogus"], 2, "--bogus"),
        (["attack", "outputs.parquet", "--resamples", "abc"], 2, "--resamples"),
        (["check-record", "x"], 2, "--id"),
        (["atack"], 2, "atack"),
        (["attack", "bad.csv"], 2, "logits"),
        (["attack", "outputs.parquet", "--seed", "-1"], 2, "--seed"),
        (["keys", "list", "--db", "sqlite:///guard.db"], 2, "miaudit[serve]"),
        (["serve", "--model", "m.skops"], 2, "miaudit[serve]"),
        (["train", "mlp.yaml", "--out", "o"], 2, "miaudit[torch]"),
        (["exposure", "text.toml", "--out", "o"], 2, "miaudit[torch]"),
    ],
)
def test_cli_usage_and_errors_with_every_optional_dependency_blocked(
    no_extras, args, code, expect
) -> None:
    proc = _run(args, no_extras)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    if expect is not None:
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], (
            proc.stderr
        )


def test_an_attack_runs_with_every_optional_dependency_blocked(no_extras) -> None:
    proc = _run(
        ["attack", "outputs.parquet", "--out", "res", "--resamples", "20", "--attacks", "loss"],
        no_extras,
    )
    assert proc.returncode == 0, proc.stderr
    assert (no_extras / "res" / "results.json").is_file() and (
        no_extras / "res" / "report.html"
    ).is_file()
