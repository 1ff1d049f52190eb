"""The user's own code named by a recipe (``model.train``, ``model.factory``,
``model.train_step``): found like a Python import with the recipe's folder first, hashed for
the cache key, and imported only under ``trust_code`` (docs/security.md).

Finding a module's file does not run it: the search walks ``importlib``'s path finder, package
by package, without importing a package's ``__init__``. The key hashes the bytes of the file
that defines each named function and of every module of the user's own code it imports
(models/_local_imports.py; with ``params``, which are part of the recipe), so editing any of
them retrains (docs/own-model.md).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from miaudit.errors import InputError, UserCodeError, first_line
from miaudit.models._local_imports import local_closure
from miaudit.models._recipe import AnyRecipe, PythonRecipe, TorchModuleRecipe

#: Module name → sha256 of its file when this module last imported it (a stale import of an
#: edited file is re-imported, never run under the new file's key).
_IMPORTED: dict[str, str] = {}


def code_names(recipe: object) -> dict[str, str]:
    """The code a recipe names, by field (``{"model.train": "pkg.mod:fit"}``); empty when it
    names none. A scikit-learn estimator outside scikit-learn's classifiers is code too."""
    if isinstance(recipe, PythonRecipe):
        return {"model.train": recipe.train}
    if isinstance(recipe, TorchModuleRecipe):
        named = {"model.factory": recipe.factory}
        return named | ({"model.train_step": recipe.train_step} if recipe.train_step else {})
    from miaudit.models._recipe import SklearnRecipe
    from miaudit.models._sklearn import names_code

    if isinstance(recipe, SklearnRecipe) and names_code(recipe):
        return {"model.estimator": recipe.estimator}
    return {}


def check_code_trust(recipe: object, trust_code: bool) -> None:
    """Refuse a recipe naming code unless the config or command line opted in (docs/security.md):
    one line naming the field, before anything is imported."""
    named = code_names(recipe)
    if trust_code or not named:
        return
    field, ref = next(iter(named.items()))
    what = (
        f"{ref!r} is not one of scikit-learn's classifiers"
        if field == "model.estimator"
        else f"{ref!r} is your own code"
    )
    raise InputError(
        field,
        f"{what}; naming code runs it: set trust_code = true in the config or pass --trust-code if you trust it",
    )


def resolve_code_folder(recipe: AnyRecipe, base: Path) -> AnyRecipe:
    """A recipe read from a config file in folder ``base``: its code is looked for in ``base``
    first (or in its ``path``, taken relative to ``base``). Other recipes are returned as is."""
    if not isinstance(recipe, PythonRecipe | TorchModuleRecipe):
        return recipe
    folder = recipe.path if recipe.path is not None and recipe.path.is_absolute() else None
    if folder is None:
        folder = base / recipe.path if recipe.path is not None else base
    return recipe.model_copy(update={"path": folder.resolve()})


def search_path(folder: Path | None) -> list[str]:
    """Where modules are looked for: ``folder`` first, then ``sys.path``."""
    return [str(folder), *sys.path] if folder is not None else list(sys.path)


def module_file(module: str, folder: Path | None) -> Path | None:
    """The file that defines ``module`` (found as an import would, ``folder`` first), without
    running any of its code; None if there is none. A module already imported from elsewhere
    (a script run as ``__main__``) is found through its ``__file__``."""
    if module == "__main__":  # the running script: never searched for (nor re-run)
        main = getattr(sys.modules.get(module), "__file__", None)
        return Path(main) if main else None
    locations: list[str] | None = search_path(folder)
    parts = module.split(".")
    spec = None
    for i in range(len(parts)):
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]), locations)
        if spec is None:
            break
        locations = list(spec.submodule_search_locations or [])
    if spec is not None and spec.has_location and spec.origin:
        return Path(spec.origin)
    loaded = getattr(sys.modules.get(module), "__file__", None)
    return Path(loaded) if loaded else None


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def closure_digest(digests: dict[str, str], module: str) -> str:
    """From each file's sha256 (by module name): ``module``'s alone when it imports none of the
    user's modules (keys made before helper modules were hashed stay valid), else the hash of
    every (name, file hash) pair."""
    if len(digests) == 1:
        return digests[module]
    h = hashlib.sha256()
    for name in sorted(digests):
        h.update(f"{name}\0{digests[name]}\n".encode())
    return h.hexdigest()


def _code_files(field: str, module: str, folder: Path | None) -> dict[str, Path]:
    path = module_file(module, folder)
    if path is None:
        where = f" (searched {str(folder)!r} first)" if folder else ""
        raise InputError(field, f"cannot find module {module!r}{where}")
    try:
        return local_closure(module, path, folder)
    except ValueError as exc:
        raise InputError(field, f"{module!r} {exc}") from None


def code_digests(recipe: PythonRecipe | TorchModuleRecipe) -> dict[str, str]:
    """Per field naming code, the hash of the file defining it and of the user's own modules it
    imports (what the cache key hashes). InputError naming the field when the module cannot be
    found."""
    out = {}
    for field, ref in code_names(recipe).items():
        module = ref.partition(":")[0]
        files = _code_files(field, module, recipe.path)
        out[field] = closure_digest({n: file_digest(f) for n, f in files.items()}, module)
    return out


