"""The report in a real browser: Debian's Chromium, headless, driven through DevTools (Playwright).

One browser launch for every report and width (390, 1280 and 1920 px): no console errors, no
request beyond the file itself, every chart drawn with a size, nothing wider than the page
(tables scroll inside their box), and no two text labels of a chart overlapping. Set
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
WIDTHS = (390, 1280, 1920)
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
#: Pairs of SVG text labels whose boxes intersect by more than this (px, each way) overlap.
OVERLAP_PX = 0.5
_OVERLAPS = """
(tol) => {
  const out = [];
  for (const svg of document.querySelectorAll('svg[data-chart]')) {
    const boxes = [...svg.querySelectorAll('text')]
      .filter(t => t.textContent.trim() !== '')
      .map(t => [t.textContent.trim(), t.getBoundingClientRect()]);
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const [a, p] = boxes[i], [b, q] = boxes[j];
        const w = Math.min(p.right, q.right) - Math.max(p.left, q.left);
        const h = Math.min(p.bottom, q.bottom) - Math.max(p.top, q.top);
        if (w > tol && h > tol) out.push([svg.dataset.chart, a, b]);
      }
    }
  }
  return out;
}
"""
_WIDER_THAN_PAGE = """
() => {
  const limit = document.documentElement.clientWidth;
  return [...document.querySelectorAll('body *')]
    .filter(e => !e.closest('.wide') && e.getBoundingClientRect().right > limit + 1)
    .slice(0, 5).map(e => e.tagName + '.' + e.className + ': ' + e.textContent.slice(0, 40));
}
"""


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
            viewport={"width": 1280, "height": 900},
            offline=True,
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def dp_report_path(tmp_path_factory):
    from miaudit.report import write_folder_report

    root = tmp_path_factory.mktemp("dp_browser")
    golden = Path(__file__).resolve().parents[1] / "golden" / "expected" / "dp_audit.json"
    shutil.copy(golden, root / "dp_audit.json")
    return write_folder_report(root).path


def _open(context, path: Path):
    url = Path(path).resolve().as_uri()
    page = context.new_page()
    seen: dict[str, list] = {"console": [], "errors": [], "requests": []}
    page.on("console", lambda m: seen["console"].append((m.type, m.text)))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.on("requestfailed", lambda r: seen["errors"].append(f"request failed: {r.url}"))
    response = page.goto(url, wait_until="load")
    assert response is None or response.ok
    return page, url, seen


@pytest.mark.parametrize(
    ("which", "charts"),
    [
        ("outputs_report", {"attacks", "roc", "scores"}),
        ("full_report", {"attacks", "roc", "scores", "utility", "tradeoff", "dp", "budget"}),
        ("dp_report_path", {"dp"}),
    ],
)
def test_report_in_headless_chromium(browser_context, which, charts, request):
    fixture = request.getfixturevalue(which)
    path = fixture[0] if isinstance(fixture, tuple) else fixture
    page, url, seen = _open(browser_context, path)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        drawn = page.eval_on_selector_all(
            "svg[data-chart]",
            "els => els.map(e => { const b = e.getBoundingClientRect();"
            " return [e.dataset.chart, b.width, b.height, e.querySelectorAll('path').length]; })",
        )
        assert {d[0] for d in drawn} == charts
        for name, w, h, paths in drawn:
            assert w > 0.7 * min(width, 900) - 60 and h > 50 and paths > 3, (width, name, w, h)
        # nothing wider than the page: tables scroll inside their box, never the page
        assert page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        ), (width, page.evaluate(_WIDER_THAN_PAGE))
        assert page.evaluate(_OVERLAPS, OVERLAP_PX) == [], width
        if width >= 1280:  # on a desktop every column shows (the implied-ε one was cut off)
            scrolled = page.evaluate(
                "[...document.querySelectorAll('.wide')]"
                ".filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.closest('section').id)"
            )
            assert scrolled == [], (width, scrolled)
    assert [t for t in seen["console"] if t[0] in ("error", "warning")] == []
    assert seen["errors"] == []
    assert seen["requests"] == [url], f"requests beyond the file: {seen['requests']}"
    shot = os.environ.get("MIAUDIT_REPORT_SCREENSHOT")
    if shot and which == "full_report":
        page.set_viewport_size({"width": 1280, "height": 900})
        page.screenshot(path=shot, full_page=True)
    page.emulate_media(media="print")
    assert page.evaluate("getComputedStyle(document.querySelector('nav.toc')).display") == "none"
    page.close()


def test_the_checks_catch_overlap_and_overflow(browser_context, tmp_path):
    """The two layout checks are not vacuous: a page made to fail them fails them."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>t</title></head><body>'
        '<svg data-chart="x" viewBox="0 0 200 50" width="200" height="50">'
        '<text x="10" y="20">overlapping label</text><text x="20" y="22">another label</text></svg>'
        '<table><tr><td style="white-space:nowrap">' + "wide " * 200 + "</td></tr></table>"
        "</body></html>",
        encoding="utf-8",
    )
    page, _, _ = _open(browser_context, bad)
    page.set_viewport_size({"width": 390, "height": 900})
    assert page.evaluate(_OVERLAPS, OVERLAP_PX) == [["x", "overlapping label", "another label"]]
    assert not page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )
    page.close()
