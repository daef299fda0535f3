"""The precise YAML loader: pure-Python PyYAML that remembers the line of every mapping and
key, for ``file:line`` messages.

It is the reference for what gamedata YAML means. :mod:`echoes_ops.gamedata.fastyaml` reads
the common case much faster and hands everything else (and every error) to this loader, so
messages and values are the ones this loader gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class LineDict(dict[str, Any]):
    """A mapping that knows where it starts in its file (1-based) and where each key is."""

    line: int = 0
    key_lines: dict[str, int]


class PreciseLoader(yaml.SafeLoader):
    """SafeLoader whose mappings are :class:`LineDict` (repeated or non-plain keys refused)."""


def _construct_mapping(loader: PreciseLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool):
            raise yaml.constructor.ConstructorError(
                None, None, "mapping keys must be plain values", key_node.start_mark
            )
        skey = str(key)
        if skey in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {skey!r}", key_node.start_mark
            )
        result[skey] = loader.construct_object(value_node, deep=True)
        result.key_lines[skey] = key_node.start_mark.line + 1
    return result


PreciseLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


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


def load_yaml(path: Path) -> Any:
    """Parse one YAML file; raise :class:`YamlProblem` with the offending line."""
    return load_yaml_text(decode_source(read_source(path)))


def load_yaml_text(text: str) -> Any:
    """Parse YAML text; raise :class:`YamlProblem` with the offending line."""
    try:
        return yaml.load(text, Loader=PreciseLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlProblem(line, f"YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise YamlProblem(1, f"YAML error: {exc}") from None
