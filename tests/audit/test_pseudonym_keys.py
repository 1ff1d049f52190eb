"""Pseudonym keys are secret: ≥ 16 random bytes, 0600, never a fixed or derivable default; every
writer and reader refuses an empty, short or readable-by-others key, and results made with a
weak key are flagged when read."""

from __future__ import annotations

import ast
import json
import os
import secrets
import stat
import sys
from pathlib import Path

import pytest

import miaudit
from miaudit.audit._pseudonyms import (
    KEY_FILE,
    KNOWN_WEAK_KEY_IDS,
    check_key,
    key_id,
    load_or_create_key,
    publish_key,
    read_key,
)
from miaudit.audit._writer import prepare_out
from miaudit.errors import InputError
from tests.conftest import simulated_outputs

SRC = Path(miaudit.__file__).parent
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def outputs():
    return simulated_outputs(n=400, shift=1.0, seed=3)


def _bad_keys(folder: Path) -> dict[str, Path]:
    """One folder per kind of bad key file."""
    cases: dict[str, Path] = {}
    for name, data, mode in (
        ("empty", b"", 0o600),
        ("short", secrets.token_bytes(15), 0o600),
        ("world-readable", secrets.token_bytes(32), 0o644),
        ("group-readable", secrets.token_bytes(32), 0o640),
        ("patterned", b"k" * 32, 0o600),
    ):
        d = folder / name
        d.mkdir()
        (d / KEY_FILE).write_bytes(data)
        os.chmod(d / KEY_FILE, mode)
        cases[name] = d
    link = folder / "link"
    link.mkdir()
    target = folder / "elsewhere.key"
    target.write_bytes(secrets.token_bytes(32))
    os.chmod(target, 0o600)
    (link / KEY_FILE).symlink_to(target)
    cases["link"] = link
    fifo = folder / "fifo"  # opening it for reading would block forever
    fifo.mkdir()
    os.mkfifo(fifo / KEY_FILE, 0o600)
    cases["fifo"] = fifo
    hard = folder / "hardlink"  # another name elsewhere: someone else may hold it
    hard.mkdir()
    os.link(target, hard / KEY_FILE)
    cases["hardlink"] = hard
    if os.geteuid() == 0:  # only root can plant a file owned by someone else
        other = folder / "other-owner"
        other.mkdir()
        (other / KEY_FILE).write_bytes(secrets.token_bytes(32))
        os.chmod(other / KEY_FILE, 0o600)
        os.chown(other / KEY_FILE, 12345, 12345)
        cases["other-owner"] = other
    return cases


def test_every_reader_refuses_a_bad_key(outputs, tmp_path, monkeypatch, capsys) -> None:
    from miaudit.cli import main

    data = tmp_path / "outputs.npz"
    outputs.save(data)
    for name, folder in _bad_keys(tmp_path).items():
        with pytest.raises(InputError):
            read_key(folder / KEY_FILE)
        with pytest.raises(InputError):
            load_or_create_key(folder)
        with pytest.raises(InputError):
            prepare_out(folder, overwrite=False)  # what attack(), audit() and the CLI call first
        with pytest.raises(InputError):
            miaudit.attack(outputs, out=folder, n_resamples=0, quiet=True)
        monkeypatch.setattr(
            sys, "argv", ["miaudit", "attack", str(data), "--out", str(folder), "--resamples", "10"]
        )
        with pytest.raises(SystemExit) as exit_:
            main()
        assert exit_.value.code == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and KEY_FILE in err, err
        assert sorted(p.name for p in folder.iterdir()) == [KEY_FILE], (
            f"{name}: files written beside a refused key"
        )


def test_keys_given_in_python_are_checked(outputs) -> None:
    from miaudit.audit._attack import run_attacks

    for bad in (b"", b"short", b"\x00" * 32, "a string key of forty characters........"):
        with pytest.raises(InputError, match="pseudonym_key"):
            run_attacks(outputs, attacks=["loss"], n_resamples=0, pseudonym_key=bad)  # type: ignore[arg-type]
    good = secrets.token_bytes(16)
    assert check_key(good) == good


def test_new_key_is_random_restricted_and_never_replaced(outputs, tmp_path) -> None:
    result = miaudit.attack(outputs, out=tmp_path, n_resamples=0, quiet=True)
    path = tmp_path / KEY_FILE
    key = path.read_bytes()
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert result.pseudonymisation.key_bytes == 32 and result.pseudonymisation.key_id == key_id(key)
    # A second folder gets another key; a rerun into the first keeps its key.
    other = miaudit.attack(outputs, out=tmp_path / "b", n_resamples=0, quiet=True)
    assert (tmp_path / "b" / KEY_FILE).read_bytes() != key
    assert {e.pseudonym for e in other.most_exposed}.isdisjoint(
        e.pseudonym for e in result.most_exposed
    )
    miaudit.attack(outputs, out=tmp_path, n_resamples=0, quiet=True, overwrite=True)
    assert path.read_bytes() == key
    # Two runs racing on one folder: the second key is refused, the first never replaced.
    race = tmp_path / "race"
    race.mkdir()
    first, second = secrets.token_bytes(32), secrets.token_bytes(32)
    publish_key(race, first)
    publish_key(race, first)  # the same key again is fine
    with pytest.raises(InputError, match="meanwhile"):
        publish_key(race, second)
    assert read_key(race / KEY_FILE) == first
    assert sorted(p.name for p in race.iterdir()) == [KEY_FILE]


