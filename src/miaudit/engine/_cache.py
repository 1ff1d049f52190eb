"""The model cache. Its unit is the training unit.

A unit's key hashes everything its bits depend on: the data, the recipe (precision included;
for a recipe naming the user's code, the sha256 of each file defining it, not the folder it was
found in), the seed, each model's member indices, the unit layout, the thread count, the device,
and the torch, scikit-learn and numpy versions. A unit is published atomically (trained into a temporary
folder, its manifest of file hashes written last, then the folder renamed into place) and
verified before any reuse: a missing, mismatched or truncated file means the unit is retrained,
never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from miaudit.errors import InputError
from miaudit.models import (
    AnyRecipe,
    PythonRecipe,
    SklearnRecipe,
    TorchModuleRecipe,
    code_digests,
    code_names,
)

#: Bump when the files of a unit change meaning: old units are then keyed differently.
CACHE_FORMAT = "miaudit.unit/1"
MANIFEST = "manifest.json"
LOGITS = "logits.npy"


@dataclass(frozen=True)
class KeyParts:
    """What a unit's key hashes (each field changes the key)."""

    data: str
    recipe: str
    seed: int
    members: str
    layout: str
    threads: int
    versions: str
    # The torch device ("cpu", "cuda", "cuda:N"): a GPU rounds differently from the CPU.
    device: str = "cpu"
    format: str = CACHE_FORMAT

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:32]


def recipe_key(recipe: AnyRecipe) -> str:
    """The recipe as its units' keys hash it. A recipe naming code (a scikit-learn estimator of
    the user's included) adds the hash of each file defining it (editing the code retrains) and
    leaves out ``path`` (the same code found in another folder is the same model); other
    recipes hash as they always have."""
    dumped = recipe.model_dump(mode="json")
    if isinstance(recipe, PythonRecipe | TorchModuleRecipe):
        dumped.pop("path", None)
        dumped["code"] = code_digests(recipe)
    elif isinstance(recipe, SklearnRecipe) and code_names(recipe):
        # An estimator of the user's is code too: without its hash an edited class reused the
        # units of the old one (red team).
        dumped["code"] = {"model.estimator": _estimator_digest(recipe)}
    return json.dumps(dumped, sort_keys=True)


def _estimator_digest(recipe: SklearnRecipe) -> str:
    """The hash :func:`code_digests` gives the module defining the estimator (with the user's
    modules it imports), asked through a ``module:Class`` reference, the form it reads."""
    module, _, name = recipe.estimator.rpartition(".")
    try:
        return code_digests(PythonRecipe(train=f"{module}:{name}"))["model.train"]
    except InputError as exc:
        raise InputError("model.estimator", exc.problem) from None


def recorded_code(parts: KeyParts) -> dict[str, str]:
    """The code hashes a unit's key was computed with (field → sha256; empty for built-in kinds)."""
    code: dict[str, str] = json.loads(parts.recipe).get("code") or {}
    return code


def members_digest(keep_rows: np.ndarray) -> str:
    """Hash of the member indices of each model of a unit (rows of the keep matrix)."""
    h = hashlib.sha256()
    for row in np.asarray(keep_rows, dtype=bool):
        h.update(np.flatnonzero(row).astype(np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()


def library_versions() -> str:
    """The library versions that can change a unit's bits (part of every cache key).

    Read from the installed distributions rather than by importing torch: the coordinating
    process only hashes keys and gathers logits, and importing torch there would cost every run
    over a second before the first worker starts.
    """
    import importlib.metadata as metadata
    import sys

    from miaudit.models import TRAINING_REVISION

    # One source whether or not torch is imported yet (a source build without metadata
    # falls back to the module), so a run never computes two keys for one installation.
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_mod = sys.modules.get("torch")
        torch_version = torch_mod.__version__ if torch_mod is not None else "absent"
    return f"torch={torch_version};sklearn={metadata.version('scikit-learn')};numpy={np.__version__};training={TRAINING_REVISION}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unit_dir(cache: Path, key: str) -> Path:
    return cache / "units" / key


def staging_dir(cache: Path, key: str) -> Path:
    """A fresh private folder to train a unit into (removed if it exists from a dead run)."""
    path = cache / "units" / f".tmp-{key}-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, mode=0o700)
    return path


def publish(staging: Path, cache: Path, key: str, parts: KeyParts, info: dict[str, object]) -> Path:
    """Write the manifest (file hashes) last, then move the unit into place atomically."""
    files = {
        p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(staging.iterdir())
        if p.is_file()
    }
    manifest = {
        "format": CACHE_FORMAT,
        "key": key,
        "parts": asdict(parts),
        "files": files,
        "info": info,
    }
    tmp = staging / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, staging / MANIFEST)
    final = unit_dir(cache, key)
    if final.exists():
        shape = np.load(staging / LOGITS, mmap_mode="r").shape
        if verify(cache, key, tuple(shape))[0]:
            # Another run published this unit meanwhile: same key, same bits; keep theirs so
            # that a reader of it is never disturbed.
            shutil.rmtree(staging)
            return final
        shutil.rmtree(final)  # a unit that failed verification: replace it
    os.replace(staging, final)
    return final


def verify(cache: Path, key: str, expected_shape: tuple[int, ...]) -> tuple[bool, str]:
    """(usable, reason). Usable only if the manifest matches the key and every listed file
    exists with its recorded size and hash, and the logits have the expected shape."""
    folder = unit_dir(cache, key)
    if not folder.exists():
        return False, "not cached"
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False, "manifest missing or unreadable"
    if manifest.get("key") != key or manifest.get("format") != CACHE_FORMAT:
        return False, "manifest is for another key"
    files = manifest.get("files") or {}
    if LOGITS not in files:
        return False, "manifest lists no logits"
    for name, meta in files.items():
        path = folder / name
        if not path.is_file():
            return False, f"{name} missing"
        if path.stat().st_size != meta.get("bytes"):
            return False, f"{name} has the wrong size (truncated?)"
        if sha256_file(path) != meta.get("sha256"):
            return False, f"{name} does not match its recorded hash"
    try:
        shape = np.load(folder / LOGITS, mmap_mode="r").shape
    except (OSError, ValueError):
        return False, "logits unreadable"
    if tuple(shape) != tuple(expected_shape):
        return False, f"logits have shape {tuple(shape)}, expected {tuple(expected_shape)}"
    return True, "verified"


def clean_stale_staging(cache: Path) -> None:
    """Remove staging folders of processes that no longer exist (killed runs)."""
    units = cache / "units"
    if not units.is_dir():
        return
    for path in units.glob(".tmp-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie counts as dead.
    with contextlib.suppress(Exception), open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        return fh.read().split()[2] != "Z"
    return True
