"""The repository stands on its own: every citation resolves inside it.

Code, tests, scripts and documents cite the repository's own reference (``reference §N`` →
docs/reference.md) and architecture (``architecture §N`` → docs/architecture.md) and name files
under docs/. A reader who clones the repository must be able to follow each one, so:

- no tracked file points outside the repository (``../``-relative paths to notes, private
  documents, a developers' guide), or at an issue tracker's numbers;
- every ``reference §N`` and ``architecture §N`` names a heading of that document;
- every ``docs/<name>.md`` that is mentioned exists.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Names of documents that live outside the repository, and ways of pointing out of it.
FORBIDDEN = [
    (re.compile(r"\.\./(?:shared|docs|seed|notes)\b"), "a path outside the repository"),
    (re.compile(r"\bshared/(?:docs|seed)\b"), "a path outside the repository"),
    (re.compile(r"\b(?:DEVELOPERS|DESIGN)\.md\b"), "a document outside the repository"),
    (re.compile(r"\bjpki-reference\b|\banchors\.md\b|\bstyle\.md\b"),
     "a document outside the repository"),
    (re.compile(r"developers'? guide", re.IGNORECASE), "a document outside the repository"),
    # An issue number of this project; an upstream one is cited as owner/repo#N.
    (re.compile(r"(?<![\w/])issue #?\d+\b", re.IGNORECASE), "an issue number"),
]
CITATION = re.compile(r"\b(reference|architecture) §(\d+(?:\.\d+)*)")
# docs/NAME of this repository: not another project's (``packages/x/docs/…``), not a URL.
DOC_PATH = re.compile(r"(?<![\w/.-])docs/([\w.-]+\.(?:md|json))\b")
HEADING = re.compile(r"^#{2,4} (\d+(?:\.\d+)*)[. ]", re.MULTILINE)


def tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                            check=False)
    if listed.returncode != 0:
        pytest.fail("git ls-files failed: the repository's files cannot be listed")
    names = [n for n in listed.stdout.decode().split("\0") if n]
    # Files created by a test run or not yet committed count too: they will be.
    untracked = subprocess.run(["git", "ls-files", "-z", "--others", "--exclude-standard"],
                               cwd=REPO, capture_output=True, check=False)
    names += [n for n in untracked.stdout.decode().split("\0") if n]
    return [REPO / n for n in sorted(set(names)) if (REPO / n).is_file()]


def texts() -> list[tuple[Path, str]]:
    out = []
    for path in tracked_files():
        try:
            out.append((path, path.read_text(encoding="utf-8")))
        except UnicodeDecodeError:
            continue  # binary fixtures
    return out


def sections(document: str) -> set[str]:
    return set(HEADING.findall((REPO / "docs" / document).read_text(encoding="utf-8")))


def test_nothing_points_outside_the_repository() -> None:
    found = []
    for path, body in texts():
        if path == Path(__file__):
            continue  # the patterns themselves
        for number, line in enumerate(body.splitlines(), 1):
            for pattern, what in FORBIDDEN:
                if pattern.search(line):
                    found.append(f"{path.relative_to(REPO)}:{number}: {what}: {line.strip()}")
    assert not found, "\n".join(found)


def test_every_section_citation_names_a_heading() -> None:
    known = {"reference": sections("reference.md"),
             "architecture": sections("architecture.md")}
    assert {"1.4", "4.4", "4.5"} <= known["reference"]  # the checker itself reads headings
    assert {"3", "5.5", "9.7"} <= known["architecture"]
    dangling = []
    cited = 0
    for path, body in texts():
        for number, line in enumerate(body.splitlines(), 1):
            for document, section in CITATION.findall(line):
                cited += 1
                if section not in known[document]:
                    dangling.append(f"{path.relative_to(REPO)}:{number}: {document} §{section}")
    assert cited > 100  # the tree cites its documents throughout; the pattern still matches
    assert not dangling, "\n".join(dangling)


def test_every_document_mentioned_exists() -> None:
    missing = []
    for path, body in texts():
        if path == Path(__file__):
            continue
        for line in body.splitlines():
            if "github.com" in line or "`letsencrypt/boulder`" in line:
                continue  # another project's docs/ folder
            for name in DOC_PATH.findall(line):
                if not (REPO / "docs" / name).exists():
                    missing.append(f"{path.relative_to(REPO)}: docs/{name}")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize(("line", "flagged"), [
    ("see ../shared/docs/DESIGN.md", True),
    ("jpki-reference §1.4: capped", True),
    ("(issue 5) have their own rules", True),
    ("fixed in issue #12", True),
    ("DEVELOPERS.md non-negotiable 7", True),
    ("SoftHSM2 opendnssec/SoftHSMv2#688", False),
    ("reference §1.4: capped by the card's expiry", False),
    ("the issuer's key hash", False),
])
def test_the_patterns_flag_what_they_should(line: str, flagged: bool) -> None:
    assert any(p.search(line) for p, _ in FORBIDDEN) is flagged
