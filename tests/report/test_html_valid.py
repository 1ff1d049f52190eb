"""The report is valid HTML: a strict HTML5 parse, unique ids, and every in-page link resolves."""

from __future__ import annotations

import re

import html5lib
import pytest


@pytest.mark.parametrize("which", ["outputs_report", "full_report"])
def test_report_parses_strictly_as_html5(which, request):
    _, html = request.getfixturevalue(which)
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    doc = parser.parse(html)  # raises html5lib.html5parser.ParseError on the first error
    assert parser.errors == []
    assert doc.find("head/title") is not None and doc.find("head/title").text.startswith(
        "Membership-inference audit"
    )
    assert doc.get("lang") == "en"
    ids = [el.get("id") for el in doc.iter() if el.get("id")]
    dupes = {i for i in ids if ids.count(i) > 1}
    assert not dupes, f"duplicate ids: {sorted(dupes)[:5]}"
    for target in re.findall(r'href="#([^"]+)"', html):
        assert target in ids, f"in-page link to missing id {target!r}"
    for target in re.findall(r"url\(#([^)]+)\)", html):
        assert target in ids, f"SVG reference to missing id {target!r}"
    tables = doc.findall(".//table")
    assert tables and all(t.find("thead") is not None for t in tables)
