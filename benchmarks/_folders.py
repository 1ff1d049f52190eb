"""A benchmark's scratch folder (models, key stores, databases, server logs)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from benchmarks._schema import BenchResult


def in_temporary_folder(
    prefix: str, body: Callable[[str, Path], BenchResult], size: str
) -> BenchResult:
    """``body(size, folder)`` in a folder removed on return and on error (``mkdtemp`` left one
    a run: databases and WALs of tens of MB piled up in /tmp)."""
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as folder:
        return body(size, Path(folder))
