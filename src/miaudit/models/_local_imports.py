"""The user's own modules a named module imports, found by reading source, never by running it.

The cache key of a recipe naming code hashes the file defining each named function *and* every
module of the user's own code it imports, at any depth and from inside any function (an
``import`` in a training step counts; so does ``importlib.import_module("helpers")`` or
``__import__("helpers")`` of a name written in the source, not a computed one): editing a
helper module retrains, as editing the named file does. "The user's own code" is what an import finds in the code's folder itself (the
config's folder or ``path``; without one, the folder the named module's top-level package lives
in); installed packages and the standard library are not (a framework upgrade is not in the key,
docs/own-model.md). When the code's folder is an installed-packages folder, only the named
module's own top-level package counts.
"""

from __future__ import annotations

import ast
import importlib.machinery
import sysconfig
from pathlib import Path

#: A closure larger than this is refused rather than walked (a folder of generated modules).
MAX_MODULES = 5_000


def _installed_roots() -> set[Path]:
    paths = sysconfig.get_paths()
    return {
        Path(paths[k]).resolve()
        for k in ("stdlib", "platstdlib", "purelib", "platlib")
        if k in paths
    }


def code_root(module: str, path: Path, folder: Path | None) -> Path:
    """The folder the user's code is imported from: ``folder`` when the recipe names one, else
    the folder holding the named module's top-level package (a script's own folder)."""
    if folder is not None:
        return folder
    root = path.parent.parent if path.name == "__init__.py" else path.parent
    for _ in module.split(".")[1:] if module != "__main__" else ():
        root = root.parent
    return root


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _imported_names(module: str, path: Path) -> set[str]:
    """Every module name ``path``'s source may import (with each package on the way and, for
    ``from x import y``, ``x.y`` in case ``y`` is a submodule). Unreadable source: none."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError, RecursionError, MemoryError):
        return set()  # its import fails at run time, naming the problem
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_of(module, path).split(".") if module != "__main__" else []
                up = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                base = ".".join([*up, *([base] if base else [])])
            if base:
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call):
            names.update(_dynamic_import(node, module, path))
    with_parents: set[str] = set()
    for name in names:
        parts = name.split(".")
        with_parents.update(".".join(parts[: i + 1]) for i in range(len(parts)) if parts[0])
    return with_parents


def _literal(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _argument(call: ast.Call, position: int, keyword: str) -> ast.expr | None:
    if len(call.args) > position:
        return call.args[position]
    return next((k.value for k in call.keywords if k.arg == keyword), None)


def _dynamic_import(call: ast.Call, module: str, path: Path) -> set[str]:
    """The modules a call imports by a name written in the source: ``importlib.import_module``
    (or ``import_module`` imported from importlib) of a string literal, relative to a literal
    package or ``__package__``, and ``__import__`` of a literal with a literal ``fromlist``.
    A helper loaded this way was not seen, so editing it reused the old models (red team).
    Computed names (a variable, an f-string) cannot be read without running the code."""
    func = call.func
    if isinstance(func, ast.Name) and func.id == "__import__":
        name = _literal(_argument(call, 0, "name"))
        level = _argument(call, 4, "level")
        if name is None or (
            level is not None and not (isinstance(level, ast.Constant) and level.value == 0)
        ):
            return set()
        fromlist = _argument(call, 3, "fromlist")
        items = fromlist.elts if isinstance(fromlist, ast.List | ast.Tuple) else []
        return {name} | {f"{name}.{item}" for e in items if (item := _literal(e)) and item != "*"}
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if called != "import_module":
        return set()
    name = _literal(_argument(call, 0, "name"))
    if name is None:
        return set()
    if not name.startswith("."):
        return {name}
    package_arg = _argument(call, 1, "package")
    if isinstance(package_arg, ast.Name) and package_arg.id == "__package__":
        package = _package_of(module, path) if module != "__main__" else ""
    else:
        package = _literal(package_arg) or ""
    dots = len(name) - len(name.lstrip("."))
    parts = package.split(".") if package else []
    if not parts or dots > len(parts):
        return set()
    return {".".join([*parts[: len(parts) - dots + 1], *([name[dots:]] if name[dots:] else [])])}


def _find(name: str, root: Path) -> Path | None:
    """The file ``name`` is defined by when imported from ``root`` alone (no code runs)."""
    locations: list[str] | None = [str(root)]
    spec = None
    for i, _ in enumerate(parts := name.split(".")):
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]), locations)
        if spec is None:
            return None
        locations = list(spec.submodule_search_locations or [])
    if spec is not None and spec.has_location and spec.origin:
        origin = Path(spec.origin)
        return origin if origin.is_file() else None
    return None


def local_closure(module: str, path: Path, folder: Path | None) -> dict[str, Path]:
    """Module name → file for ``module`` and every module of the user's own code it imports,
    transitively (see the module docstring for what counts as the user's own code)."""
    root = code_root(module, path, folder)
    installed = root.resolve() in _installed_roots()
    own_top = module.split(".")[0]
    found: dict[str, Path] = {module: path}
    todo = [module]
    while todo:
        name = todo.pop()
        file = found[name]
        if file.suffix != ".py":
            continue  # compiled extensions are hashed, not read
        for dep in sorted(_imported_names(name, file)):
            if dep in found or (installed and dep.split(".")[0] != own_top):
                continue
            dep_file = _find(dep, root)
            if dep_file is None:
                continue  # not the user's code (installed, built in) or not a module at all
            found[dep] = dep_file
            todo.append(dep)
            if len(found) > MAX_MODULES:
                raise ValueError(
                    f"imports more than {MAX_MODULES:,} modules of its own folder {str(root)!r}"
                )
    return found
