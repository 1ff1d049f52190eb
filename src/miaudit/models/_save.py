"""Safe model files: safetensors for torch weights, skops for scikit-learn. Never pickle.

A torch module of the user's own is rebuilt by their factory (trusted code) and filled from
safetensors: :func:`load_torch_module`.

Files are written atomically; integrity (sha256) is the engine cache's manifest's job.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from miaudit._io import atomic_path
from miaudit.errors import InputError


def save_torch_state(
    path: Path, state: dict[str, Any], metadata: dict[str, str] | None = None
) -> None:
    """Write tensors (torch or numpy) to ``path`` in safetensors format (restricted 0600)."""
    import torch
    from safetensors.torch import save_file

    tensors = {
        k: (
            v if isinstance(v, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(v))
        ).contiguous()
        for k, v in state.items()
    }
    with atomic_path(path, restricted=True) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_torch_state(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


def save_sklearn(path: Path, estimator: Any) -> None:
    import skops.io as sio

    with atomic_path(path, restricted=True) as tmp:
        sio.dump(estimator, tmp)


def load_sklearn(path: Path) -> Any:
    """Load a skops file whose every node is an allow-listed class (models/_skops_policy.py);
    anything else is refused with an InputError naming the file and the untrusted types."""
    from miaudit.models._skops_policy import load_checked

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError("model", f"cannot read {str(path)!r} ({exc.strerror})") from None
    return load_checked(data, path.name)


def import_factory(name: str, *, code_dir: Path | str | None, field: str) -> Any:
    """The function named ``package.module:function``, imported with ``code_dir`` first on the
    path (its module's top-level code runs: callers check trust first)."""
    import importlib
    import sys

    module_name, sep, attr = name.partition(":")
    if not sep or not module_name or not attr.isidentifier():
        raise InputError(field, f"must be 'package.module:function', got {name!r}")
    added = code_dir is not None and str(code_dir) not in sys.path
    if added:
        sys.path.insert(0, str(code_dir))
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise InputError(field, f"cannot import {name!r} ({type(exc).__name__}: {exc})") from None
    finally:
        if added:
            sys.path.remove(str(code_dir))
    if not callable(fn):
        raise InputError(field, f"{name!r} is not callable")
    return fn


#: The largest width or class count read from a weights file's metadata: the factory allocates
#: by them before the weights are checked against its module (a 224-byte file claiming 250
#: million features took 2.2 GB first).
MAX_MODULE_SIZE = 9_999_999


def module_sizes(
    path: Path, field: str, n_features: int | None, n_classes: int | None
) -> tuple[int, int]:
    """(n_features, n_classes) of the module whose weights are at ``path``: as given, else from
    the safetensors metadata (where the writer put them as whole numbers)."""
    from safetensors import safe_open

    if not path.is_file():
        raise InputError(field, f"no weights file at {str(path)!r}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            stored = sum(math.prod(fh.get_slice(k).get_shape()) for k in fh.keys())  # noqa: SIM118 - safe_open has no __iter__
    except Exception as exc:  # noqa: BLE001 - safetensors' errors for a malformed file vary
        raise InputError(field, f"{path.name} is not a readable safetensors file ({exc})") from None
    sizes: dict[str, int] = {}
    for key, given in (("n_features", n_features), ("n_classes", n_classes)):
        if given is not None:
            sizes[key] = given
        elif re.fullmatch(r"[1-9][0-9]{0,6}", meta.get(key, "")) and int(meta[key]) <= stored:
            # ASCII, 1 to 9,999,999, and no more than the values stored: a module's input width
            # and class count are each a dimension of one of its weights (9,999,999 features of
            # a 124-byte file cost 1.08 GB before).
            sizes[key] = int(meta[key])
        elif key in meta:
            raise InputError(
                field,
                f"{path.name} records {key} = {meta[key][:20]!r}, not a count from 1 to {MAX_MODULE_SIZE:,} within the {stored:,} values it stores (give it yourself if the file is right)",
            )
        else:
            raise InputError(
                f"--{key.replace('_', '-')}" if field.startswith("--") else key,
                f"{path.name} does not record it; give it (the factory is called with n_features, n_classes)",
            )
    return sizes["n_features"], sizes["n_classes"]


def _built(
    factory: Any, width: int, classes: int, params: dict[str, Any] | None, field: str
) -> Any:
    """``factory(width, classes, **params)``; its refusals and failed allocations in one line."""
    try:
        return factory(width, classes, **(params or {}))
    except TypeError as exc:
        raise InputError(
            "--params" if field.startswith("--") else "params",
            f"the factory refused its arguments ({exc})",
        ) from None
    except (MemoryError, RuntimeError) as exc:  # sizes too large to allocate: said in one line
        raise InputError(
            field,
            f"the factory's module for {width} features and {classes} classes cannot be built ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})",
        ) from None


def load_torch_module(
    weights: Path | str,
    factory: str | Any,
    *,
    params: dict[str, Any] | None = None,
    n_features: int | None = None,
    n_classes: int | None = None,
    trust_code: bool = False,
    code_dir: Path | str | None = None,
    field: str = "model",
    factory_field: str = "factory",
) -> Any:
    """A torch module built by the user's ``factory(n_features, n_classes, **params)`` and
    filled from a safetensors file (data: tensors only, loaded strictly by name and shape).

    ``factory`` is a callable, or ``"package.module:function"``, imported only with
    ``trust_code`` (it runs code: docs/security.md). ``n_features``/``n_classes`` default to the
    file's metadata. Returns the module in eval mode, checked to map (2, n_features) float32 to
    (2, n_classes) logits.
    """
    import torch

    if isinstance(factory, str):
        if not trust_code:
            raise InputError(
                factory_field,
                f"{factory!r} names code, which is imported and run: pass --trust-code "
                "(trust_code=True in Python) if you trust it",
            )
        factory = import_factory(factory, code_dir=code_dir, field=factory_field)
    path = Path(weights)
    width, classes = module_sizes(path, field, n_features, n_classes)
    module = _built(factory, width, classes, params, field)
    if not isinstance(module, torch.nn.Module):
        raise InputError(factory_field, f"returned {type(module).__name__}, not a torch.nn.Module")
    try:
        module.load_state_dict(load_torch_state(path), strict=True)
    except Exception as exc:  # noqa: BLE001 - safetensors' and torch's errors vary by defect
        detail = " ".join(str(exc).split())[:200]
        raise InputError(
            field, f"{path.name} does not fit the factory's module ({type(exc).__name__}: {detail})"
        ) from None
    module.eval()
    with torch.no_grad():
        out = module(torch.zeros(2, width))
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(
            factory_field, f"the module maps (2, {width}) to {shape}, not (2, {classes}) logits"
        )
    if not bool(torch.isfinite(out).all()):
        raise InputError(
            field, f"{path.name} gives logits that are not finite (NaN or inf weights)"
        )
    return module
