"""The package's code, comments and docstrings say what a thing is and why, not how it came to be.

History (issue numbers, the pass of experiments a choice came from, former values, dates) belongs in
CHANGELOG.md and docs/. One test per module, so a single file can be checked with ``-k``:

    pytest tests/test_no_history.py -k "data/ or io/"
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG_DIR = REPO / "napari_advseg"

_ORDINALS = r"first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|\d+(?:st|nd|rd|th)"

HISTORY = {
    "an issue number": re.compile(r"\bissues?\s*#?\s*\d+", re.IGNORECASE),
    "a numbered pass": re.compile(rf"\b(?:{_ORDINALS})\s+pass(?:es)?\b", re.IGNORECASE),
    "a former value": re.compile(r"\b(?:it|they|this|that)\s+(?:was|were|used\s+to\s+be)\s+[-+]?\.?\d"
                                 r"|(?<![\w.])[-+]?\d[\d.]*\s+before\b", re.IGNORECASE),
    "a date": re.compile(r"\b20\d\d-(?:0[1-9]|1[0-2])\b"),
}
"""What counts as history, by name."""


def history_lines(text: str) -> list[tuple[int, str, str]]:
    """``(line number, what, line)`` for every line of ``text`` that carries history (1-based)."""
    hits = []
    for number, line in enumerate(text.splitlines(), start=1):
        for what, pattern in HISTORY.items():
            if pattern.search(line):
                hits.append((number, what, line.strip()))
    return hits


def _modules() -> list[Path]:
    return sorted(p for p in PKG_DIR.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(PKG_DIR).as_posix())
def test_module_has_no_history(path):
    hits = history_lines(path.read_text(encoding="utf-8"))
    rel = path.relative_to(REPO).as_posix()
    assert not hits, "history in the package (move it to CHANGELOG.md or docs/):\n" + "\n".join(
        f"{rel}:{number}: {what}: {line}" for number, what, line in hits)


def test_the_package_has_modules_to_check():
    assert len(_modules()) > 20


@pytest.mark.parametrize("line", [
    "# see issue 9 for the measurements",
    "found in issue #12",
    "the fifth pass chose this default",
    "a 2nd pass of experiments",
    "lambda_mean (it was 0.01) now scales",
    "phi_max: 12 (6 before, which checkpoints keep)",
    "measured on 2026-12-04 on an AMD EPYC",
])
def test_history_is_recognised(line):
    assert history_lines(line), line


@pytest.mark.parametrize("line", [
    "one pass over the slices, then a second over the organs",
    "raise AdvsegError when the generator was trained for other classes",
    "issue a warning when the spacing is not isotropic",
    "shape (2026, 512, 512) in voxels",
    "the step it was saved at is kept in meta['step']",
    "a 3 x 3 window before the pooling; z0 before z1",
])
def test_plain_wording_is_not_history(line):
    assert not history_lines(line), line
