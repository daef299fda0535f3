"""What every gamedata reader shares, without importing PyYAML: a file's text, the
problems reading it gives, the shape readers hand entries over in, and mappings that know
their lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# What a reader's ``read_top`` yields:
#   ("root", value, 1)         the document is not a mapping (None for an empty file)
#   ("value", key, line, v)    a top-level key whose value is not a list
#   ("list", key, line)        a top-level list starts; ("entry", v, line) for each item (the
#                              line it starts on), then ("end",)
Top = tuple[Any, ...]


class Unsupported(Exception):
    """The text needs the precise loader (YAML outside the fast subset, or invalid)."""


class LineDict(dict[str, Any]):
    """A mapping that knows where it starts in its file (1-based) and where each key is."""

    line: int = 0
    key_lines: dict[str, int]


class YamlProblem(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def read_source(path: Path) -> bytes:
    """The file's bytes; raise :class:`YamlProblem` when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise YamlProblem(1, f"cannot read file: {exc.strerror or exc}") from None


def decode_source(data: bytes) -> str:
    """UTF-8 text with universal newlines (what ``Path.read_text`` gives)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlProblem(1, f"file is not UTF-8 text ({exc.reason})") from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text
