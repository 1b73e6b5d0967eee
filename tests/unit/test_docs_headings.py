"""The documents are a product's reference, not a development diary.

No heading in README.md, CHANGELOG.md or docs/ is dated or a diary label, no line names a
development session or round, and every relative link resolves to a file (and, with a
fragment, to a heading of it)."""

import re
from pathlib import Path

import pytest

from tests.paths import ROOT

MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december"
    "|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
WEEKDAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
ORDINALS = (
    r"first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|\d+(?:st|nd|rd|th)"
)
#: "round" but not "round trip"; "session" but not a protocol's "session token", "session expiry"
DIARY_WORDS = (
    r"sessions?(?![- ](?:tokens?|expiry|persistence|state))|rounds?(?![- ]trips?)|sprints?|iterations?"
)

#: What no heading may carry.
DATED_HEADING = [
    ("a date", re.compile(r"\b\d{4}-\d{1,2}-\d{1,2}\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b")),
    ("a time of day", re.compile(r"\b\d{1,2}:\d{2}\b")),
    ("a weekday", re.compile(rf"\b(?:{WEEKDAYS})\b", re.I)),
    (
        "a month with a day",
        re.compile(rf"\b(?:{MONTHS})\.? \d{{1,2}}\b|\b\d{{1,2}}(?:st|nd|rd|th)? (?:{MONTHS})\b", re.I),
    ),
    ("a diary word", re.compile(rf"\b(?:{DIARY_WORDS})\b", re.I)),
    (
        "a diary label",
        re.compile(r"^(?:update|today|yesterday|this morning|later|earlier)\b|\((?:later|earlier)\)", re.I),
    ),
]

#: What no line may carry: development sessions or rounds named in prose.
DIARY_LINE = re.compile(
    "|".join(
        (
            rf"\b(?:{ORDINALS})\s+(?:development\s+)?(?:{DIARY_WORDS})\b",
            r"\b(?:this|that|previous|next|last|earlier|later|same)\s+(?:development\s+)?"
            r"(?:round(?![- ]trip)|sprint)(?:'s)?\b",
            r"\b(?:this|that|previous|next|earlier|later)\s+session's\b",
            r"\bdevelopment\s+(?:session|round|sprint)s?\b",
            rf"\b(?:{DIARY_WORDS})\s+\d+\b",
            r"\bsprint\b",
        )
    ),
    re.I,
)

#: Keep a Changelog's own headings: `## [Unreleased]`, `## [1.2.0] - 2026-01-31`.
CHANGELOG_VERSION = re.compile(r"^## \[(?:Unreleased|\d+\.\d+\.\d+[\w.+-]*)\](?: - \d{4}-\d{2}-\d{2})?$")

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_PATH = re.compile(r"`((?:docs|deploy|simulators|\.ci)/[\w./-]+\.(?:md|png|yml|yaml|json|example))`")


def _documents() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _lines(path: Path) -> list[tuple[int, str, bool]]:
    """(number, line, is a heading) outside fenced code blocks."""
    out = []
    fence = False
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
            continue
        if not fence:
            out.append((number, line, bool(re.match(r"#{1,6} ", line))))
    return out


def _where(path: Path, number: int, line: str) -> str:
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return f"{name}:{number}: {line.strip()}"


def heading_faults(path: Path) -> list[str]:
    faults = []
    for number, line, heading in _lines(path):
        if not heading:
            continue
        text = line.lstrip("#").strip()
        if path.name == "CHANGELOG.md" and CHANGELOG_VERSION.match(line):
            continue
        for what, pattern in DATED_HEADING:
            if pattern.search(text):
                faults.append(f"{_where(path, number, line)}  ({what})")
    return faults


def diary_faults(path: Path) -> list[str]:
    return [_where(path, n, line) for n, line, _ in _lines(path) if DIARY_LINE.search(line)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[|\]\([^)]*\)", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(line.lstrip("#")) for _, line, heading in _lines(path) if heading}


