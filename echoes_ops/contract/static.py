"""The static caches preloaded from gamedata: locations, items and NPC definitions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from echoes_ops.contract import keys


@dataclass(frozen=True)
class _KindInfo:
    label: str
    key: Callable[[object], str]
    pattern: str
    parse: Callable[[str | bytes], str | None]
    # fields whose values are JSON documents
    json_fields: frozenset[str]


class StaticKind(Enum):
    """A family of static cache keys."""

    LOCATION = _KindInfo(
        "location",
        keys.location_cache_key,
        keys.LOCATION_CACHE_PATTERN,
        keys.parse_location_cache_key,
        frozenset({"exits", "tags", "interactables", "npcs"}),
    )
    ITEM = _KindInfo(
        "item",
        keys.item_def_key,
        keys.ITEM_DEF_PATTERN,
        keys.parse_item_def_key,
        frozenset({"stats", "effects"}),
    )
    NPC = _KindInfo(
        "npc",
        keys.npc_def_key,
        keys.NPC_DEF_PATTERN,
        keys.parse_npc_def_key,
        frozenset({"loot"}),
    )

    @property
    def label(self) -> str:
        return self.value.label

    def key(self, entry_id: object) -> str:
        return self.value.key(entry_id)

    @property
    def pattern(self) -> str:
        return self.value.pattern

    def parse(self, key: str | bytes) -> str | None:
        return self.value.parse(key)

    @property
    def json_fields(self) -> frozenset[str]:
        return self.value.json_fields

    @classmethod
    def from_label(cls, label: str) -> StaticKind:
        for kind in cls:
            if kind.label == label:
                return kind
        raise ValueError(label)
