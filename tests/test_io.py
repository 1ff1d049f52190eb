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
