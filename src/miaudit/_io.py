"""Atomic, permission-aware file writing, and the reading helpers every layer shares.

Every file miaudit writes is first written to a temporary file in the destination folder and
then renamed, so a failed run never leaves a partial file behind. Restricted files (per-record
scores with membership, i.e. the training roster) are created 0600 from the start.

An npz member's shape and dtype are read from its header alone (:func:`npz_header`), so that
every npz reader can bound what it decompresses before it does.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import math
import os
import stat
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, ParamSpec, TypeVar

import numpy as np

from miaudit.errors import InputError

RESTRICTED_MODE = 0o600
SHARED_MODE = 0o644
#: A folder of restricted files, as miaudit creates it (see :func:`ensure_private_dir`).
PRIVATE_DIR_MODE = 0o700

#: Writes ``report.html`` into a results folder and returns its path. The report layer sits
#: above the audit layer, so ``audit()`` and ``attack()`` reach it only through this slot, which
#: the ``miaudit`` package (the facade above every layer) fills when it is imported.
report_writer: Callable[[Path], Path] | None = None


def ensure_writable_dir(path: Path, field: str = "--out") -> Path:
    """Create ``path`` if needed and check that files can be written there."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            field, f"cannot create output directory {str(path)!r} ({exc.strerror})"
        ) from None
    if not path.is_dir():
        raise InputError(field, f"{str(path)!r} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(field, f"output directory {str(path)!r} is not writable")
    return path


def ensure_private_dir(path: Path, field: str = "--out") -> Path:
    """:func:`ensure_writable_dir` for a folder of restricted files (a run's folder,
    ``signals/``, ``models/``, a cache's ``units/``): created 0700 whatever the umask (under
    umask 000 they were 0777, and any local user could replace signals.npz or scores.parquet:
    red team). A folder that exists keeps its mode: it is the user's, not miaudit's to change.
    Missing parents are created as :func:`ensure_writable_dir` creates them."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path, PRIVATE_DIR_MODE)
    except FileExistsError:
        pass  # the user's (or another run's), or not a folder: checked below
    except OSError as exc:
        raise InputError(
            field, f"cannot create output directory {str(path)!r} ({exc.strerror})"
        ) from None
    else:  # the umask may also have taken bits the owner needs: set the mode on the folder made
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchmod(fd, PRIVATE_DIR_MODE)
        finally:
            os.close(fd)
    return ensure_writable_dir(path, field)


def refuse_link(path: Path, name: str, field: str = "--out") -> None:
    """Refuse a link at ``path``, where miaudit writes its folder ``name``: the restricted files
    written there would land wherever the link points (red team: another run's signals were
    overwritten)."""
    if path.is_symlink():
        raise InputError(
            field,
            f"{str(path)!r} is a link where miaudit writes its {name!r} folder: remove it or choose another folder",
        )


@contextlib.contextmanager
def output_dir_cleanup(path: Path | None) -> Iterator[None]:
    """Remove the folders this block created for ``path`` if the block fails and they are still
    empty, with the empty folders made inside them (``models/``, ``signals/``), so that bad input
    leaves no empty output folder behind (a folder that existed, or holds any file, stays)."""
    created = []
    if path is not None:
        for folder in (Path(path), *Path(path).parents):
            if folder.exists():
                break
            created.append(folder)
    try:
        yield
    except BaseException:
        if created:  # what it holds was made by this block: its empty folders go, files stay
            _remove_empty_folders(created[-1])
        raise


def _remove_empty_folders(top: Path) -> None:
    """Remove the empty folders under ``top``, then ``top`` if empty, through folder handles:
    a folder swapped for a link while the block ran is neither followed nor removed (``os.walk``
    followed a top that had become a link)."""
    with contextlib.suppress(OSError):
        for _root, dirs, _files, root_fd in os.fwalk(top, topdown=False, follow_symlinks=False):
            for name in dirs:
                with contextlib.suppress(OSError):
                    os.rmdir(name, dir_fd=root_fd)  # only ever an empty folder
    with contextlib.suppress(OSError):
        os.rmdir(top)  # a link there is not a folder: ENOTDIR


_P = ParamSpec("_P")
_R = TypeVar("_R")


def cleans_output_dir(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """``fn`` (whose argument ``out`` is its output folder) run in :func:`output_dir_cleanup`:
    a refusal leaves no folder it made."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        out = signature.bind(*args, **kwargs).arguments.get("out")
        with output_dir_cleanup(None if out is None else Path(out)):
            return fn(*args, **kwargs)

    return run


@contextlib.contextmanager
def atomic_path(dest: Path, *, restricted: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` if the block succeeds."""
    dest = Path(dest)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, RESTRICTED_MODE if restricted else SHARED_MODE)
        os.close(fd)
        yield tmp
        # Writers such as pyarrow may recreate the file: enforce the mode again before publishing.
        os.chmod(tmp, RESTRICTED_MODE if restricted else SHARED_MODE)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_text_atomic(dest: Path, text: str, *, restricted: bool = False) -> None:
    with atomic_path(dest, restricted=restricted) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(dest: Path, data: bytes, *, restricted: bool = False) -> None:
    with atomic_path(dest, restricted=restricted) as tmp:
        tmp.write_bytes(data)


def plainly_not_random(value: bytes, longest: int = 16) -> bool:
    """Whether a secret's bytes are plainly not random: at most 3 distinct byte values, or one
    pattern of at most ``longest`` bytes over and over (``b"password" * 4``, zeros).

    >>> plainly_not_random(b"password" * 4), plainly_not_random(bytes(range(32)))
    (True, False)
    """
    return len(set(value)) < 4 or any(
        len(value) > k and value == (value[:k] * (len(value) // k + 1))[: len(value)]
        for k in range(1, longest + 1)
    )


def read_secret_file(
    path: Path, what: str, *, max_bytes: int, if_read: str, field: str | None = None
) -> bytes:
    """The bytes of a secret file (a pseudonym key, the server secret), at most ``max_bytes``.

    A regular file (not a link, FIFO or device: opened without following links or blocking),
    owned by this user with one name (one planted by someone else, or with another name
    elsewhere, may be known to them), not readable or writable by group or others: else an
    InputError naming the file, whose mode message says ``if_read`` (what a reader could do
    with it). FileNotFoundError when there is none. What the bytes must be is the caller's.
    ``field`` names the input in the error (the file's path when None; else the path starts the
    message).
    """
    name, at = (str(path), "") if field is None else (field, f"{str(path)!r} ")
    fd = _open_regular(path, what, name, at)
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid() or info.st_nlink != 1:
            raise InputError(
                name,
                f"{at}is owned by another user or has other names (hard links): someone else may know this {what}; remove it and rerun",
            )
        if info.st_mode & 0o077:
            raise InputError(
                name,
                f"{at}has mode {stat.S_IMODE(info.st_mode):04o}: others may read the {what}, {if_read}; make it 0600 (chmod 600) only if you are sure nobody read it, else remove it and rerun",
            )
        return _read_at_most(fd, max_bytes, what, name, at)
    finally:
        os.close(fd)


def read_regular_file(path: Path, what: str, *, max_bytes: int, field: str | None = None) -> bytes:
    """The bytes of a file miaudit reads as data from a folder anyone may have written (an
    output folder's manifest.json or results.json): a regular file, opened without following a
    link or blocking, of at most ``max_bytes``; else an InputError naming the file (a FIFO there
    hung a re-run for ever, a link to /dev/zero read until memory ran out: red team).
    FileNotFoundError when there is none. ``field`` as in :func:`read_secret_file`."""
    name, at = (str(path), "") if field is None else (field, f"{str(path)!r} ")
    fd = _open_regular(path, what, name, at)
    try:
        return _read_at_most(fd, max_bytes, what, name, at)
    finally:
        os.close(fd)


def _open_regular(path: Path, what: str, name: str, at: str) -> int:
    """A read-only descriptor of ``path`` if it is a regular file: a link is not followed and a
    FIFO or device is not waited on (the open does not block, the type is checked on the
    descriptor itself, so nothing can be swapped in between)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise InputError(
            name, f"{at}cannot be read as the {what} ({exc.strerror}; a link is refused)"
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(name, f"{at}is not a regular file; a {what} is one")
    return fd


def _read_at_most(fd: int, max_bytes: int, what: str, name: str, at: str) -> bytes:
    size = os.fstat(fd).st_size
    if size > max_bytes:
        raise InputError(name, f"{at}is {size} bytes, not a {what}")
    with os.fdopen(fd, "rb", closefd=False) as fh:
        data: bytes = fh.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew since fstat
        raise InputError(name, f"{at}is over {max_bytes} bytes, not a {what}")
    return data


def finite_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None. JSON has no NaN or ∞ (Python
    writes ``Infinity``, which strict readers refuse): a privacy record's ε = ∞ is written as
    null and read back as ∞ (``PrivacySpent``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


def dumps_json(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`finite_json` (standard JSON whatever floats ``value`` holds)."""
    return json.dumps(finite_json(value), allow_nan=False, **kwargs)


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes (hex)."""
    with Path(path).open("rb") as fh:
        return sha256_of(fh)


def sha256_of(fh: BinaryIO) -> str:
    """The SHA-256 of what is left to read in an open file, a megabyte at a time (hex)."""
    h = hashlib.sha256()
    for block in iter(lambda: fh.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def npz_header(z: Any, name: str) -> tuple[tuple[int, ...], np.dtype] | None:
    """(shape, dtype) of the member ``name`` of an open npz file (``np.load``'s ``NpzFile``)
    from its header alone (no decompression); None when the header cannot be peeked at (see
    :func:`npz_header_or_reason`)."""
    header = npz_header_or_reason(z, name)
    return None if isinstance(header, str) else header


def npz_header_or_reason(z: Any, name: str) -> tuple[tuple[int, ...], np.dtype] | str:
    """(shape, dtype) of the member that ``z[name]`` reads, from its header alone (a few
    hundred bytes are decompressed), or why it is not an array as ``np.savez`` writes one: a zip
    member without the ``.npy`` suffix (numpy returns such a member's bytes whole, however many
    they inflate to, and a member ``x`` is read for ``z["x"]`` even beside ``x.npy``), an npy
    format version other than 1.0 and 2.0, or no npy header at all."""
    try:
        member = z.zip.getinfo(name).filename
    except KeyError:
        member = f"{name}.npy"
    if not member.endswith(".npy"):
        return f"zip member {member!r} has no .npy suffix"
    try:
        with z.zip.open(member) as fp:
            return npy_header(fp)
    except (
        KeyError,
        ValueError,
        OSError,
        zipfile.BadZipFile,
        RuntimeError,
        NotImplementedError,
    ) as exc:
        # RuntimeError: an encrypted member; NotImplementedError: an unknown compression method
        return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def npy_header(fp: Any) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the header of the ``.npy`` data at ``fp``'s position, leaving ``fp``
    at the array's first byte; ValueError for a format version other than 1.0 and 2.0 (what
    ``np.save`` writes for arrays of numbers)."""
    fmt = np.lib.format
    version = fmt.read_magic(fp)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f"npy format version {version}")
    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, _fortran, dtype = read(fp)
    return tuple(shape), np.dtype(dtype)
