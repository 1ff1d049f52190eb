"""The layering of miaudit, checked on the import statements of every module in src/miaudit.

Every import counts: at module level, inside functions, under ``TYPE_CHECKING``, absolute or
relative. Two rules:

(a) a package imports only itself and packages of lower layers (:data:`LAYERS`);
(b) no module imports another package's private module (``miaudit.X._y`` from outside X) or a
    private name (``from miaudit.X import _y``): it imports the public name from ``miaudit.X``.

The top-level modules ``errors``, ``_version`` and ``_io`` are the base every package builds on;
the top-level package ``miaudit`` itself (its lazy names) is the facade above everything.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "miaudit"
ROOT = "miaudit"  # the top-level package's own __init__: the facade

#: Lowest first. A package may import the packages of any lower layer, never those of its own
#: layer (report and serve are independent) or above. metrics sits below attacks (attacks
#: evaluate with the shared AUC); defenses below attacks (an oracle applies the output policy).
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(layer)
    for layer in (
        {"errors", "_version", "_io"},
        {"data"},
        {"datasets"},
        {"models"},
        {"engine"},
        {"signals"},
        {"metrics"},
        {"defenses"},
        {"attacks"},
        {"audit"},
        {"report", "serve"},
        {"cli"},
        {ROOT},
    )
)
#: Top-level modules every package may import, private names aside.
BASE = LAYERS[0]


@dataclass(frozen=True)
class Import:
    """One imported miaudit module or name: ``target`` is dotted (``miaudit.engine._cache``)."""

    file: str  # relative to src/miaudit
    line: int
    target: str
    statement: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.statement}"


def owner(module: str) -> str:
    """The package (or base module) a dotted miaudit name belongs to; ROOT for ``miaudit``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def _module_name(rel: str) -> tuple[str, bool]:
    """(dotted module name, is a package ``__init__``) of a file relative to src/miaudit."""
    parts = [ROOT, *Path(rel).with_suffix("").parts]
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a ``from … import`` names (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    here = module.split(".") if is_package else module.split(".")[:-1]
    base = here[: len(here) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(rel: str, source: str, modules: frozenset[str]) -> list[Import]:
    """Every miaudit module or name imported by the file ``rel`` (relative to src/miaudit).

    ``modules``: the dotted names of miaudit's modules, to tell ``from miaudit.X import y`` of a
    submodule ``y`` from that of a name ``y``: both yield ``miaudit.X.y``."""
    module, is_package = _module_name(rel)
    found = []
    for node in ast.walk(ast.parse(source)):
        statement = ast.unparse(node) if isinstance(node, ast.Import | ast.ImportFrom) else ""
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, module, is_package)
            if base == ROOT:  # ``from miaudit import X``: a submodule X, or a facade name
                targets = [
                    f"{ROOT}.{a.name}" if f"{ROOT}.{a.name}" in modules else ROOT
                    for a in node.names
                ]
            else:
                targets = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found += [
            Import(rel, node.lineno, t, statement)
            for t in targets
            if t == ROOT or t.startswith(f"{ROOT}.")
        ]
    return found


def _is_private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def violations(imp: Import) -> list[str]:
    """What rules (a) and (b) say of one import (empty: allowed)."""
    mine = owner(_module_name(imp.file)[0])
    theirs = owner(imp.target)
    if theirs == mine:
        return []
    out = []
    layer = {name: i for i, names in enumerate(LAYERS) for name in names}
    if theirs not in BASE and layer[theirs] >= layer[mine]:
        out.append(f"{mine} (layer {layer[mine]}) imports {theirs} (layer {layer[theirs]})")
    if any(_is_private(p) for p in imp.target.split(".")[2:]):  # below miaudit.X
        out.append(f"{mine} imports {theirs}'s private {imp.target}")
    return out


def _sources() -> dict[str, str]:
    return {
        str(p.relative_to(SRC)): p.read_text(encoding="utf-8") for p in sorted(SRC.rglob("*.py"))
    }


def _all_modules(rels: list[str]) -> frozenset[str]:
    return frozenset(_module_name(r)[0] for r in rels)


def _all_imports() -> list[Import]:
    sources = _sources()
    modules = _all_modules(list(sources))
    return [imp for rel, text in sources.items() for imp in imports_of(rel, text, modules)]


# --- the rules on the real tree --------------------------------------------------------------------


def test_every_package_has_a_layer() -> None:
    on_disk = {owner(_module_name(rel)[0]) for rel in _sources()}
    listed = set().union(*LAYERS)
    assert on_disk == listed, (
        f"not in LAYERS: {sorted(on_disk - listed)}; in LAYERS but absent: {sorted(listed - on_disk)}"
    )


def test_no_package_imports_a_higher_layer() -> None:
    bad = [f"{imp}  ({why})" for imp in _all_imports() for why in violations(imp) if "layer" in why]
    bad = list(dict.fromkeys(bad))  # one line per statement, however many names it imports
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_no_import_of_another_packages_private_module_or_name() -> None:
    bad = [
        f"{imp}  (import the public name from miaudit.{owner(imp.target)})"
        for imp in _all_imports()
        if any("private" in why for why in violations(imp))
    ]
    bad = list(dict.fromkeys(bad))
    assert not bad, "private imports across packages:\n" + "\n".join(bad)


# --- the checker itself, on made-up modules ---------------------------------------------------------

MODULES = frozenset(
    {"miaudit", "miaudit.engine", "miaudit.engine._cache", "miaudit.models", "miaudit.audit"}
)


def _check(rel: str, source: str) -> list[str]:
    return [why for imp in imports_of(rel, source, MODULES) for why in violations(imp)]


@pytest.mark.parametrize(
    ("rel", "source", "expect"),
    [
        ("engine/_run.py", "from miaudit.models import train_unit", []),
        ("engine/_run.py", "from miaudit.engine import _cache", []),  # its own package
        ("engine/_run.py", "from . import _cache\nfrom ._cache import KeyParts", []),
        ("engine/_run.py", "from miaudit._io import write_text_atomic", []),
        ("cli/_app.py", "from miaudit._version import __version__", []),
        ("engine/_run.py", "def f():\n    import miaudit.audit\n", ["layer"]),
        ("models/_x.py", "from ..engine import train", ["layer"]),
        ("report/_x.py", "from miaudit.serve import create_app", ["layer"]),  # same layer
        ("cli/_app.py", "from miaudit import __version__", ["layer"]),  # the facade
        ("audit/_x.py", "from miaudit.engine import _cache", ["private"]),
        ("audit/_x.py", "from miaudit.engine._cache import KeyParts", ["private"]),
        ("audit/_x.py", "import miaudit.engine._cache as c", ["private"]),
        ("audit/_x.py", "from ..engine._cache import KeyParts", ["private"]),
        ("audit/_x.py", "from miaudit.engine import _helper", ["private"]),
        ("audit/_x.py", "from miaudit._io import _private", ["private"]),
        (
            "models/_x.py",
            "if TYPE_CHECKING:\n    from miaudit.engine._cache import K",
            ["layer", "private"],
        ),
    ],
)
def test_the_checker_finds_what_it_should(rel: str, source: str, expect: list[str]) -> None:
    found = _check(rel, source)
    assert [k for k in ("layer", "private") if any(k in why for why in found)] == expect, found


def test_a_failure_names_file_line_and_import() -> None:
    (imp,) = imports_of(
        "audit/_x.py", "import numpy\n\nfrom miaudit.engine._cache import K\n", MODULES
    )
    assert str(imp) == "audit/_x.py:3: from miaudit.engine._cache import K"
