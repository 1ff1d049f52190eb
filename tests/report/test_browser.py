"""The report in a real browser: Debian's Chromium, headless, driven through DevTools (Playwright).

No console errors, no request beyond the file itself, every chart drawn with a size. Set
MIAUDIT_REPORT_SCREENSHOT=path.png to keep a full-page screenshot for a human to look at.
Never downloads a browser: it uses /usr/bin/chromium (Debian's ``chromium`` package) and is
skipped where that or Playwright is missing, except under CI, where that is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("MIAUDIT_CHROMIUM", "/usr/bin/chromium")
#: Playwright adds --headless itself; these keep Chromium off the network and quiet.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-default-browser-check",
]


def _need(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing (install it: scripts/system-deps.sh, pip extra dev)")
    pytest.skip(f"{what} is missing")


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("playwright (Python package)")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        _need(f"Chromium at {CHROMIUM}")
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh --user-data-dir
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1100, "height": 900},
            offline=True,
        )
        try:
            yield context
        finally:
            context.close()


@pytest.mark.parametrize(
    ("which", "charts"),
    [
        ("outputs_report", {"attacks", "roc", "scores"}),
        ("full_report", {"attacks", "roc", "scores", "utility", "tradeoff", "dp"}),
    ],
)
def test_report_in_headless_chromium(browser_context, which, charts, request):
    path, _ = request.getfixturevalue(which)
    url = Path(path).resolve().as_uri()
    page = browser_context.new_page()
    console, errors, requests = [], [], []
    page.on("console", lambda m: console.append((m.type, m.text)))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    response = page.goto(url, wait_until="load")
    assert response is None or response.ok
    page.wait_for_load_state("networkidle")

    assert [t for t in console if t[0] in ("error", "warning")] == []
    assert errors == []
    assert requests == [url], f"requests beyond the file: {[r for r in requests if r != url]}"

    drawn = page.eval_on_selector_all(
        "svg[data-chart]",
        "els => els.map(e => { const b = e.getBoundingClientRect();"
        " return [e.dataset.chart, b.width, b.height, e.querySelectorAll('path').length]; })",
    )
    assert {d[0] for d in drawn} == charts
    for name, width, height, paths in drawn:
        assert width > 300 and height > 50 and paths > 5, (name, width, height, paths)
    assert page.title().startswith("Membership-inference audit")
    # nothing overflows the page sideways (tables wrap or scroll inside their box)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot = os.environ.get("MIAUDIT_REPORT_SCREENSHOT")
    if shot and which == "full_report":
        page.screenshot(path=shot, full_page=True)
    # print layout: the browser paginates it without errors
    page.emulate_media(media="print")
    assert page.evaluate("getComputedStyle(document.querySelector('nav.toc')).display") == "none"
    page.close()
