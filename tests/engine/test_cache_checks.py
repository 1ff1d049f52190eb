"""A cached unit is checked before any of its bytes are trusted: a manifest or file that is a
link, a FIFO, outside the unit, too large or malformed, and logits that are not finite float32
of the expected shape, each mean the unit is refused and retrained (red team), never a hang, an
unbounded read or an internal error. A unit published by another run meanwhile is used."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from miaudit.engine import _cache, train

from .conftest import small_config


def _config():
    return small_config(
        data={"dataset": "breast-cancer", "max_records": 100},
        model={"kind": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"},
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, str]:
    """A run's folder, kept pristine (each test tampers with a copy), its logits and the key
    of its unit 1."""
    out = tmp_path_factory.mktemp("pristine")
    run = train(_config(), out)
    return out, run.signals.logits, run.signals.info.units[1]


def _copy(trained: tuple[Path, np.ndarray, str], dest: Path) -> Path:
    """A copy of the trained run's folder at ``dest``; its unit 1's folder."""
    shutil.copytree(trained[0], dest, symlinks=True)
    return _cache.unit_dir(dest / "models", trained[2])


def _manifest(unit: Path) -> dict:
    return json.loads((unit / "manifest.json").read_text())


def _rehash(unit: Path, manifest: dict, paths: dict[str, Path] | None = None) -> None:
    """Write ``manifest`` with each listed file's true size and hash (as an attacker would)."""
    for name in manifest["files"]:
        data = (paths or {}).get(name, unit / name).read_bytes()
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (unit / "manifest.json").write_text(json.dumps(manifest))


def _listing(absolute: bool) -> Callable[[Path], None]:
    """List a real file outside the unit, by a name relative to the unit or absolute."""

    def tamper(unit: Path) -> None:
        outside = unit.parent.parent.parent / "outside.txt"
        outside.write_text("secret\n")
        name = str(outside) if absolute else "../../../outside.txt"
        m = _manifest(unit)
        m["files"][name] = {}
        _rehash(unit, m, {name: outside})

    return tamper


def _link_to_copy(name: str) -> Callable[[Path], None]:
    """``name`` replaced by a link to an identical copy outside the unit."""

    def tamper(unit: Path) -> None:
        copy = unit.parent.parent.parent / f"copy-{name}"
        copy.write_bytes((unit / name).read_bytes())
        (unit / name).unlink()
        (unit / name).symlink_to(copy)

    return tamper


def _fifo_manifest(unit: Path) -> None:
    (unit / "manifest.json").unlink()
    os.mkfifo(unit / "manifest.json")


def _edit(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def tamper(unit: Path) -> None:
        m = _manifest(unit)
        m = change(m) or m
        (unit / "manifest.json").write_text(json.dumps(m))

    return tamper


def _logits(make: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], None]:
    """Logits rewritten (and rehashed) as ``make`` turns the true ones."""

    def tamper(unit: Path) -> None:
        np.save(unit / "logits.npy", make(np.load(unit / "logits.npy")))
        _rehash(unit, _manifest(unit))

    return tamper


def _nan(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[0, 0, 0] = np.nan
    return x


def _structured(x: np.ndarray) -> np.ndarray:
    return np.zeros(x.shape, dtype=[("a", "<f4"), ("b", "<f4")])


def _without_info(m: dict) -> None:
    del m["info"]


def _files_as_list(m: dict) -> None:
    m["files"] = list(m["files"])


def _entry_as_string(m: dict) -> None:
    m["files"]["logits.npy"] = "logits"


CASES = {
    "manifest-fifo": (_fifo_manifest, "manifest missing or unreadable"),
    "manifest-link": (_link_to_copy("manifest.json"), "manifest missing or unreadable"),
    "file-link": (_link_to_copy("model_2.skops"), "model_2.skops cannot be opened"),
    "relative-outside": (_listing(absolute=False), "not one of a unit's"),
    "absolute-outside": (_listing(absolute=True), "not one of a unit's"),
    "manifest-list": (_edit(lambda m: [1, 2]), "not a JSON object"),
    "files-list": (_edit(_files_as_list), "list of files is malformed"),
    "entry-string": (_edit(_entry_as_string), "list of files is malformed"),
    "no-info": (_edit(_without_info), "no training record"),
    "nan-logits": (_logits(_nan), "NaN or inf"),
    "structured-logits": (_logits(_structured), "not float32"),
    "float16-logits": (_logits(lambda x: x.astype(np.float16)), "not float32"),
    "manifest-nested": (
        lambda unit: (unit / "manifest.json").write_text("[" * 100_000 + "]" * 100_000),
        "manifest missing or unreadable",
    ),
}


@pytest.mark.timeout(60)  # without the checks, a FIFO manifest hung the run
@pytest.mark.parametrize("case", list(CASES))
def test_a_tampered_unit_is_refused_and_retrained(trained, tmp_path, case) -> None:
    out = tmp_path / "out"
    unit = _copy(trained, out)
    tamper, reason = CASES[case]
    tamper(unit)
    run = train(_config(), out)
    assert run.reused == (0,) and run.trained == (1,)
    assert reason in run.refused[1]
    np.testing.assert_array_equal(run.signals.logits, trained[1])


def test_files_larger_in_all_than_a_unit_holds_are_refused_unread(
    trained, tmp_path, monkeypatch
) -> None:
    unit = _copy(trained, tmp_path / "out")
    monkeypatch.setattr(_cache, "MAX_UNIT_BYTES", 1 << 20)
    with (unit / "model_9.skops").open("wb") as fh:
        fh.truncate(2 << 20)  # sparse: a hash would read all of it
    m = _manifest(unit)
    m["files"]["model_9.skops"] = {}
    _rehash(unit, m)
    read = []
    monkeypatch.setattr(_cache, "_sha256_of", lambda fh: read.append(fh) or "")
    ok, why = _cache.verify(unit.parent.parent, unit.name, (2, 100, 2))
    assert not ok and "in all" in why and read == []


def test_a_linked_unit_folder_is_replaced_and_its_target_kept(trained, tmp_path) -> None:
    out = tmp_path / "out"
    unit = _copy(trained, out)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("not the cache's")
    for path in unit.iterdir():
        path.unlink()
    unit.rmdir()
    unit.symlink_to(victim)
    run = train(_config(), out)
    assert run.trained == (1,) and "the unit folder is a link" in run.refused[1]
    assert unit.is_dir() and not unit.is_symlink() and (victim / "keep.txt").is_file()
    np.testing.assert_array_equal(run.signals.logits, trained[1])


def test_a_unit_published_by_another_run_meanwhile_is_used(tmp_path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    parts = _cache.KeyParts("d", "r", 0, "m", "l", 1, "v")
    key = parts.key()

    def stage(tag: str) -> Path:
        folder = cache / "units" / f".tmp-{key}-{tag}"
        folder.mkdir(parents=True)
        np.save(folder / "logits.npy", np.zeros((1, 3, 2), np.float32))
        return folder

    theirs, ours = stage("A"), stage("B")
    replace = os.replace

    def racing_replace(src, dst) -> None:
        if str(src) == str(ours):  # the other run wins between our check and our rename
            monkeypatch.setattr(os, "replace", replace)
            _cache.publish(theirs, cache, key, parts, {})
        replace(src, dst)  # ours now fails: the folder is there and not empty

    monkeypatch.setattr(os, "replace", racing_replace)
    final = _cache.publish(ours, cache, key, parts, {})
    assert final == _cache.unit_dir(cache, key) and not ours.exists()
    assert _cache.verify(cache, key, (1, 3, 2)) == (True, "verified")
