"""Writing an audit's files, split by who may see them.

- ``results.json`` — shareable aggregates (0644).
- ``scores.parquet`` — restricted (0600): one row per record with membership, the training roster.
- ``pseudonym.key`` — restricted (0600): the key behind the pseudonyms in results.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from miaudit._io import (
    atomic_path,
    ensure_private_dir,
    read_regular_file,
    refuse_link,
    write_text_atomic,
)
from miaudit.audit._pseudonyms import folder_key, is_key_file, key_path, publish_key
from miaudit.errors import InputError

RESULTS_FILE = "results.json"
SCORES_FILE = "scores.parquet"
MANIFEST_FILE = "manifest.json"
# What each kind of run writes into its folder (folders of runs older than the manifest are
# recognised by their marker file: audit.json, tradeoff.json, train.json, else results.json).
# report.pdf is written later, by `miaudit report --pdf` (and listed by no manifest): named so
# that a run replacing this one removes it too (an --overwrite kept the earlier run's PDF,
# shareable, beside the new results).
RUN_FILES = {
    "attack": (RESULTS_FILE, SCORES_FILE, "report.html", "report.pdf"),
    "audit": (
        RESULTS_FILE,
        SCORES_FILE,
        "report.html",
        "report.pdf",
        "audit.json",
        "train.json",
        "signals",
    ),
}
#: The folders among RUN_FILES (written by the run itself before its other files).
RUN_FOLDERS = frozenset({"signals"})
COMPATIBLE = {
    ("audit", "train")
}  # an audit trains too: it may follow `miaudit train` into its folder
MARKERS = (
    ("audit.json", "audit"),
    ("tradeoff.json", "tradeoff"),
    ("dp_audit.json", "dp-audit"),
    ("train.json", "train"),
    (RESULTS_FILE, "attack"),
)
KINDS = frozenset(kind for _, kind in MARKERS)
#: Every command's marker file, `miaudit exposure`'s too (it keeps no manifest of this kind).
RUN_MARKERS = (*MARKERS, ("exposure.json", "exposure"))
#: Largest manifest.json and results.json read from an output folder before a run (miaudit
#: writes a few hundred bytes and some hundred kilobytes; a link to /dev/zero was read until
#: memory ran out).
MAX_MANIFEST_BYTES = 1 << 20
MAX_RESULTS_BYTES = 64 << 20


def refuse_another_run(out: Path, *, own: str, advice: str) -> None:
    """InputError when ``out`` holds another command's run than ``own``, found by its marker
    file (its files would stay beside this run's and be read as theirs)."""
    for marker, kind in RUN_MARKERS:
        if kind != own and (out / marker).exists():
            raise InputError(
                "--out", f"{str(out)!r} holds a `miaudit {kind}` run ({marker}): {advice}"
            )


def folder_kind(out: Path) -> tuple[str | None, tuple[str, ...]]:
    """(kind of the run whose files are in ``out``, the files it wrote), from its manifest.

    The manifest is a file in a folder anyone may have written, so it only *selects* among the
    names that kind of run writes (:data:`RUN_FILES`): a name it lists that miaudit does not
    write there is never returned, so never removed as an earlier run's file. It is read as
    :func:`~miaudit._io.read_regular_file` reads (a link, FIFO, device or one over
    :data:`MAX_MANIFEST_BYTES` is refused: InputError); one that is not a manifest's JSON is
    passed over for the marker files."""
    import json

    try:  # an InputError (a ValueError) is raised, not passed over
        text = read_regular_file(
            out / MANIFEST_FILE, "run manifest", max_bytes=MAX_MANIFEST_BYTES, field="--out"
        )
    except FileNotFoundError:
        text = b""
    try:
        manifest = json.loads(text)
        kind, files = str(manifest["kind"]), tuple(str(f) for f in manifest["files"])
        if kind in KINDS:
            known = RUN_FILES.get(kind, ())
            # a report.pdf was written later, by `miaudit report`: no manifest lists it
            return kind, tuple(f for f in dict.fromkeys((*files, "report.pdf")) if f in known)
    except (ValueError, KeyError, TypeError, RecursionError):
        pass
    for marker, kind in MARKERS:
        if (out / marker).exists():
            return kind, RUN_FILES.get(kind, ())
    return None, ()


def _check_run_paths(out: Path, kind: str) -> None:
    """Refuse a folder (not a link) standing where this kind of run writes a file, before any
    work: miaudit would otherwise fail after the run with half of its files written, or, with
    --overwrite, remove a folder it did not write; and a link where it writes a folder, whose
    restricted files would land wherever the link points (red team)."""
    for name in RUN_FILES.get(kind, ()):
        path = out / name
        if name not in RUN_FOLDERS and path.is_dir() and not path.is_symlink():
            raise InputError(
                "--out",
                f"{str(path)!r} is a folder where miaudit writes its {name!r} file: move it or choose another folder",
            )
        if name in RUN_FOLDERS:
            refuse_link(path, name)


def prepare_out(
    out: Path, *, overwrite: bool, same_config: str | None = None, kind: str = "attack"
) -> bytes:
    """Check the output folder before any work, and return its pseudonym key (new or existing;
    an existing key that is short, empty or readable by others is refused).

    Existing results are replaced only with ``overwrite``, or when they came from the same
    config (``same_config``: its digest), i.e. a re-run. A folder holding another kind of run
    (an audit's, when this is an attack) is refused even with ``overwrite``: its other files
    (``signals/``…) would stay beside the new results and be read as theirs.
    """
    ensure_private_dir(out)  # it holds restricted files: 0700 when miaudit makes it
    _check_run_paths(out, kind)
    existing = out / RESULTS_FILE
    found, _files = folder_kind(out)
    if found is not None and found != kind and (kind, found) not in COMPATIBLE:
        raise InputError(
            "--out",
            f"{str(out)!r} holds a `miaudit {found}` run; --overwrite replaces only a `miaudit {kind}` run's files: choose another folder",
        )
    if (
        existing.exists()
        and not overwrite
        and not (same_config and _config_of(existing) == same_config)
    ):
        raise InputError(
            "--out",
            f"{str(existing)!r} already exists (from another run); choose another folder or pass --overwrite",
        )
    return folder_key(out)


def drop_replaced_run(out: Path, *, kind: str) -> None:
    """Before a run that writes into ``out`` as it goes (an audit writes its signals, then its
    results), remove the result files of the earlier run it replaces, so that a run failing or
    killed midway never leaves results older than the signals beside them.

    Also on a re-run of the same config, which is allowed without ``--overwrite``: a config's
    digest does not cover the data file's contents, a trust_code module or library versions,
    so its new signals may differ from the old ones, and an interrupted re-run after a data
    refresh left the old results.json, scores.parquet, report.html and manifest beside the new
    signals; check-record and report read the mix (red team). Resuming loses nothing: the
    results are computed again from the signals, and training reuses the verified cached
    models. Key files and folders stay (the run replaces ``signals/`` itself); a link is
    removed, never followed."""
    _check_run_paths(out, kind)
    _, earlier = folder_kind(out)
    for name in (*earlier, MANIFEST_FILE):
        path = out / name
        if name in RUN_FOLDERS or is_key_file(name):
            continue
        if path.is_symlink() or path.is_file():
            path.unlink()


def _config_of(results: Path) -> str | None:
    """The config digest recorded in an earlier run's results.json (read as :func:`folder_kind`
    reads the manifest: a FIFO there hung the re-run); None when it records none."""
    import json

    try:  # an InputError (a ValueError) is raised, not passed over
        text = read_regular_file(
            results, "results file", max_bytes=MAX_RESULTS_BYTES, field="--out"
        )
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    digest = data.get("config_sha256") if isinstance(data, dict) else None
    return digest if isinstance(digest, str) else None


def write_scores(
    path: Path,
    record_id: np.ndarray,
    member: np.ndarray,
    label: np.ndarray,
    scores: dict[str, np.ndarray],
    extra: dict[str, np.ndarray] | None = None,
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            **(extra or {}),
            "record_id": record_id,
            "member": member.astype(np.int8),
            "label": label,
            **{f"score_{k}": v for k, v in scores.items()},
        }
    )
    with atomic_path(path, restricted=True) as tmp:
        pq.write_table(table, tmp)


