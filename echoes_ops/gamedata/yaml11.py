"""YAML 1.1's implicit tags for plain scalars, as PyYAML's ``SafeLoader`` resolves them,
without importing PyYAML (about 20 ms of a command's start-up, for the yaml-rs path that
needs only this table).

The patterns are PyYAML's own (``yaml/resolver.py``), registered in the same order for the
same first characters; ``tests/test_gamedata_native.py`` compares this table with the one
PyYAML's loader holds, so the two cannot drift apart.
"""

from __future__ import annotations

import re
from typing import Any

_TAG = "tag:yaml.org,2002:"

# (tag, pattern, flags, first characters), in PyYAML's order of registration
_RESOLVERS: tuple[tuple[str, str, int, str], ...] = (
    (
        "bool",
        r"""^(?:yes|Yes|YES|no|No|NO
                    |true|True|TRUE|false|False|FALSE
                    |on|On|ON|off|Off|OFF)$""",
        re.X,
        "yYnNtTfFoO",
    ),
    (
        "float",
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
                    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
                    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""",
        re.X,
        "-+0123456789.",
    ),
    (
        "int",
        r"""^(?:[-+]?0b[0-1_]+
                    |[-+]?0[0-7_]+
                    |[-+]?(?:0|[1-9][0-9_]*)
                    |[-+]?0x[0-9a-fA-F_]+
                    |[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$""",
        re.X,
        "-+0123456789",
    ),
    ("merge", r"^(?:<<)$", 0, "<"),
    (
        "null",
        r"""^(?: ~
                    |null|Null|NULL
                    | )$""",
        re.X,
        "~nN\0",  # \0 stands for the empty string
    ),
    (
        "timestamp",
        r"""^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
                    |[0-9][0-9][0-9][0-9] -[0-9][0-9]? -[0-9][0-9]?
                     (?:[Tt]|[ \t]+)[0-9][0-9]?
                     :[0-9][0-9] :[0-9][0-9] (?:\.[0-9]*)?
                     (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$""",
        re.X,
        "0123456789",
    ),
    ("value", r"^(?:=)$", 0, "="),
    ("yaml", r"^(?:!|&|\*)$", 0, "!&*"),
)


def resolver_table() -> dict[str | None, list[tuple[str, Any]]]:
    """First character of a plain scalar -> the (tag, compiled pattern) rules to try, in
    order (the shape of PyYAML's ``yaml_implicit_resolvers``)."""
    table: dict[str | None, list[tuple[str, Any]]] = {}
    for tag, pattern, flags, firsts in _RESOLVERS:
        compiled = re.compile(pattern, flags)
        for first in firsts:
            table.setdefault("" if first == "\0" else first, []).append((_TAG + tag, compiled))
    return table
