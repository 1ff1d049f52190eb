"""The report as PDF, printed by headless Chromium (its print-to-PDF; the print CSS paginates).

No Chromium, no PDF: a one-line InputError (exit 2 in the CLI) says how to get one. The page
is opened from the file with the network off; the report needs nothing beyond itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from miaudit.errors import InputError

#: Looked for in this order; MIAUDIT_CHROMIUM (a path or a command) comes first when set.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PRINT_TIMEOUT_S = 120


def find_chromium() -> str | None:
    """Path of a Chromium to print with, or None."""
    wanted = os.environ.get("MIAUDIT_CHROMIUM")
    for name in (wanted,) if wanted else CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def print_pdf(html: Path | str, pdf: Path | str | None = None) -> Path:
    """Print the HTML report ``html`` to ``pdf`` (default: beside it, .pdf) with headless Chromium;
    the PDF is restricted (0600) when the HTML is (a --raw-ids run's), else 0644."""
    src = Path(html).resolve()
    out = Path(pdf) if pdf is not None else src.with_suffix(".pdf")
    if out.resolve() == src:
        raise InputError("pdf", f"{str(out)!r} is the HTML report itself: print it to another file")
    chromium = find_chromium()
    if chromium is None:
        raise InputError(
            "--pdf",
            "needs Chromium and none was found (install Debian's chromium, e.g. scripts/system-deps.sh, or set MIAUDIT_CHROMIUM)",
        )
    with tempfile.TemporaryDirectory(prefix="miaudit-pdf-") as profile:
        args = [
            chromium,
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={out.resolve()}",
            src.as_uri(),
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(2, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        tmp = out.with_name(f".{out.name}.partial")
        args[-2] = f"--print-to-pdf={tmp.resolve()}"
        try:
            proc = subprocess.run(
                args, capture_output=True, text=True, timeout=PRINT_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            tmp.unlink(missing_ok=True)
            raise InputError(
                "--pdf", f"Chromium did not finish printing within {PRINT_TIMEOUT_S} s"
            ) from None
    if proc.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError("--pdf", f"Chromium could not print the report ({last})")
    # The PDF holds what the HTML holds: restricted (0600) like it when the results name records
    # by their ids (--raw-ids); it was 0644 beside a 0600 HTML (red team)
    tmp.chmod(0o600 if src.stat().st_mode & 0o077 == 0 else 0o644)
    tmp.replace(out)
    return out
