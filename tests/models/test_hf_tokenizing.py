"""A local folder's tokenizer is untrusted data: its failures are one line naming the folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from miaudit.errors import InputError
from miaudit.models._hf import _check_texts, _tokenizing


class PanicException(BaseException):
    """What pyo3 raises when a Rust tokenizer panics (a BaseException, as pyo3_runtime's)."""


def test_a_tokenizer_panic_is_one_line_naming_the_folder():
    """Red team: a tokenizer.json with a backtracking Split regex ran ~24 s, then raised pyo3's
    PanicException, which no `except Exception` catches."""
    with (
        pytest.raises(
            InputError, match=r"model folder: 'm': its tokenizer failed on a text \(Onig"
        ),
        _tokenizing(Path("m")),
    ):
        raise PanicException("Onig: Regex search error: retry-limit-in-match over")
    with pytest.raises(KeyboardInterrupt), _tokenizing(Path("m")):
        raise KeyboardInterrupt
    with pytest.raises(ValueError, match="stays a bug"), _tokenizing(Path("m")):
        raise ValueError("a bug of ours stays a bug")


def test_a_lone_surrogate_is_named_by_its_item():
    """Red team: "abc\\ud800def" gave the tokenizer's bare TypeError."""
    with pytest.raises(InputError, match=r"texts: item 1 is not valid Unicode"):
        _check_texts(["fine", "abc\ud800def"])
    assert _check_texts(["héllo", "日本"]) == ["héllo", "日本"]
