"""The package's own file helpers (``miaudit._io``): what a failed run leaves behind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from miaudit._io import output_dir_cleanup


def _fail_after(out: Path, work: Callable[[], None]) -> None:
    with pytest.raises(RuntimeError, match="refused"):
        _run(out, work)


def _run(out: Path, work: Callable[[], None]) -> None:
    with output_dir_cleanup(out):
        work()
        raise RuntimeError("refused")


def test_a_failed_block_removes_the_empty_folders_it_made(tmp_path: Path) -> None:
    out = tmp_path / "a" / "out"

    def work() -> None:
        (out / "models" / "0").mkdir(parents=True)
        (out / "kept").mkdir()
        (out / "kept" / "file").write_text("x")

    _fail_after(out, work)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "a",
        "a/out",
        "a/out/kept",
        "a/out/kept/file",
    ]


def test_a_folder_swapped_for_a_link_is_not_followed(tmp_path: Path) -> None:
    """Red team (theoretical race): the cleanup walked a made folder that had become a link
    and removed the empty folders of the link's target."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "empty").mkdir(parents=True)
    out = tmp_path / "out"

    def work() -> None:
        out.mkdir()
        out.rmdir()
        out.symlink_to(elsewhere, target_is_directory=True)

    _fail_after(out, work)
    assert (elsewhere / "empty").is_dir() and out.is_symlink()


def test_a_block_that_succeeds_keeps_everything(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with output_dir_cleanup(out):
        (out / "empty").mkdir(parents=True)
    assert (out / "empty").is_dir()


def test_a_private_folder_is_0700_whatever_the_umask(tmp_path: Path) -> None:
    """Red team: restricted folders followed the umask (0777 under umask 000); one that takes
    the owner's own bits (277) would leave a folder miaudit cannot write into."""
    import os
    import stat

    from miaudit._io import ensure_private_dir

    for umask in (0o000, 0o277):
        old = os.umask(umask)
        try:
            made = ensure_private_dir(tmp_path / f"u{umask:o}")
        finally:
            os.umask(old)
        assert stat.S_IMODE(made.stat().st_mode) == 0o700
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    theirs.chmod(0o755)
    ensure_private_dir(theirs)
    assert stat.S_IMODE(theirs.stat().st_mode) == 0o755  # not miaudit's to change
