"""The dashboard's stylesheet parses: every block closes where it should.

An unclosed ``@media`` block swallows every rule after it without an error
in the browser (a merge once left one open and the panels lost their grid),
so the braces are checked here, outside comments and strings.
"""

from __future__ import annotations

import re
from pathlib import Path

STYLE = Path(__file__).resolve().parents[2] / "src" / "trainvis" / "dashboard" / "style.css"


def test_every_block_of_the_stylesheet_closes() -> None:
    text = re.sub(r"/\*.*?\*/", "", STYLE.read_text(encoding="utf-8"), flags=re.S)
    text = re.sub(r"\"[^\"]*\"|'[^']*'", "", text)
    depth = 0
    for number, line in enumerate(text.splitlines(), 1):
        for char in line:
            depth += {"{": 1, "}": -1}.get(char, 0)
            assert depth >= 0, f"style.css line {number}: '}}' without a block"
        if line.startswith("/") or not line.strip():
            continue
        # A top-level comment header or rule starts at depth 0 or inside @media only.
        assert depth <= 2, f"style.css line {number}: blocks nested {depth} deep"
    assert depth == 0, "style.css ends inside a block"


def test_section_headers_sit_at_the_top_level() -> None:
    depth = 0
    for number, line in enumerate(STYLE.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("/* ") and depth:
            raise AssertionError(f"style.css line {number}: section {line!r} opens inside a block")
        depth += line.count("{") - line.count("}")
