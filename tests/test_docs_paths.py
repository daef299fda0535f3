"""Docs name files and tests that exist: every backticked file name in docs/ (its subfolders
too, such as the benchmark pages of docs/benchmarks/) and the README is a file of the repo,
every ``tests/x.py::name`` names a test defined in that file, every relative Markdown link
leads to a file and, with a ``#fragment``, to a heading of it, and every ``docs/...md`` the
code and the tests point at exists (with its heading, when it names one). A split or a rename
that leaves an operator's pointer dangling fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SKIP_DIRS = {".venv", ".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".echoes-local"}
# names the docs mention that are not this repo's files, each with the reason
NOT_OURS = {
    "inspect.py": "the standard library module a benchmark's name must not shadow",
    "yaml/__init__.py": "PyYAML's package, hashed for the gamedata cache's version stamp",
}
FILE_NAME = re.compile(r"`([A-Za-z0-9_./-]+\.(?:py|md|sql|sh|toml|yaml|lock))`")
TEST_ID = re.compile(r"\b(tests/[A-Za-z0-9_/]+\.py)::([A-Za-z0-9_]+)")
# [text](target): the text may run over a line break; targets with a scheme are not ours
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# a Markdown file under docs/ (subfolders too), with an optional #fragment, as code names it
DOC_POINTER = re.compile(r"\bdocs/([A-Za-z0-9_/-]+\.md)(?:#([A-Za-z0-9_-]+))?")
POINTER_SOURCES = ("echoes_ops", "benchmarks", "tests", "scripts")


def _repo_files() -> list[str]:
    found = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if path.is_file() and not SKIP_DIRS.intersection(rel.parts):
            found.append(rel.as_posix())
    return found


def _mentions(pattern: re.Pattern[str]) -> set[tuple[str, ...]]:
    return {
        (doc.name, *match.groups())
        for doc in DOCS
        for match in pattern.finditer(doc.read_text(encoding="utf-8"))
    }


def test_docs_mention_files_and_tests():
    # the scan itself must find what it checks, or the tests below prove nothing
    assert len(_mentions(FILE_NAME)) > 50
    assert len(_mentions(TEST_ID)) > 5


def test_every_file_the_docs_name_exists():
    files = _repo_files()
    missing = sorted(
        f"{doc}: {name}"
        for doc, name in _mentions(FILE_NAME)
        if name not in NOT_OURS
        and not any(f == name or f.endswith("/" + name.lstrip("./")) for f in files)
    )
    assert not missing, "docs name files that do not exist:\n" + "\n".join(missing)


@pytest.mark.parametrize("name", sorted(NOT_OURS))
def test_names_not_ours_are_still_mentioned_and_not_ours(name):
    # an exception that no longer applies is removed, not kept
    assert any(mentioned == name for _, mentioned in _mentions(FILE_NAME))
    assert not any(f.endswith("/" + name) or f == name for f in _repo_files())


def test_every_test_the_docs_name_is_defined():
    missing = []
    for doc, path, name in sorted(_mentions(TEST_ID)):
        source = ROOT / path
        defined = source.is_file() and re.search(
            rf"^\s*(?:async\s+)?def {re.escape(name)}\(", source.read_text(encoding="utf-8"), re.M
        )
        if not defined:
            missing.append(f"{doc}: {path}::{name}")
    assert not missing, "docs name tests that do not exist:\n" + "\n".join(missing)


def _anchors(doc: Path) -> set[str]:
    """The #fragments GitHub gives the headings of a Markdown file: lower case, punctuation
    but ``-`` and ``_`` dropped, spaces as ``-``, a repeated one suffixed ``-1``, ``-2``, ...
    Lines inside fenced code blocks are not headings."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in doc.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        heading = None if fenced else re.match(r"#{1,6} +(.*?)(?: +#+)? *$", line)
        if heading:
            base = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            count = seen.get(base, 0)
            seen[base] = count + 1
            anchors.add(base if count == 0 else f"{base}-{count}")
    return anchors


def _dangling(target: Path, fragment: str) -> str | None:
    if not target.exists():  # a folder is a fine link target (GitHub lists it)
        return "no such file"
    if fragment and target.suffix == ".md" and fragment not in _anchors(target):
        return f"no heading #{fragment}"
    return None


def _links() -> list[tuple[Path, str]]:
    return [
        (doc, match.group(1))
        for doc in DOCS
        for match in LINK.finditer(doc.read_text(encoding="utf-8"))
        if not re.match(r"[a-z]+:", match.group(1))
    ]


def test_anchors_follow_githubs_rule():
    doc = ROOT / "docs" / "benchmarks" / "dashboard.md"
    assert {
        "dashboard-benchmarksdashboardpy",
        "issue-7-stalls-and-the-2-ms-commands-2026-11-26",
    } <= (_anchors(doc))
    assert "redis_enabled-propagation-benchmarksflags_propagationpy" in _anchors(
        ROOT / "docs" / "benchmarks" / "flags.md"
    )


def test_every_relative_link_in_the_docs_leads_to_a_file_and_heading():
    links = _links()
    # the scan must find links into the benchmark pages and fragments, or it proves nothing
    assert len(links) > 30
    assert any("benchmarks/" in target and "#" in target for _, target in links)
    broken = []
    for doc, target in links:
        path, _, fragment = target.partition("#")
        resolved = (doc.parent / path).resolve() if path else doc
        problem = _dangling(resolved, fragment)
        if problem:
            broken.append(f"{doc.relative_to(ROOT)}: ({target}) {problem}")
    assert not broken, "docs link to what is not there:\n" + "\n".join(broken)


def test_every_doc_the_code_points_at_exists():
    pointers = [
        (source.relative_to(ROOT).as_posix(), *match.groups())
        for folder in POINTER_SOURCES
        for source in sorted((ROOT / folder).rglob("*"))
        if source.suffix in {".py", ".sh"} and not SKIP_DIRS.intersection(source.parts)
        for match in DOC_POINTER.finditer(source.read_text(encoding="utf-8"))
    ]
    assert any(name.startswith("benchmarks/") for _, name, _ in pointers)
    broken = [
        f"{source}: docs/{name}{'#' + fragment if fragment else ''} {problem}"
        for source, name, fragment in pointers
        if (problem := _dangling(ROOT / "docs" / name, fragment or ""))
    ]
    assert not broken, "code points at docs that are not there:\n" + "\n".join(broken)
