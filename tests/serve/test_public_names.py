"""The service's public names, and its place in the layers: nothing below it imports it, and it
reaches other packages only through their public names (checked on the syntax tree)."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import miaudit
import miaudit.serve
from miaudit.attacks import Oracle

SRC = Path(miaudit.__file__).resolve().parent
DOCS = Path(__file__).resolve().parents[2] / "docs"

PUBLIC = {
    "DEFAULT_ROLES",
    "Alert",
    "Charge",
    "DetectorConfig",
    "EstimatorPredictor",
    "HttpOracle",
    "KeyInfo",
    "ModuleSource",
    "Monitor",
    "Predictor",
    "Role",
    "ServeConfig",
    "ServeSpec",
    "ServiceError",
    "Store",
    "TorchMLPPredictor",
    "TorchModulePredictor",
    "UpstreamPredictor",
    "app_from_env",
    "asgi_client",
    "calibrate_knn_threshold",
    "calibrated_detectors",
    "check_limits",
    "check_served_outputs",
    "create_app",
    "default_knn_threshold",
    "fit_spread_window",
    "load_predictor",
    "load_roles",
    "load_server_secret",
    "make_engine",
    "new_key",
    "parse_roles",
    "predict_body_cap",
    "record_hashes",
}


def test_public_names_are_pinned() -> None:
    assert set(miaudit.serve.__all__) == PUBLIC
    assert len(miaudit.serve.__all__) == len(PUBLIC), "a name is listed twice"


def test_every_public_name_is_the_services_own_and_documented() -> None:
    for name in miaudit.serve.__all__:
        obj = getattr(miaudit.serve, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            # Defined in the service's private modules, not re-exported from elsewhere.
            assert obj.__module__.startswith("miaudit.serve._"), f"{name}: {obj.__module__}"
            assert inspect.getdoc(obj), f"miaudit.serve.{name} has no docstring"


def test_star_import_gives_exactly_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from miaudit.serve import *", namespace)
    assert set(namespace) - {"__builtins__"} == PUBLIC


def _docs_imports(text: str) -> set[str]:
    """Names imported from miaudit.serve by the Python code blocks of a Markdown text."""
    names: set[str] = set()
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and node.module == "miaudit.serve":
                names |= {a.name for a in node.names}
    return names


def test_the_docs_import_only_public_names() -> None:
    used = set().union(*(_docs_imports(p.read_text("utf-8")) for p in DOCS.glob("*.md")))
    assert "create_app" in used and "HttpOracle" in used  # docs/serve.md shows both
    assert used <= PUBLIC, sorted(used - PUBLIC)


def test_docs_imports_are_read_from_code_blocks() -> None:
    text = "x\n```python\nfrom miaudit.serve import create_app, Gone\n```\n`from miaudit.serve import Prose`\n"
    assert _docs_imports(text) == {"create_app", "Gone"}


def test_http_oracle_matches_the_oracle_protocol() -> None:
    members = [n for n in vars(Oracle) if not n.startswith("_")]
    assert set(members) == {"policy", "queries", "queries_per_record", "query"}
    for name in members:
        want, got = getattr(Oracle, name), getattr(miaudit.serve.HttpOracle, name)
        assert isinstance(got, property) == isinstance(want, property), name
        if not isinstance(want, property):
            assert inspect.signature(got, eval_str=True) == inspect.signature(
                want, eval_str=True
            ), name


# --- imports, read from the syntax tree ----------------------------------------------------------


def imported_modules(source: str, package: str) -> set[str]:
    """Absolute names of the modules that ``source``, a module of ``package``, imports (relative
    imports resolved); ``from package import name`` counts ``package.name`` as well, since the
    name may be a submodule."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def private_of_other_packages(modules: set[str], own_package: str) -> set[str]:
    """The private modules (``miaudit.X._y``) of a package X other than ``own_package`` that
    ``modules`` reach."""
    bad = set()
    for m in modules:
        parts = m.split(".")
        if len(parts) < 3 or parts[0] != "miaudit" or parts[1] == own_package:
            continue
        private = [i for i, p in enumerate(parts) if i >= 2 and p.startswith("_")]
        if private:
            bad.add(".".join(parts[: private[0] + 1]))
    return bad


def _module_and_package(path: Path) -> tuple[str, str]:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), ".".join(parts[:-1])
    return ".".join(parts), ".".join(parts[:-1])


def _service_sources() -> list[Path]:
    return [*sorted((SRC / "serve").glob("*.py")), SRC / "cli" / "_serve.py"]


def test_import_reader_resolves_relative_and_from_imports() -> None:
    src = "import miaudit.errors\nfrom . import _store\nfrom .._oracle import CountingOracle\n"
    got = imported_modules(src, "miaudit.attacks.sub")
    assert {"miaudit.errors", "miaudit.attacks.sub._store", "miaudit.attacks._oracle"} <= got
    src = "from miaudit.attacks import _oracle, Oracle\nfrom miaudit.serve._store import Store\n"
    got = imported_modules(src, "miaudit.cli")
    assert private_of_other_packages(got, "cli") == {
        "miaudit.attacks._oracle",
        "miaudit.serve._store",
    }
    assert private_of_other_packages(got, "serve") == {"miaudit.attacks._oracle"}


@pytest.mark.parametrize("path", _service_sources(), ids=lambda p: p.name)
def test_the_service_uses_only_public_names_of_other_packages(path: Path) -> None:
    module, package = _module_and_package(path)
    own = module.split(".")[1]
    bad = private_of_other_packages(imported_modules(path.read_text("utf-8"), package), own)
    assert not bad, f"{module} imports {sorted(bad)}"


def test_uvicorn_loads_the_app_by_its_public_name() -> None:
    # uvicorn imports the app factory from this string in each worker: an import all the same.
    tree = ast.parse((SRC / "cli" / "_serve.py").read_text("utf-8"))
    targets = [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and ":app_from_env" in n.value
    ]
    assert targets == ["miaudit.serve:app_from_env"]


def test_nothing_below_the_service_imports_it() -> None:
    checked = 0
    for path in SRC.rglob("*.py"):
        module, package = _module_and_package(path)
        if module.split(".")[1:2] in (["serve"], ["cli"]):
            continue
        imports = imported_modules(path.read_text("utf-8"), package)
        assert not {m for m in imports if m == "miaudit.serve" or m.startswith("miaudit.serve.")}, (
            f"{module} imports the service"
        )
        checked += 1
    assert checked > 50  # the walk found the library