def link_faults(path: Path, root: Path = ROOT) -> list[str]:
    """Markdown links resolve from the document's folder; paths in code spans (`docs/x.md`)
    from the repository's root."""
    faults = []
    for number, line, _ in _lines(path):
        targets = [(m.group(1), path.parent) for m in LINK.finditer(line)]
        targets += [(m.group(1), root) for m in CODE_PATH.finditer(line)]
        for target, base in targets:
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
                continue
            file_part, _, fragment = target.partition("#")
            resolved = base / file_part if file_part else path
            if not resolved.exists():
                faults.append(f"{_where(path, number, line)}  ({target}: no such file)")
            elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
                faults.append(f"{_where(path, number, line)}  ({target}: no such heading)")
    return faults


def test_the_documents_exist() -> None:
    for path in _documents()[:2]:
        assert path.is_file(), path


@pytest.mark.parametrize(("name", "most"), [("README.md", 150), ("docs/performance.md", 250)])
def test_the_front_documents_stay_short(name: str, most: int) -> None:
    """The README introduces, the performance page is a reference: detail goes to docs/ and
    reasons to docs/decisions/, history to CHANGELOG.md."""
    lines = len((ROOT / name).read_text().splitlines())
    assert lines <= most, f"{name} has {lines} lines; at most {most}"


@pytest.mark.parametrize("path", _documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_heading_is_dated_or_a_diary_label(path: Path) -> None:
    if not path.exists():
        pytest.fail(f"{path.relative_to(ROOT)} is missing")
    faults = heading_faults(path)
    assert not faults, "headings name what a section is about, not when:\n" + "\n".join(faults)


@pytest.mark.parametrize("path", _documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_line_names_a_development_session(path: Path) -> None:
    if not path.exists():
        pytest.fail(f"{path.relative_to(ROOT)} is missing")
    faults = diary_faults(path)
    assert not faults, "documents describe the product, not its development rounds:\n" + "\n".join(faults)


@pytest.mark.parametrize("path", _documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    if not path.exists():
        pytest.fail(f"{path.relative_to(ROOT)} is missing")
    faults = link_faults(path)
    assert not faults, "broken links:\n" + "\n".join(faults)


@pytest.mark.parametrize(
    "heading",
    [
        "## The report of 2026-12-06, 14:15 UTC",
        "### Urgent readings first, 2026-12-06 (later)",
        "### The sixth session's machine",
        "## Round 3",
        "## Update: faster gateway",
        "### Friday",
        "## December 3",
        "## 3 December results",
        "### Sprint review",
        "### What changed in this iteration",
    ],
)
def test_the_heading_check_catches_diary_headings(tmp_path: Path, heading: str) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(f"# Title\n\n{heading}\n\ntext\n")
    assert heading_faults(doc)


@pytest.mark.parametrize(
    "heading",
    [
        "## Alert latency to the dashboard",
        "## Sizing for 3 million patients",
        "## May a researcher see rows?",
        "### Where the time goes (py-spy, 200 Hz)",
        "### The processor: binary COPY and fewer round trips",
        "# API v3 with session tokens known by digest",
    ],
)
def test_the_heading_check_lets_plain_headings_pass(tmp_path: Path, heading: str) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(f"# Title\n\n{heading}\n")
    assert not heading_faults(doc)


@pytest.mark.parametrize(
    ("line", "diary"),
    [
        ("on the sixth session's machine it held", True),
        ("the code before this round's changes", True),
        ("measured in round 3", True),
        ("in the fifth development session", True),
        ("the next sprint", True),
        ("the gateway resumes its session after a restart", False),
        ("two round trips instead of five", False),
        ("the first round trip and the same round trip again", False),
        ("the token is kept in sessionStorage", False),
        ("counts are rounded to 5", False),
        ("a processor's partitions move once the group session expires", False),
    ],
)
def test_the_line_check_tells_diary_from_domain_words(line: str, diary: bool) -> None:
    assert bool(DIARY_LINE.search(line)) is diary


def test_the_link_check_finds_a_missing_file_and_heading(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## Where the time goes\n")
    doc = tmp_path / "x.md"
    doc.write_text(
        "# X\n\n[ok](other.md) [ok](other.md#where-the-time-goes) [ok](https://example.org/missing)\n"
        "[gone](missing.md) [no heading](other.md#nowhere)\n\n```\n[in code](nowhere.md)\n```\n"
        "see `docs/gone.md`\n"
    )
    faults = link_faults(doc, root=tmp_path)
    assert len(faults) == 3
    assert "missing.md" in faults[0] and "other.md#nowhere" in faults[1] and "docs/gone.md" in faults[2]
