"""Reading gamedata YAML with yaml-rs, a parser in Rust that builds the Python values
itself (about 4x faster than turning libyaml's events into values in Python).

yaml-rs reads YAML 1.2; the game reads its data with PyYAML's ``safe_load`` (YAML 1.1),
and the two read some plain scalars differently (``yes``/``no``/``on``/``off``, ``010``,
``0o17``, ``1e3``, ``1_000``, ``1:30``, dates, ``<<``). This reader is used only where the
two cannot differ, and hands the file to :mod:`~echoes_ops.gamedata.fastyaml` (libyaml,
PyYAML's own rules) otherwise:

- the text holds none of the spellings the two read differently as numbers, and no tag,
  anchor, alias, tab, byte-order mark or YAML 1.1 line break (a regular expression over the
  text; a string that merely looks like one, quoted or not, sends the file to libyaml too);
- no string value or key is one PyYAML could read as something else had it been plain
  (booleans, null, numbers, dates, merge keys): yaml-rs cannot say whether it was quoted;
- every key is a string, none repeated (yaml-rs refuses a repeated key).

The file is cut along its top level, which must be plain ``section:`` lines with a block
list of entries under each (the shape ``yaml.safe_dump`` writes and people write by hand):
entries are parsed :data:`CHUNK` at a time, so memory holds one chunk's raw values, and
the line each entry starts on is known from the cut (checked against the count of entries
yaml-rs returns). Anything else goes to libyaml, which gives the exact value or the exact
error the tool always gave.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

from echoes_ops.gamedata.source import Top, Unsupported
from echoes_ops.gamedata.yaml11 import resolver_table

try:
    import yaml_rs

    AVAILABLE = True
except ImportError:  # pragma: no cover - a dependency; libyaml reads everything then
    AVAILABLE = False

CHUNK = 2000  # entries per yaml-rs call

# Text this reader leaves to libyaml: tabs, YAML 1.1 line breaks, a byte-order mark ...
_RARE = ("\t", "\x85", "\u2028", "\u2029", "\ufeff")
# ... tags, anchors, aliases, complex keys and the characters PyYAML refuses to start a
# value with (yaml-rs is more lenient about some) ...
_NODE_MARK = re.compile(r"(?:^|[\s\[{,])[!&*?@`%]", re.MULTILINE)
# ... a block scalar header that is not one (yaml-rs reads ``[|x]`` as a string) ...
_NOT_A_HEADER = re.compile(r"(?:^|[\s\[{,])[|>][^\s\-+0-9#]", re.MULTILINE)
# ... and any plain value that starts like a number (digit, sign, dot, underscore) but is
# not a plain decimal integer or fraction: yaml-rs reads 0X1F, 0O7, _1, 1e3, .iNF as
# numbers, PyYAML reads 010 as octal and 1:30 as sexagesimal. Only ``-12``, ``0``, ``3.25``
# and the like (read alike by both) pass, and values with more words after the first
# (``.38 Rounds``: a string for both). A plain value starts at a line's first word (after
# any list dashes), after a mapping's ``:`` or after a flow collection's ``[``, ``{`` or
# ``,``; prose in strings that looks like such a value sends the file to libyaml too. One
# scan per kind of start, each led by a literal (about 5 ns a character in all). The
# quantifiers of the starts are possessive: a value never starts with a space or with a
# list's dash, so giving some back could never match, only cost time (a third of the
# line-start scan on the 22,000-entry world); the first-character lookahead fails most
# values (words) at once.
_ODD_VALUE = (
    r"(?=[-+._0-9])"  # starts like a number
    r"(?!-(?:[ \n]|$))"  # not a list's dash
    r"(?!-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?[ ]*(?:#|$|[,\]}]))"  # not a plain decimal
    r"[-+._0-9][^\s,\[\]{}#]*[ ]*(?:#|$|[,\]}])"  # that is the whole value
)
_ODD_NUMBERS = tuple(
    re.compile(start + _ODD_VALUE, re.MULTILINE)
    for start in (r":[ ]++", r"[\[{,][ ]*+", r"\n[ ]*+(?:-[ ]+)*+")
)


def _spelled_differently(text: str) -> bool:
    """Whether ``text`` may hold something YAML 1.1 and 1.2 read differently, or something
    this reader leaves to libyaml (a string that only looks like one counts too)."""
    if any(mark in text for mark in _RARE):
        return True
    if any(mark in text for mark in "!&*?@`%") and _NODE_MARK.search(text):
        return True
    if ("|" in text or ">" in text) and _NOT_A_HEADER.search(text):
        return True
    return any(scan.search(text) for scan in _ODD_NUMBERS)


# Line starts are found as a newline followed by the rest, never with ``^`` (MULTILINE): the
# regular expression engine looks for a literal newline fast, but tries ``^`` at every
# character (about 4x slower over an 8 MB file). The first line is matched on its own.
# A line at column 0 that is neither a comment nor a list's dash (an entry at column 0):
_TOP_LINE = re.compile(r"\n([^\s#-][^\n]*)")
_FIRST_TOP_LINE = re.compile(r"[^\s#-][^\n]*")
# ``---``, ``-x`` at column 0:
_ODD_DASH = re.compile(r"\n-(?![ \n]|$)", re.MULTILINE)
_FIRST_ODD_DASH = re.compile(r"-(?![ \n]|$)", re.MULTILINE)


def _top_lines(text: str) -> list[tuple[int, int, str]]:
    """(start, end, text) of every line at column 0 that is neither a comment nor a dash."""
    first = _FIRST_TOP_LINE.match(text)
    tops = [(first.start(), first.end(), first.group())] if first else []
    tops += [(m.start(1), m.end(1), m.group(1)) for m in _TOP_LINE.finditer(text)]
    return tops


_SECTION = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*):[ ]*(?:#.*)?")
_BLANK = re.compile(r"(?:[ ]*(?:#[^\n]*)?\n)*[ ]*(?:#[^\n]*)?")
_FIRST_ENTRY = re.compile(r"\n?(?:[ ]*(?:#[^\n]*)?\n)*([ ]*)-[ ]+[^ #\n]")

_RESOLVERS = resolver_table()
_FIRST = frozenset(first for first in _RESOLVERS if first is not None)


def _plain_reads_otherwise(text: str) -> bool:
    """Whether PyYAML reads ``text``, written plain, as something other than this string."""
    rules = _RESOLVERS.get(text[:1])
    return rules is not None and any(pattern.match(text) for _, pattern in rules)


def _check(entries: list[Any]) -> None:
    """Raise :class:`Unsupported` if a value yaml-rs gave may not be PyYAML's: a string that
    PyYAML would read otherwise had it been plain, a key that is not such a string, a value
    outside the fast subset (a date, bytes)."""
    first, keys_seen = _FIRST, set()
    pending: list[Any] = list(entries)
    while pending:
        value = pending.pop()
        kind = type(value)
        if kind is dict:
            for key, item in value.items():
                if key not in keys_seen:
                    if type(key) is not str or (key[:1] in first and _plain_reads_otherwise(key)):
                        raise Unsupported
                    keys_seen.add(key)
                kind = type(item)
                if kind is str:
                    if item[:1] in first and _plain_reads_otherwise(item):
                        raise Unsupported
                elif kind is dict or kind is list:
                    pending.append(item)
                elif kind is float:
                    if not math.isfinite(item):
                        raise Unsupported  # .inf or .nan: not a plain decimal
                elif not (kind is int or kind is bool or item is None):
                    raise Unsupported
        elif kind is list:
            pending.extend(value)
        elif kind is str:
            if value[:1] in first and _plain_reads_otherwise(value):
                raise Unsupported
        elif kind is float:
            if not math.isfinite(value):
                raise Unsupported
        elif not (kind is int or kind is bool or value is None):
            raise Unsupported


def _parse(chunk: str, count: int) -> list[Any]:
    try:
        entries = yaml_rs.loads(chunk, parse_datetime=False)
    except (yaml_rs.YAMLDecodeError, ValueError, OverflowError, RecursionError):
        raise Unsupported from None
    if type(entries) is not list or len(entries) != count:
        raise Unsupported  # the cut did not fall where the entries start
    _check(entries)
    return entries


class _Cut:
    """The top level of one file: its sections and where each entry starts."""

    def __init__(self, text: str) -> None:
        self.text = text
        if _spelled_differently(text):
            raise Unsupported
        tops = _top_lines(text)
        odd_dash = _FIRST_ODD_DASH.match(text) or _ODD_DASH.search(text)
        if not tops or odd_dash or "\n-" in text[: tops[0][0] + 1]:
            raise Unsupported  # no top level to cut along, a marker, or a list document
        self.sections: list[tuple[str, int, int, int]] = []  # key, line, body start, end
        seen: set[str] = set()
        line, at = 1, 0
        for index, top in enumerate(tops):
            top_start, top_end, top_text = top
            key = _SECTION.fullmatch(top_text)
            if key is None:
                raise Unsupported  # not a plain ``section:`` line
            if key.group(1) in seen:
                raise Unsupported  # libyaml names the repeated key
            seen.add(key.group(1))
            line += text.count("\n", at, top_start)
            at = top_start
            end = tops[index + 1][0] if index + 1 < len(tops) else len(text)
            self.sections.append((key.group(1), line, top_end, end))

    def read(self) -> Iterator[Top]:
        text = self.text
        line, at = 1, 0
        for key, key_line, start, end in self.sections:
            if _BLANK.fullmatch(text, start, end):
                yield ("value", key, key_line, None)
                continue
            first = _FIRST_ENTRY.match(text, start, end)
            if first is None:
                raise Unsupported  # not a block list of entries
            indent = len(first.group(1))
            # the entry lines (at the first one's indentation), each found by the newline
            # before it (the first entry's indentation starts right after one)
            after = first.start(1) - 1
            if text[after] != "\n":
                raise Unsupported  # not at a line start after all: libyaml decides
            dash = re.compile(rf"\n {{{indent}}}-(?=[ \n]|$)")
            starts = [m.start() + 1 for m in dash.finditer(text, after, end)]
            empty = re.compile(rf"\n {{{indent}}}-[ ]*(?:#[^\n]*)?$", re.MULTILINE)
            if empty.search(text, after, end):
                raise Unsupported  # an entry whose value starts on a later line
            yield ("list", key, key_line)
            for begin in range(0, len(starts), CHUNK):
                group = starts[begin : begin + CHUNK]
                stop = starts[begin + CHUNK] if begin + CHUNK < len(starts) else end
                entries = _parse(text[group[0] : stop], len(group))
                for offset, entry in zip(group, entries, strict=True):
                    line += text.count("\n", at, offset)
                    at = offset
                    yield ("entry", entry, line)
            yield ("end",)


def read_top(text: str) -> Iterator[Top]:
    """The document's top level in the shape of :func:`fastyaml.read_top` (without key
    lines). Raises :class:`Unsupported` (possibly after yielding some items) when the file
    must be read by libyaml."""
    if not AVAILABLE:
        raise Unsupported
    yield from _Cut(text).read()