def _check_reads_back(results_json: str) -> None:
    """Before any file: results that would not read back are miaudit's fault, not a file's (a
    NaN band was written, then refused as "not miaudit results" when the report read it)."""
    from pydantic import ValidationError

    from miaudit.audit._results import AuditResult

    try:
        AuditResult.from_json(results_json)
    except ValidationError as exc:
        raise RuntimeError(f"the results made do not read back: {exc}") from None


def _remove_earlier(out: Path, kind: str, earlier: tuple[str, ...]) -> None:
    """Remove the files ``earlier`` (what the folder's earlier run wrote) that this run writes
    anew; a link itself is removed, never what it points to."""
    keep = (
        {"signals", "audit.json", "train.json"} if kind == "audit" else set()
    )  # written by this run already
    for name in earlier:
        path = out / name
        if name in keep or is_key_file(name):
            continue
        if path.is_symlink() or path.is_file():
            path.unlink()


def write_run(
    out: Path,
    key: bytes,
    results_json: str,
    record_id: np.ndarray,
    member: np.ndarray,
    label: np.ndarray,
    scores: dict[str, np.ndarray],
    *,
    extra: dict[str, np.ndarray] | None = None,
    quiet: bool = False,
    kind: str = "attack",
    restricted_results: bool = False,
) -> None:
    """Write a run's files; first publish its key, then remove what the folder's earlier run of
    the same kind wrote (its manifest says what), so that nothing of it stays beside the new
    results. The key comes first: a run that lost the key race to another run of the folder is
    refused before it removes anything (it removed the winner's fresh results.json and
    scores.parquet, then was refused: red team).
    ``restricted_results``: results.json names records in clear (``--raw-ids``), so it is
    written 0600 like the scores, not shareable."""
    import json

    _check_reads_back(results_json)
    _check_run_paths(out, kind)
    _, earlier = folder_kind(out)
    new = [key_path(out)] if publish_key(out, key) else []
    try:
        _remove_earlier(out, kind, earlier)
        new += [
            p
            for p in (out / SCORES_FILE, out / RESULTS_FILE, out / MANIFEST_FILE)
            if not p.exists()
        ]
        write_scores(out / SCORES_FILE, record_id, member, label, scores, extra)
        write_text_atomic(out / RESULTS_FILE, results_json, restricted=restricted_results)
        files = [*RUN_FILES[kind]]
        write_text_atomic(out / MANIFEST_FILE, json.dumps({"kind": kind, "files": files}, indent=1))
    except BaseException:  # a full disk, say: no file of this run stays half-made beside the others
        for p in new:
            p.unlink(missing_ok=True)
        raise
    if not quiet:
        share = (
            "results.json and the report name records by their ids too (--raw-ids): they are restricted as well; share neither."
            if restricted_results
            else "share only results.json and reports."
        )
        print(
            f"warning: {out / SCORES_FILE} holds per-record membership (the training roster): it was created restricted (0600); {share}",
            file=sys.stderr,
        )


def write_shareable_report(out: Path) -> Path | None:
    """``report.html`` in ``out`` (shareable), as the command line writes it; None when no report
    writer is installed (the report layer was left out)."""
    from miaudit import _io

    return _io.report_writer(out) if _io.report_writer is not None else None
