"""Reading gamedata YAML at the speed of libyaml, the C parser behind ``yaml.CSafeLoader``.

``yaml.CSafeLoader`` itself spends most of its time in Python: it builds a node (with two
marks) for every scalar, resolves each one through a list of regular expressions and then
constructs the objects from the nodes. Here the C parser's events become plain ``dict`` /
``list`` / scalar values directly, with the same tag resolution and scalar constructors as
``yaml.SafeLoader`` (taken from the precise loader's class, so they cannot drift apart), and
the same rules as the precise loader: a repeated key or a key that is not a plain value is
refused.

Only the YAML that gamedata uses is read here. Anything else (anchors and aliases, explicit
tags, merge keys, directives, several documents, a repeated key, a syntax error) raises
:class:`Unsupported`, and the caller reads the file with the precise loader
(:mod:`echoes_ops.gamedata.yamlload`), which gives the exact value or the exact
``file:line`` error the tool always gave.

The top level is streamed: each entry of a top-level list is handed over as soon as it is
complete, so a reader that validates entries as they come holds one entry's raw YAML at a
time, not the whole file's.

With ``lines=True`` mappings are :class:`LineDict` with the line of the mapping and of each
key, taken from the parser's marks (the same positions the precise loader's nodes carry).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode

from echoes_ops.gamedata.source import LineDict, Top
from echoes_ops.gamedata.source import Unsupported as Unsupported
from echoes_ops.gamedata.yamlload import PreciseLoader

AVAILABLE: bool = bool(yaml.__with_libyaml__)
if AVAILABLE:
    from yaml._yaml import CParser
# else: a PyYAML built without libyaml; the precise loader reads everything

# Implicit tags whose values the fast reader builds; any other tag (merge ``<<``, value ``=``)
# goes to the precise loader.
_BUILT = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "timestamp")
)
# Resolved plain scalars remembered per file (numbers and booleans repeat a lot).
_MEMO_LIMIT = 4096


def resolver_table() -> dict[str | None, list[tuple[str, Any]]]:
    table: dict[str | None, list[tuple[str, Any]]] = PreciseLoader.yaml_implicit_resolvers
    wildcard = table.get(None, [])
    return {first: list(rules) + list(wildcard) for first, rules in table.items()}


class _Reader:
    """One file's events turned into values."""

    def __init__(self, text: str, lines: bool) -> None:
        self.next_event: Callable[[], Any] = CParser(text).get_event
        self.lines = lines
        self.resolvers = resolver_table()
        self.constructor = SafeConstructor()
        self.constructors = PreciseLoader.yaml_constructors
        self.memo: dict[str, Any] = {}
        self.plain_keys: dict[str, str] = {}  # plain key text -> the key it resolves to

    def scalar(self, event: Any) -> Any:
        if event.anchor is not None or event.tag is not None:
            raise Unsupported
        value: str = event.value
        if not event.implicit[0]:  # quoted or block scalar: a string
            return value
        rules = self.resolvers.get(value[:1])
        if rules is None:
            return value
        memo = self.memo
        return memo[value] if value in memo else self.resolve(value, rules)

    def resolve(self, value: str, rules: list[tuple[str, Any]]) -> Any:
        """A plain scalar that may be more than a string, as SafeLoader resolves it."""
        result: Any = value
        for tag, pattern in rules:
            if pattern.match(value):
                if tag not in _BUILT:
                    raise Unsupported
                result = self.constructors[tag](self.constructor, ScalarNode(tag, value))
                break
        if len(self.memo) < _MEMO_LIMIT:
            self.memo[value] = result
        return result

    def value(self, event: Any) -> Any:
        kind = type(event)
        if kind is ScalarEvent:
            return self.scalar(event)
        if kind is MappingStartEvent:
            return self.mapping(event)
        if kind is SequenceStartEvent:
            return self.sequence(event)
        raise Unsupported  # an alias

    def key(self, event: Any) -> str:
        if type(event) is not ScalarEvent:
            raise Unsupported  # a complex key, or an alias
        key = self.scalar(event)
        if type(key) is not str:
            if key is None or type(key) not in (int, float, bool):
                raise Unsupported  # the precise loader names the problem
            key = str(key)
        if event.implicit[0]:
            self.plain_keys[event.value] = key
        return key

    def mapping(self, start: Any) -> dict[str, Any]:
        """A mapping; the loop takes plain keys seen before, and string or memoised values,
        without a call (it runs for every key and value of the world)."""
        if start.anchor is not None or start.tag is not None:
            raise Unsupported
        get, plain_keys, resolvers, memo = (
            self.next_event,
            self.plain_keys,
            self.resolvers,
            self.memo,
        )
        result: dict[str, Any]
        key_lines: dict[str, int] | None
        if self.lines:
            lined = LineDict()
            lined.line = start.start_mark.line + 1
            lined.key_lines = key_lines = {}
            result = lined
        else:
            key_lines = None
            result = {}
        while True:
            event = get()
            kind = type(event)
            if kind is MappingEndEvent:
                return result
            key = None
            if kind is ScalarEvent and event.anchor is None and event.tag is None:
                key = plain_keys.get(event.value) if event.implicit[0] else event.value
            if key is None:
                key = self.key(event)
            if key in result:
                raise Unsupported  # the precise loader reports the repeated key
            if key_lines is not None:
                key_lines[key] = event.start_mark.line + 1
            event = get()
            if type(event) is ScalarEvent and event.anchor is None and event.tag is None:
                value: Any = event.value
                if event.implicit[0]:
                    rules = resolvers.get(value[:1])
                    if rules is not None:
                        value = memo[value] if value in memo else self.resolve(value, rules)
                result[key] = value
            else:
                result[key] = self.value(event)

    def sequence(self, start: Any) -> list[Any]:
        if start.anchor is not None or start.tag is not None:
            raise Unsupported
        get, scalar = self.next_event, self.scalar
        result: list[Any] = []
        while True:
            event = get()
            kind = type(event)
            if kind is SequenceEndEvent:
                return result
            result.append(scalar(event) if kind is ScalarEvent else self.value(event))

    def top(self) -> Iterator[Top]:
        get = self.next_event
        get()  # stream start
        event = get()
        if type(event) is StreamEndEvent:
            yield ("root", None, 1)
            return
        if type(event) is not DocumentStartEvent or event.version or event.tags:
            raise Unsupported  # directives
        event = get()
        if type(event) is not MappingStartEvent:
            yield ("root", self.value(event), 1)
        else:
            yield from self.sections(event)
        if type(get()) is not DocumentEndEvent or type(get()) is not StreamEndEvent:
            raise Unsupported  # more than one document

    def sections(self, start: Any) -> Iterator[Top]:
        if start.anchor is not None or start.tag is not None:
            raise Unsupported
        get = self.next_event
        seen: set[str] = set()
        while True:
            event = get()
            if type(event) is MappingEndEvent:
                return
            key = self.key(event)
            if key in seen:
                raise Unsupported
            seen.add(key)
            line = event.start_mark.line + 1
            event = get()
            if type(event) is not SequenceStartEvent:
                yield ("value", key, line, self.value(event))
                continue
            if event.anchor is not None or event.tag is not None:
                raise Unsupported
            yield ("list", key, line)
            while True:
                event = get()
                if type(event) is SequenceEndEvent:
                    break
                yield ("entry", self.value(event), event.start_mark.line + 1)
            yield ("end",)


def read_top(text: str, *, lines: bool = False) -> Iterator[Top]:
    """The document's top level, entries of top-level lists one at a time (see ``Top``).

    Raises :class:`Unsupported` (possibly after yielding some items) when the text needs
    the precise loader; a caller that acts on the items must be ready to undo them."""
    if not AVAILABLE:
        raise Unsupported
    try:
        yield from _Reader(text, lines).top()
    except yaml.YAMLError:
        raise Unsupported from None