def test_without_a_folder_every_run_gets_a_fresh_key(outputs) -> None:
    from miaudit.audit._attack import run_attacks

    ids = {
        run_attacks(outputs, attacks=["loss"], n_resamples=0).result.pseudonymisation.key_id
        for _ in range(3)
    }
    assert len(ids) == 3 and not ids & KNOWN_WEAK_KEY_IDS


def test_weak_and_unchecked_results_are_flagged_when_read(
    outputs, tmp_path, monkeypatch, capsys
) -> None:
    from miaudit.cli import main
    from miaudit.report import load_results

    miaudit.attack(outputs, out=tmp_path, n_resamples=0, quiet=True)
    result, _ = load_results(tmp_path)
    assert result.pseudonym_warning() is None and not any(
        n.startswith("pseudonyms:") for n in result.notes
    )
    data = json.loads((tmp_path / "results.json").read_text())
    # As an earlier version wrote it: schema /1, no key length.
    data["schema_version"] = "miaudit.results/1"
    del data["pseudonymisation"]["key_bytes"]
    (tmp_path / "results.json").write_text(json.dumps(data))
    result, _ = load_results(tmp_path)
    assert "did not check its key" in (result.pseudonym_warning() or "")
    assert any(n.startswith("pseudonyms:") for n in result.notes)
    # Made with the old fixed fallback key (its id is public): reversible by anyone.
    data["pseudonymisation"]["key_id"] = sorted(KNOWN_WEAK_KEY_IDS)[0]
    (tmp_path / "results.json").write_text(json.dumps(data))
    monkeypatch.setattr(sys, "argv", ["miaudit", "report", str(tmp_path)])
    main()
    err = capsys.readouterr().err
    assert "publicly known key" in err
    assert "publicly known key" in (tmp_path / "report.html").read_text()


def _constant_bytes(node: ast.AST) -> bool:
    """A bytes constant, or a hash or repetition of one (a key anyone can compute)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, bytes)
    if isinstance(node, ast.BinOp):
        return _constant_bytes(node.left) and (
            _constant_bytes(node.right) or isinstance(node.right, ast.Constant)
        )
    if isinstance(node, ast.Call):
        return (bool(node.args) and all(_constant_bytes(a) for a in node.args)) or (
            isinstance(node.func, ast.Attribute) and _constant_bytes(node.func.value)
        )
    if isinstance(node, ast.Attribute):
        return _constant_bytes(node.value)
    return False


def test_no_fixed_key_in_the_source() -> None:
    """No key argument, key variable or HMAC key in src/ or benchmarks/ (including the scripts
    benchmarks run from strings) is a constant or derived from one."""
    found = []
    sources = [
        (p, p.read_text(encoding="utf-8"))
        for p in sorted([*SRC.rglob("*.py"), *BENCHMARKS.rglob("*.py")])
    ]
    for path, text in list(sources):
        for node in ast.walk(ast.parse(text)):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and "import " in node.value
            ):
                try:
                    ast.parse(node.value)
                except SyntaxError:
                    continue
                sources.append((path, node.value))
    for path, text in sources:
        tree = ast.parse(text)
        for node in ast.walk(tree):
            targets: list[tuple[str, ast.AST]] = []
            if isinstance(node, ast.Call):
                targets += [
                    (kw.arg or "", kw.value) for kw in node.keywords if kw.arg and "key" in kw.arg
                ]
                name = (
                    node.func.attr
                    if isinstance(node.func, ast.Attribute)
                    else getattr(node.func, "id", "")
                )
                if (
                    name in ("pseudonymise", "new") and len(node.args) >= 2
                ):  # pseudonymise(ids, key), hmac.new(key, msg)
                    targets.append((name, node.args[1] if name == "pseudonymise" else node.args[0]))
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                names = [
                    t.id
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                    if isinstance(t, ast.Name)
                ]
                targets += [
                    (n, node.value)
                    for n in names
                    if n.lower() in ("key", "pseudonym_key", "secret") and node.value is not None
                ]
            elif isinstance(node, ast.IfExp):
                targets += [("key fallback", node.orelse)]
            found += [
                f"{path.name}:{getattr(node, 'lineno', '?')} {what}"
                for what, value in targets
                if _constant_bytes(value)
            ]
    assert not found, found
    # The search itself finds the fallback this project used to have.
    planted = ast.parse(
        'key = pseudonym_key if pseudonym_key is not None else hashlib.sha256(b"ephemeral").digest()'
    )
    assert _constant_bytes(planted.body[0].value.orelse)  # type: ignore[attr-defined]