@contextmanager
def users_code(field: str, what: str) -> Iterator[None]:
    """Run a block of the user's code: what it raises is :class:`UserCodeError` naming ``field``
    (``what``: the code, e.g. ``'pkg.mod:fit'``), never a miaudit "internal error"; a
    ``sys.exit`` in it is an error too (it ended miaudit with the code's status: exit 0 for
    ``sys.exit(0)``, which a ``--fail-on`` gate read as a pass). miaudit's own InputErrors and
    Ctrl-C pass through."""
    import traceback

    try:
        yield
    except InputError:
        raise
    except SystemExit as exc:
        raise UserCodeError(
            field,
            f"{what} called sys.exit({exc.code!r}); a recipe's code must return or raise, not exit",
        ) from None
    except Exception as exc:
        raise UserCodeError(
            field,
            f"{what} raised {type(exc).__name__}: {first_line(exc)} (your code; MIAUDIT_DEBUG=1 shows its traceback)",
            traceback.format_exc(),
        ) from exc


def code_name(fn: object) -> str:
    """``module:qualname`` of a function of the user's (as a recipe names it)."""
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}:{getattr(fn, '__qualname__', type(fn).__name__)}"


@contextmanager
def code_folder(folder: Path | None) -> Iterator[None]:
    """``folder`` first on ``sys.path`` for a block (imports the user's code makes while it
    runs resolve as when it was loaded), then removed."""
    entry = str(folder) if folder is not None else None
    if entry is None or (sys.path and sys.path[0] == entry):
        yield
        return
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        if entry in sys.path:
            sys.path.remove(entry)


def load_function(
    recipe: PythonRecipe | TorchModuleRecipe, field: str, expected: str | None = None
) -> Callable[..., Any]:
    """Import the function that ``field`` names (the caller has checked ``trust_code``).

    ``expected``: the file's sha256 recorded in the cache key; a file edited since then is
    refused (the unit would be published under a key that does not describe it).
    """
    ref = code_names(recipe)[field]
    module_name, _, attr = ref.partition(":")
    files = _code_files(field, module_name, recipe.path)
    path = files[module_name]
    digests = {n: file_digest(f) for n, f in files.items()}  # each file read once
    digest = closure_digest(digests, module_name)
    if expected is not None and digest != expected:
        raise InputError(
            field,
            f"{str(path)!r} or a module of yours it imports changed while the run was going (it is not the code its cache key names); run again",
        )
    with code_folder(recipe.path):
        helpers = {n: f for n, f in files.items() if n != module_name}
        stale = _drop_stale_imports(helpers, digests)
        if stale and module_name != "__main__":
            sys.modules.pop(module_name, None)  # it holds the old helpers' objects: run it again
        module = _import_fresh(module_name, path, digest, field)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise InputError(field, f"module {module_name!r} has no {attr!r}")
    if not callable(obj):
        raise InputError(field, f"{ref!r} is not callable")
    return obj  # type: ignore[no-any-return]  # checked callable above


def _import_fresh(name: str, path: Path, digest: str, field: str) -> Any:
    """The module ``name`` as defined by the bytes of ``path`` now: imported, or re-imported
    when the loaded one came from another file or from older bytes of this one."""
    loaded = sys.modules.get(name)
    if loaded is not None and name != "__main__":
        same_file = _same_file(getattr(loaded, "__file__", None), path)
        if not same_file:
            del sys.modules[name]  # another module of that name (another project's folder)
            loaded = None
        elif _IMPORTED.get(name) != digest:
            loaded = _reload(loaded, field)
    if loaded is None:
        with _importing(field, name):
            loaded = importlib.import_module(name)
    _IMPORTED[name] = digest
    return loaded


def _drop_stale_imports(files: dict[str, Path], digests: dict[str, str]) -> bool:
    """Forget the user's helper modules imported from other bytes (or another file) than they
    have now, so that importing the named module imports them afresh; whether any was."""
    stale = False
    for name, path in files.items():
        digest = digests[name]
        loaded = sys.modules.get(name)
        changed = loaded is not None and (
            not _same_file(getattr(loaded, "__file__", None), path) or _IMPORTED.get(name) != digest
        )
        if changed and name != "__main__":
            del sys.modules[name]
            stale = True
        _IMPORTED[name] = digest
    return stale


def _reload(module: Any, field: str) -> Any:
    with _importing(field, module.__name__):
        return importlib.reload(module)


@contextmanager
def _importing(field: str, name: str) -> Iterator[None]:
    """Importing the user's module ``name``: a module not found is "cannot import"; anything
    else its code raises (a syntax error, an exception, ``sys.exit``) is theirs."""
    try:
        with users_code(field, f"importing {name!r}"):
            yield
    except UserCodeError as exc:
        if not isinstance(exc.__cause__, ImportError):
            raise
        raise InputError(field, f"cannot import {name!r}: {exc.__cause__}") from None


def _same_file(a: str | None, b: Path) -> bool:
    try:
        return a is not None and Path(a).resolve() == b.resolve()
    except OSError:
        return False
