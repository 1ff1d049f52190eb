"""Sequence signals: what causal language models say about each text (docs/formats.md, "Sequence
signals"), the input of the text attacks (docs/method.md §13).

Per record and per model: the log-probability of every actual next token, and the mean μ and
variance σ² of log p(z) for z drawn from the model's predicted next-token distribution at that
position (min-k %++ standardises by them); per record: the zlib-compressed length of the UTF-8
text the target model scored (the whole text, or the prefix that fits in its context). Token
arrays are ragged; they are kept flat with one row of offsets per model, so record i of model k
is ``log_prob[offsets[k, i] : offsets[k, i + 1]]``. Models may tokenise differently (a base
model and a fine-tune share a tokenizer; another reference need not).

The texts themselves are personal data and are not stored: a :class:`SequenceStore` holds only
numbers, but its ``keep`` matrix is the training roster, so its file is written 0600 like every
signals file.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from miaudit._io import atomic_path, npz_header
from miaudit.errors import InputError

SEQUENCE_SCHEMA = "miaudit.sequence-signals/1"
Role = Literal["target", "base", "reference"]
_ROLES = ("target", "base", "reference")
_ARRAYS = ("record_id", "zlib_bytes", "offsets", "log_prob", "mean", "var", "keep", "population")


class _TokenStats(Protocol):
    # Read-only: frozen dataclasses (miaudit.models.TokenStats) fit too.
    @property
    def log_prob(self) -> np.ndarray: ...
    @property
    def mean(self) -> np.ndarray: ...
    @property
    def var(self) -> np.ndarray: ...


class _CausalLM(Protocol):
    def token_stats(self, texts: Sequence[str], batch_size: int = ...) -> Sequence[_TokenStats]: ...
    def scored_chars(self, texts: Sequence[str]) -> Sequence[int]: ...


def zlib_bytes(texts: Sequence[str]) -> np.ndarray:
    """zlib-compressed length (level 9, bytes) of each text's UTF-8 encoding.

    Examples
    --------
    >>> zlib_bytes(["aaaaaaaaaaaaaaaaaaaa", "the quick brown fox"]).tolist()
    [11, 27]
    """
    return np.array([len(zlib.compress(t.encode("utf-8"), 9)) for t in texts], dtype=np.int64)


@dataclass(frozen=True, eq=False)
class ModelTokens:
    """One model's next-token statistics on n records, flat: record i is ``[offsets[i], offsets[i+1])``."""

    offsets: np.ndarray
    log_prob: np.ndarray
    mean: np.ndarray
    var: np.ndarray

    @classmethod
    def from_stats(cls, stats: Sequence[_TokenStats]) -> ModelTokens:
        lengths = np.array([len(s.log_prob) for s in stats], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

        def flat(name: str) -> np.ndarray:
            parts = [np.asarray(getattr(s, name), dtype=np.float64) for s in stats]
            return np.concatenate(parts) if parts else np.zeros(0)

        return cls(offsets, flat("log_prob"), flat("mean"), flat("var"))

    @property
    def n_tokens(self) -> np.ndarray:
        """Scored tokens per record."""
        counts: np.ndarray = np.diff(self.offsets)
        return counts

    def per_record(self, values: np.ndarray) -> list[np.ndarray]:
        """``values`` (one per token) split by record."""
        return np.split(values, self.offsets[1:-1])


@dataclass(frozen=True, eq=False)
class SequenceStore:
    """Several causal LMs' sequence signals on one pool of texts (schema ``miaudit.sequence-signals/1``).

    ``models[k]`` is model k's :class:`ModelTokens`; ``roles[k]`` is ``"target"`` (the audited
    model: exactly one), ``"base"`` (the model it was fine-tuned from: at most one; reference
    calibration divides by its likelihood) or ``"reference"`` (fine-tunes of the base on other
    records, for LiRA and RMIA). ``keep[k, i]``: model k was trained (fine-tuned) on record i —
    row ``target`` is the audited membership; a base model's row is all False. ``population``:
    records no model trained on (RMIA's comparison records).
    """

    record_id: np.ndarray
    zlib_bytes: np.ndarray
    models: tuple[ModelTokens, ...]
    roles: tuple[Role, ...]
    keep: np.ndarray
    population: np.ndarray
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_store(self)

    @property
    def n_records(self) -> int:
        return int(self.record_id.shape[0])

    @property
    def target(self) -> int:
        return self.roles.index("target")

    @property
    def base(self) -> int | None:
        return self.roles.index("base") if "base" in self.roles else None

    @property
    def references(self) -> list[int]:
        return [k for k, r in enumerate(self.roles) if r == "reference"]

    @property
    def member(self) -> np.ndarray:
        """The audited model's membership (1 = trained on the record)."""
        member: np.ndarray = self.keep[self.target].astype(np.int8)
        return member

    def __repr__(self) -> str:
        return f"SequenceStore({self.n_records} records, roles={list(self.roles)})"


def _check_store(store: SequenceStore) -> None:
    n = store.record_id.shape[0]
    k = len(store.models)
    if len(store.roles) != k or store.keep.shape != (k, n) or store.population.shape != (n,):
        raise InputError(
            "sequence signals",
            f"{k} models, {len(store.roles)} roles, keep {store.keep.shape}, population {store.population.shape}: expected ({k}, {n}) and ({n},)",
        )
    if store.zlib_bytes.shape != (n,):
        raise InputError("zlib_bytes", f"has shape {store.zlib_bytes.shape}, expected ({n},)")
    if n and store.zlib_bytes.min() < 1:  # a compressed length: 0 or less reversed zlib's AUC
        raise InputError(
            "zlib_bytes", f"must be ≥ 1 (compressed lengths), has {store.zlib_bytes.min()}"
        )
    _check_roles(store.roles)
    if len(np.unique(store.record_id.astype(str))) != n:
        raise InputError("record_id", "has duplicates")
    for i, m in enumerate(store.models):
        _check_tokens(m, n, f"model {i}")
    if (store.keep[:, store.population]).any():
        raise InputError("population", "holds records a model trained on")
    base = store.base
    if base is not None and store.keep[base].any():
        raise InputError(
            "keep", "the base model's row must be all False (it never saw the private records)"
        )


def _check_roles(roles: Sequence[str]) -> None:
    roles = list(roles)
    bad = [r for r in roles if r not in _ROLES]
    if bad or roles.count("target") != 1 or roles.count("base") > 1:
        raise InputError(
            "roles", f"need one 'target', at most one 'base', else 'reference'; got {roles}"
        )


def _check_tokens(m: ModelTokens, n: int, field: str) -> None:
    if m.offsets.shape != (n + 1,) or m.offsets[0] != 0 or (np.diff(m.offsets) < 0).any():
        raise InputError(f"{field} offsets", f"must be ({n + 1},), start at 0 and not decrease")
    total = int(m.offsets[-1])
    for name in ("log_prob", "mean", "var"):
        values = getattr(m, name)
        if values.shape != (total,):
            raise InputError(f"{field} {name}", f"has shape {values.shape}, expected ({total},)")
        if not np.isfinite(values).all():
            raise InputError(f"{field} {name}", "contains NaN or inf")
    if (m.log_prob > 1e-9).any():
        raise InputError(f"{field} log_prob", "has values above 0 (not log-probabilities)")
    if (m.var < 0).any():
        raise InputError(f"{field} var", "has negative variances")
    if (np.diff(m.offsets) < 1).any():
        raise InputError(
            f"{field} offsets",
            "a record has no scored token (texts need ≥ 2 tokens, or a BOS token)",
        )


def sequence_signals(
    models: Sequence[_CausalLM],
    roles: Sequence[Role],
    texts: Sequence[str],
    keep: np.ndarray,
    *,
    record_id: Sequence[Any] | np.ndarray | None = None,
    population: np.ndarray | None = None,
    batch_size: int = 16,
    names: Sequence[str] = (),
) -> SequenceStore:
    """Compute a :class:`SequenceStore`: every model's token statistics on every text, in batches
    on the CPU (``models``: e.g. :func:`miaudit.models.load_hf_causal_lm` results).

    ``keep``: (models, texts) membership, or (texts,) for the target alone when there is no
    reference model. ``population``: texts no model trained on, kept apart as RMIA's comparison
    records and not evaluated (default none).

    ``zlib_bytes`` is computed on the part of each text the target model scored
    (``scored_chars``: the whole text unless it is longer than the model's context), so that
    the zlib attack divides the log-likelihood of a text by the compressed length of the same
    text (docs/method.md §13.1).
    """
    texts = list(texts)
    n = len(texts)
    _check_roles(roles)
    if len(models) != len(roles):
        raise InputError("roles", f"{len(roles)} roles for {len(models)} models")
    keep = _keep_matrix(keep, roles, n)
    ids = np.arange(n) if record_id is None else np.asarray(record_id)
    pop = np.zeros(n, dtype=bool) if population is None else np.asarray(population, dtype=bool)
    # before the scoring: a target that cannot say what it scored is refused in seconds
    compressed = _scored_zlib_bytes(models[list(roles).index("target")], texts)
    tokens = tuple(ModelTokens.from_stats(m.token_stats(texts, batch_size)) for m in models)
    return SequenceStore(
        record_id=ids,
        zlib_bytes=compressed,
        models=tokens,
        roles=tuple(roles),
        keep=keep,
        population=pop,
        names=tuple(names),
    )


def _scored_zlib_bytes(target: _CausalLM, texts: list[str]) -> np.ndarray:
    """:func:`zlib_bytes` of the prefix of each text ``target`` scored. A model without
    ``scored_chars`` is refused rather than given the whole texts: a text longer than its
    context would again be compared with more text than it scored."""
    scored = getattr(target, "scored_chars", None)
    if scored is None:
        raise InputError(
            "models",
            f"the target model ({type(target).__name__}) has no scored_chars(texts): zlib needs the part of each text it scored",
        )
    chars = [int(c) for c in scored(texts)]
    if len(chars) != len(texts):
        raise InputError("models", f"scored_chars gave {len(chars)} lengths for {len(texts)} texts")
    bad = next((i for i, c in enumerate(chars) if not 0 <= c <= len(texts[i])), None)
    if bad is not None:
        raise InputError(
            "models",
            f"scored_chars gave {chars[bad]} for text {bad}, of {len(texts[bad])} characters",
        )
    return zlib_bytes([t[:c] for t, c in zip(texts, chars, strict=True)])


def _keep_matrix(keep: np.ndarray, roles: Sequence[Role], n: int) -> np.ndarray:
    arr = np.asarray(keep)
    if arr.ndim == 1:  # the target's membership; a base never trained on the private records
        if any(r == "reference" for r in roles):
            raise InputError(
                "keep", "give a (models, texts) matrix when there are reference models"
            )
        arr = np.stack([arr if r == "target" else np.zeros_like(arr) for r in roles])
    if arr.shape != (len(roles), n) or not np.isin(arr, (0, 1)).all():
        raise InputError("keep", f"must be 0/1 of shape ({len(roles)}, {n}), got {arr.shape}")
    return arr.astype(bool)


def write_sequence_signals(store: SequenceStore, path: str | Path) -> Path:
    """Write ``store`` to an ``.npz`` file, 0600 (the keep matrix is the training roster)."""
    dest = Path(path)
    if dest.suffix != ".npz":
        raise InputError("path", f"sequence signals are written as .npz, got {dest.name!r}")
    k = len(store.models)
    arrays = {
        "record_id": store.record_id,
        "zlib_bytes": store.zlib_bytes,
        "offsets": np.stack([m.offsets for m in store.models]),
        "model_start": np.cumsum([0] + [int(m.offsets[-1]) for m in store.models]),
        "log_prob": np.concatenate([m.log_prob for m in store.models]),
        "mean": np.concatenate([m.mean for m in store.models]),
        "var": np.concatenate([m.var for m in store.models]),
        "keep": store.keep,
        "population": store.population,
    }
    meta = {"schema": SEQUENCE_SCHEMA, "roles": list(store.roles), "names": list(store.names)}
    arrays["miaudit"] = np.array(json.dumps(meta))
    assert arrays["offsets"].shape[0] == k
    with atomic_path(dest, restricted=True) as tmp, tmp.open("wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub types savez's kwargs narrowly
    return dest


#: A file's arrays, uncompressed, may be at most this many times the file's size (or
#: :data:`INFLATION_FLOOR` bytes): ``np.savez`` stores them uncompressed and token statistics
#: hardly compress, so only a decompression bomb goes past it (a 1.6 MB file took 1.77 GB).
MAX_INFLATION = 64
INFLATION_FLOOR = 32 * 2**20  # a 235 KB file reached 1.2 GB under a floor of 256 MiB
_META = "miaudit"


def load_sequence_signals(path: str | Path) -> SequenceStore:
    """Read a file written by :func:`write_sequence_signals` (no pickles: ``allow_pickle=False``).

    Only the arrays the format names are read, each after its header's shape has been checked
    against the record and model counts, and all of them together at most
    :data:`MAX_INFLATION` times the file's size: nothing else in the file is decompressed.
    """
    src = Path(path)
    try:
        with np.load(src, allow_pickle=False) as data:
            _check_headers(src, data)
            arrays = {name: data[name] for name in (*_ARRAYS, "model_start", _META)}
    except InputError:
        raise
    except (OSError, ValueError, TypeError, AttributeError, zipfile.BadZipFile) as err:
        # TypeError, AttributeError: np.load gave an array (an .npy file), not an npz's members.
        raise InputError("sequence signals", f"cannot read {src.name}: {err}") from None
    roles, names = _metadata(src, arrays[_META])
    _check_flags(src, arrays)
    start = arrays["model_start"].astype(np.int64)
    models = tuple(
        ModelTokens(
            arrays["offsets"][k].astype(np.int64),
            *(
                arrays[name][start[k] : start[k + 1]].astype(np.float64)
                for name in ("log_prob", "mean", "var")
            ),
        )
        for k in range(arrays["offsets"].shape[0])
    )
    return SequenceStore(
        record_id=arrays["record_id"],
        zlib_bytes=arrays["zlib_bytes"].astype(np.int64),
        models=models,
        roles=roles,  # type: ignore[arg-type]  # checked against _ROLES by the store
        keep=arrays["keep"].astype(bool),
        population=arrays["population"].astype(bool),
        names=names,
    )


def _check_headers(src: Path, data: Any) -> None:
    """Every named array present, of the shape the record count ``n``, the model count ``k`` and
    the token count imply, and their total within the inflation cap, from the headers alone."""
    headers = {}
    for name in (*_ARRAYS, "model_start", _META):
        if name not in data.files:
            raise InputError("sequence signals", f"{src.name} has no {name!r} array")
        header = npz_header(data, name)
        if header is None:
            raise InputError(name, f"the header of this array in {src.name} cannot be read")
        headers[name] = header
    for name, dims in (("record_id", 1), ("offsets", 2), ("log_prob", 1)):
        if len(headers[name][0]) != dims:
            raise InputError(
                name, f"has shape {headers[name][0]} in {src.name}; expected {dims} dimension(s)"
            )
    n, k, tokens = headers["record_id"][0][0], headers["offsets"][0][0], headers["log_prob"][0]
    expected = {
        "record_id": (n,),
        "zlib_bytes": (n,),
        "population": (n,),
        "offsets": (k, n + 1),
        "keep": (k, n),
        "model_start": (k + 1,),
        "mean": tokens,
        "var": tokens,
        _META: (),
    }
    for name, shape in expected.items():
        if headers[name][0] != shape:
            raise InputError(
                name,
                f"has shape {headers[name][0]} in {src.name}; {n} records and {k} models need {shape}",
            )
    # counted as read: every array becomes 64-bit numbers (float16 zeros took 4x their header)
    total = sum(int(np.prod(s, dtype=np.float64)) * max(d.itemsize, 8) for s, d in headers.values())
    cap = max(INFLATION_FLOOR, MAX_INFLATION * src.stat().st_size)
    if total > cap:
        raise InputError(
            "sequence signals",
            f"{src.name} holds {total:,} bytes of arrays in a {src.stat().st_size:,}-byte file, more than {MAX_INFLATION} times its size",
        )


def _metadata(src: Path, value: np.ndarray) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(roles, names) of the file's JSON metadata, or an InputError naming the file and field."""
    try:
        meta = json.loads(str(value))
    except (ValueError, RecursionError):  # RecursionError: nested past reason
        raise InputError("metadata", f"the miaudit metadata of {src.name} is not JSON") from None
    if not isinstance(meta, dict):
        raise InputError("metadata", f"the miaudit metadata of {src.name} is not a JSON object")
    if meta.get("schema") != SEQUENCE_SCHEMA:
        raise InputError(
            "sequence signals", f"schema {meta.get('schema')!r}, expected {SEQUENCE_SCHEMA!r}"
        )
    out = []
    for field in ("roles", "names"):
        items = meta.get(field, [] if field == "names" else None)
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise InputError(
                f"metadata {field}", f"must be a list of strings in {src.name}, got {items!r:.80}"
            )
        out.append(tuple(items))
    return out[0], out[1]


def _check_flags(src: Path, arrays: dict[str, np.ndarray]) -> None:
    """0/1 membership flags (``astype(bool)`` read 7 as True) and numbers where numbers belong."""
    for name in ("keep", "population"):
        if not np.isin(arrays[name], (0, 1)).all():
            raise InputError(name, f"must hold only 0/1 (False/True) in {src.name}")
    for name in ("zlib_bytes", "offsets", "model_start", "log_prob", "mean", "var"):
        if arrays[name].dtype.kind not in "biuf":
            raise InputError(name, f"must hold numbers in {src.name}, not {arrays[name].dtype}")
