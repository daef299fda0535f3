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

from echoes_ops.gamedata.source import LineDict as LineDict
from echoes_ops.gamedata.source import YamlProblem as YamlProblem
from echoes_ops.gamedata.source import decode_source as decode_source
from echoes_ops.gamedata.source import read_source as read_source


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
