"""The model cache. Its unit is the training unit.

A unit's key hashes everything its bits depend on: the data, the recipe (precision included;
for a recipe naming the user's code, the sha256 of each file defining it, not the folder it was
found in), the seed, each model's member indices, the unit layout, the thread count, the device,
and the torch, scikit-learn and numpy versions (and, for DP-SGD recipes, Opacus's and SciPy's). A unit is published atomically (trained into a temporary
folder, its manifest of file hashes written last, then the folder renamed into place) and
verified before any reuse: a missing, mismatched or truncated file means the unit is retrained,
never used.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import shutil
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from miaudit._io import dumps_json, ensure_private_dir, npy_header, sha256_file
from miaudit._io import sha256_of as _sha256_of
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
#: The files a unit holds (engine/_unit.py writes them): a manifest listing any other is refused.
UNIT_FILES = re.compile(
    r"logits\.npy|weights\.safetensors|preprocess\.safetensors|model_(0|[1-9][0-9]{0,9})\.skops"
)
#: A manifest holds a few hundred bytes per model: one far larger is not one miaudit wrote.
MAX_MANIFEST_BYTES = 16 << 20
#: The most bytes a unit's files may hold in all before any is hashed (a file's hash is read to
#: its end, sparse or not).
MAX_UNIT_BYTES = 64 << 30


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
    import importlib
    import importlib.metadata as metadata

    from miaudit.models import TRAINING_REVISION

    # One source whether or not torch is imported yet (a source build without metadata is
    # imported for its version: "absent" in the coordinator against the version in a worker
    # that had imported it made two keys for one installation, and workers compare them).
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        try:
            torch_version = str(importlib.import_module("torch").__version__)
        except ImportError:
            torch_version = "absent"
    return f"torch={torch_version};sklearn={metadata.version('scikit-learn')};numpy={np.__version__};training={TRAINING_REVISION}"


def key_versions(recipe: object) -> str:
    """The library versions a unit of ``recipe`` is keyed by: :func:`library_versions`, and for a
    DP-SGD recipe Opacus's and SciPy's too. Opacus draws the noise and its accountant computes
    σ and the ε each unit records (SciPy's PRV accountant among them): without them in the key
    an Opacus upgrade reused old units and reported their old ε. Other recipes' keys are
    unchanged (their units stay reusable)."""
    versions = library_versions()
    if getattr(recipe, "dp", None) is None:
        return versions
    return f"{versions};opacus={_version_of('opacus')};scipy={_version_of('scipy')}"


def _version_of(distribution: str) -> str:
    import importlib.metadata as metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "absent"


def versions_differ(here: str, expected: str) -> str:
    """What differs between two :func:`key_versions` strings, in words ("" when nothing does):
    ``torch 2.1.0 here, 2.13.0 in the run's keys``."""
    mine, theirs = _parse_versions(here), _parse_versions(expected)
    return "; ".join(
        f"{name} {mine.get(name, 'absent')} here, {theirs.get(name, 'absent')} in the run's keys"
        for name in sorted(mine.keys() | theirs.keys())
        if mine.get(name) != theirs.get(name)
    )


def _parse_versions(versions: str) -> dict[str, str]:
    return dict(part.partition("=")[::2] for part in versions.split(";") if part)


def unit_dir(cache: Path, key: str) -> Path:
    return cache / "units" / key


def staging_dir(cache: Path, key: str) -> Path:
    """A fresh private folder to train a unit into (removed if it exists from a dead run)."""
    units = ensure_private_dir(cache / "units", field="engine.cache")  # not the umask's 0777
    path = units / f".tmp-{key}-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700)
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
    tmp.write_text(dumps_json(manifest, indent=1), encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, staging / MANIFEST)
    final = unit_dir(cache, key)
    shape = tuple(np.load(staging / LOGITS, mmap_mode="r").shape)
    for _attempt in range(3):
        if _published_by_another(final, cache, key, shape):
            shutil.rmtree(staging)
            return final
        try:
            os.replace(staging, final)
            return final
        except OSError as exc:
            # Another run published the unit since the check (the rename failed where it
            # failed the run, red team): look again, and use theirs once it verifies.
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    raise RuntimeError(f"unit {key}: other runs kept publishing it unverifiable at {final}")


def _published_by_another(final: Path, cache: Path, key: str, shape: tuple[int, ...]) -> bool:
    """Whether a verified unit is at ``final`` already (same key, same bits): it is kept, so
    that a reader of it is never disturbed. Whatever else is there is removed: a unit failing
    verification, or a file or link (the entry itself, never what a link points to)."""
    try:
        entry = os.lstat(final)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(entry.st_mode):
        final.unlink()
        return False
    if verify(cache, key, shape)[0]:
        return True
    shutil.rmtree(final, ignore_errors=True)  # another run may be removing it too
    return False


class Refused(Exception):
    """A unit's files cannot be used (the message says why): it is retrained."""


def verify(cache: Path, key: str, expected_shape: tuple[int, ...]) -> tuple[bool, str]:
    """(usable, reason). Usable only if the manifest matches the key and every listed file
    exists with its recorded size and hash, and the logits are finite float32 of the expected
    shape (:func:`verified_info`)."""
    try:
        verified_info(cache, key, expected_shape)
    except Refused as why:
        return False, str(why)
    return True, "verified"


def verified_info(cache: Path, key: str, expected_shape: tuple[int, ...]) -> dict[str, Any]:
    """The training record (``info``) of a unit that verifies, else :class:`Refused`.

    The cache is a folder anyone with write access may have changed, so nothing in it is
    trusted before it is checked: the folder and its files are opened without following links
    or blocking (a FIFO manifest hung the run, a link to /dev/zero read without end) and must be
    regular, the manifest small, the files it lists among those a unit holds (``../../x`` and
    ``/etc/hostname`` were hashed) and no larger in all than :data:`MAX_UNIT_BYTES` (a listed
    1 TB sparse file was hashed to the end); its parts of the expected types (malformed ones
    were internal errors)."""
    folder = unit_dir(cache, key)
    try:
        entry = os.lstat(folder)
    except OSError:
        raise Refused("not cached") from None
    if stat.S_ISLNK(entry.st_mode):
        raise Refused("the unit folder is a link")
    try:
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise Refused(f"the unit folder cannot be opened ({exc.strerror})") from None
    try:
        manifest = _read_manifest(dir_fd)
        if manifest.get("key") != key or manifest.get("format") != CACHE_FORMAT:
            raise Refused("manifest is for another key")
        files = _listed_files(manifest.get("files"))
        info = _checked_info(manifest.get("info"))
        for name, meta in files.items():
            _check_file(dir_fd, name, meta, expected_shape if name == LOGITS else None)
    finally:
        os.close(dir_fd)
    return info


def _open_unit_file(dir_fd: int, name: str, limit: int) -> BinaryIO:
    """``name`` in the unit folder, opened read-only if it is a regular file (not a link,
    FIFO or device) of at most ``limit`` bytes."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=dir_fd)
    except FileNotFoundError:
        raise Refused(f"{name} missing") from None
    except OSError as exc:
        raise Refused(f"{name} cannot be opened ({exc.strerror}; a link is refused)") from None
    fh = os.fdopen(fd, "rb")
    size = os.fstat(fd)
    if not stat.S_ISREG(size.st_mode):
        fh.close()
        raise Refused(f"{name} is not a regular file")
    if size.st_size > limit:
        fh.close()
        raise Refused(f"{name} is {size.st_size} bytes, more than a unit's {name} holds")
    return fh


def _read_manifest(dir_fd: int) -> dict[str, Any]:
    try:
        with _open_unit_file(dir_fd, MANIFEST, MAX_MANIFEST_BYTES) as fh:
            manifest = json.loads(fh.read(MAX_MANIFEST_BYTES + 1).decode("utf-8"))
    except Refused as why:
        missing = str(why).endswith("missing")
        raise Refused("manifest missing or unreadable" + ("" if missing else f" ({why})")) from None
    except (OSError, ValueError, RecursionError):  # nested past reason: not written by miaudit
        raise Refused("manifest missing or unreadable") from None
    if not isinstance(manifest, dict):
        raise Refused("manifest is not a JSON object")
    return manifest


def _listed_files(files: object) -> dict[str, dict[str, Any]]:
    """The manifest's ``files``: name → {sha256, bytes}, each name one a unit holds."""
    if not isinstance(files, dict) or not all(
        isinstance(meta, dict)
        and isinstance(meta.get("sha256"), str)
        and type(meta.get("bytes")) is int
        and meta["bytes"] >= 0
        for meta in files.values()
    ):
        raise Refused("manifest's list of files is malformed")
    if LOGITS not in files:
        raise Refused("manifest lists no logits")
    if not all(UNIT_FILES.fullmatch(name) for name in files):
        raise Refused("manifest lists a file that is not one of a unit's")
    if sum(meta["bytes"] for meta in files.values()) > MAX_UNIT_BYTES:
        raise Refused(f"manifest lists files of more than {MAX_UNIT_BYTES >> 30} GiB in all")
    return files


def _checked_info(info: object) -> dict[str, Any]:
    """The manifest's training record, with the parts a run reads of the types it reads."""
    if not isinstance(info, dict):
        raise Refused("manifest has no training record (info)")
    seen, privacy = info.get("preprocessing") or [], info.get("privacy") or []
    if not isinstance(seen, list) or not all(_describes_preprocessing(s) for s in seen):
        raise Refused("manifest's record of the preprocessing is malformed")
    if not isinstance(privacy, list) or not all(isinstance(p, dict) for p in privacy):
        raise Refused("manifest's privacy record is malformed")
    return info


def _describes_preprocessing(seen: object) -> bool:
    """One model's entry of ``info["preprocessing"]`` (models/_preprocessing.py), as read."""
    return (
        isinstance(seen, dict)
        and isinstance(seen.get("fit"), str)
        and isinstance(seen.get("records_sha256"), str)
        and {"records", "fitted_columns"} <= seen.keys()
    )


def _check_file(
    dir_fd: int, name: str, meta: dict[str, Any], logits_shape: tuple[int, ...] | None
) -> None:
    with _open_unit_file(dir_fd, name, MAX_UNIT_BYTES) as fh:
        if os.fstat(fh.fileno()).st_size != meta["bytes"]:
            raise Refused(f"{name} has the wrong size (truncated?)")
        if _sha256_of(fh) != meta["sha256"]:
            raise Refused(f"{name} does not match its recorded hash")
        if logits_shape is not None:
            fh.seek(0)
            _check_logits(fh, meta["bytes"], logits_shape)


def _check_logits(fh: BinaryIO, size: int, expected_shape: tuple[int, ...]) -> None:
    """Finite float32 logits of the expected shape, filling the file (as a unit writes them:
    structured ones were internal errors, NaN ones failed the run naming neither unit nor
    cache)."""
    try:
        shape, dtype = npy_header(fh)
    except (OSError, ValueError, SyntaxError, TypeError):
        raise Refused("logits unreadable") from None
    if tuple(shape) != tuple(expected_shape):
        raise Refused(f"logits have shape {tuple(shape)}, expected {tuple(expected_shape)}")
    if dtype != np.dtype(np.float32):
        raise Refused(f"logits are {dtype.str}, not float32")
    if size - fh.tell() != 4 * math.prod(shape):
        raise Refused("logits file does not hold its array exactly")
    for block in iter(lambda: fh.read(1 << 22), b""):
        if not np.isfinite(np.frombuffer(block, dtype=np.float32)).all():
            raise Refused("logits contain NaN or inf")


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
