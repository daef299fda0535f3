"""One reading of a gamedata folder: every file read, validated entry by entry, and
cross-checked (see :mod:`echoes_ops.gamedata.loader` for how the loader uses it)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from echoes_ops.gamedata import nativeyaml
from echoes_ops.gamedata.entries import KINDS, PARSERS, Entry, Problems
from echoes_ops.gamedata.models import Item, Location, Npc
from echoes_ops.gamedata.source import (
    LineDict,
    Top,
    Unsupported,
    YamlProblem,
    decode_source,
    read_source,
)


class Reading:
    """One pass over every file: read, validate entry by entry, cross-check."""

    def __init__(self, files: list[Path], names: list[str], with_lines: frozenset[str]) -> None:
        self.problems = Problems()
        self.parsed: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        self.exact: set[str] = set()  # files read with line information
        self.digests: list[tuple[str, str]] = []
        for path, name in zip(files, names, strict=True):
            self._read(path, name, name in with_lines)
        check_references(self.parsed, self.problems)

    def _read(self, path: Path, name: str, lines: bool) -> None:
        try:
            data = read_source(path)
            self.digests.append((name, hashlib.sha256(data).hexdigest()))
            text = decode_source(data)
        except YamlProblem as exc:
            self.exact.add(name)
            self.problems.add(name, exc.line, exc.message)
            return
        del data
        if nativeyaml.AVAILABLE and not lines:
            staged = _File(self, name)
            try:
                staged.consume(nativeyaml.read_top(text))
            except Unsupported:
                pass  # libyaml decides
            else:
                staged.commit()
                return
        # PyYAML (libyaml and the precise loader) only for a file yaml-rs left to it
        from echoes_ops.gamedata import fastyaml
        from echoes_ops.gamedata.yamlload import load_yaml_text

        if fastyaml.AVAILABLE:
            staged = _File(self, name)
            try:
                staged.consume(fastyaml.read_top(text, lines=lines))
            except Unsupported:
                pass  # the precise loader decides
            else:
                staged.commit()
                if lines:
                    self.exact.add(name)
                return
        self.exact.add(name)
        try:
            document = load_yaml_text(text)
        except YamlProblem as exc:
            self.problems.add(name, exc.line, exc.message)
            return
        staged = _File(self, name)
        staged.consume(_top_of(document))
        staged.commit()


def _top_of(document: Any) -> Iterator[Top]:
    """A document of the precise loader, in the shape :func:`fastyaml.read_top` yields."""
    if not isinstance(document, LineDict):
        yield ("root", document, 1)
        return
    for key, value in document.items():
        line = document.key_lines.get(key, 1)
        if not isinstance(value, list):
            yield ("value", key, line, value)
            continue
        yield ("list", key, line)
        for item in value:
            yield ("entry", item, item.line if isinstance(item, LineDict) else line)
        yield ("end",)


class _File:
    """One file's findings, kept apart until the file is read to its end: a file the fast
    reader gives up on half-way is read again by the precise loader, from scratch."""

    def __init__(self, run: Reading, name: str) -> None:
        self.run = run
        self.name = name
        self.problems = Problems()
        self.parsed: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}

    def consume(self, top: Iterator[Top]) -> None:
        name, problems = self.name, self.problems
        kind: str | None = None  # the list being read; None for a list that is not a section
        line = index = 0
        for item in top:
            tag = item[0]
            if tag == "entry":
                if kind is not None:
                    self._entry(kind, line, index, item[1], item[2])
                index += 1
            elif tag == "list":
                kind, line, index = self._section(item[1], item[2]), item[2], 0
            elif tag == "value":
                section = self._section(item[1], item[2])
                if section is not None and item[3] is not None:
                    problems.add(name, item[2], f"'{section}' must be a list")
            elif tag == "root" and item[1] is not None:
                problems.add(name, 1, "top level must be a mapping with locations, items or npcs")

    def _section(self, key: str, line: int) -> str | None:
        if key in KINDS:
            return key
        self.problems.add(self.name, line, f"unknown section '{key}' (expected {', '.join(KINDS)})")
        return None

    def _entry(self, kind: str, line: int, index: int, raw: Any, start: int) -> None:
        if not isinstance(raw, dict):
            self.problems.add(self.name, line, f"{kind}[{index}] must be a mapping")
            return
        entry = Entry(raw, self.name, kind[:-1], self.problems, start)
        obj = PARSERS[kind](entry)
        if not obj.id:
            return
        first = self.run.parsed[kind].get(obj.id) or self.parsed[kind].get(obj.id)
        if first is not None:
            self.problems.add(
                self.name,
                entry.line,
                f"duplicate {kind[:-1]} id '{obj.id}' (first at {first.source})",
            )
            self.problems.files.add(first.source.file)
            return
        self.parsed[kind][obj.id] = obj

    def commit(self) -> None:
        self.run.problems.extend(self.problems)
        for kind, found in self.parsed.items():
            self.run.parsed[kind].update(found)


def check_references(parsed: dict[str, dict[str, Any]], problems: Problems) -> None:
    locations: dict[str, Location] = parsed["locations"]
    items: dict[str, Item] = parsed["items"]
    npcs: dict[str, Npc] = parsed["npcs"]
    for loc in locations.values():
        where = loc.source
        for direction, target in loc.exits.items():
            if target == loc.id:
                problems.add(where.file, where.line, f"location '{loc.id}': exit leads to itself")
            elif target not in locations:
                problems.add(
                    where.file,
                    where.line,
                    f"location '{loc.id}': exit '{direction}' leads to unknown location '{target}'",
                )
        for spawn in loc.npcs:
            if spawn.id and spawn.id not in npcs:
                problems.add(
                    where.file, where.line, f"location '{loc.id}': unknown npc '{spawn.id}'"
                )
        for thing in loc.interactables:
            for item_id in thing.loot:
                if item_id not in items:
                    problems.add(
                        where.file,
                        where.line,
                        f"location '{loc.id}': interactable '{thing.id}' drops unknown item "
                        f"'{item_id}'",
                    )
    for npc in npcs.values():
        for entry in npc.loot:
            if entry.item and entry.item not in items:
                problems.add(
                    npc.source.file,
                    npc.source.line,
                    f"npc '{npc.id}': loot names unknown item '{entry.item}'",
                )
