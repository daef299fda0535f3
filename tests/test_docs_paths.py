"""Docs name files and tests that exist: every backticked file name in docs/ and the README
is a file of the repo, and every ``tests/x.py::name`` names a test defined in that file. A
split or a rename that leaves an operator's pointer dangling fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP_DIRS = {".venv", ".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".echoes-local"}
# names the docs mention that are not this repo's files, each with the reason
NOT_OURS = {
    "inspect.py": "the standard library module a benchmark's name must not shadow",
    "yaml/__init__.py": "PyYAML's package, hashed for the gamedata cache's version stamp",
}
FILE_NAME = re.compile(r"`([A-Za-z0-9_./-]+\.(?:py|md|sql|sh|toml|yaml|lock))`")
TEST_ID = re.compile(r"\b(tests/[A-Za-z0-9_/]+\.py)::([A-Za-z0-9_]+)")


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
