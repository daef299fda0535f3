"""Typed game data: locations, items and NPC definitions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DIRECTIONS = (
    "north",
    "south",
    "east",
    "west",
    "northeast",
    "northwest",
    "southeast",
    "southwest",
    "up",
    "down",
    "in",
    "out",
)
ITEM_TYPES = ("weapon", "armor", "consumable", "material", "tool", "ammo", "quest", "junk")


@dataclass(frozen=True)
class Source:
    """Where an entry was defined."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Interactable:
    id: str
    name: str
    actions: tuple[str, ...] = ()
    loot: tuple[str, ...] = ()
    description: str | None = None

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"id": self.id, "name": self.name}
        if self.description is not None:
            record["description"] = self.description
        record["actions"] = list(self.actions)
        record["loot"] = list(self.loot)
        return record


@dataclass(frozen=True)
class NpcSpawn:
    id: str
    chance: float

    def to_record(self) -> dict[str, Any]:
        return {"id": self.id, "chance": self.chance}


@dataclass(frozen=True)
class Location:
    id: str
    name: str
    description: str
    exits: Mapping[str, str]
    danger_level: int
    image_path: str
    x: float
    y: float
    tags: tuple[str, ...] = ()
    interactables: tuple[Interactable, ...] = ()
    npcs: tuple[NpcSpawn, ...] = ()
    source: Source = field(default=Source("?", 0), compare=False)

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "exits": dict(self.exits),
            "danger_level": self.danger_level,
            "image_path": self.image_path,
            "x": self.x,
            "y": self.y,
            "tags": list(self.tags),
            "interactables": [i.to_record() for i in self.interactables],
            "npcs": [n.to_record() for n in self.npcs],
        }


@dataclass(frozen=True)
class Item:
    id: str
    name: str
    description: str
    type: str
    weight: float
    volume: float
    emoji: str
    image_path: str
    equippable: bool
    consumable: bool
    tier: int
    stats: Mapping[str, float] = field(default_factory=dict)
    effects: Mapping[str, float] = field(default_factory=dict)
    source: Source = field(default=Source("?", 0), compare=False)

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "type": self.type,
            "weight": self.weight,
            "volume": self.volume,
            "emoji": self.emoji,
            "image_path": self.image_path,
            "equippable": self.equippable,
            "consumable": self.consumable,
            "tier": self.tier,
            "stats": dict(self.stats),
            "effects": dict(self.effects),
        }


@dataclass(frozen=True)
class LootEntry:
    item: str
    chance: float
    min: int = 1
    max: int = 1

    def to_record(self) -> dict[str, Any]:
        return {"item": self.item, "chance": self.chance, "min": self.min, "max": self.max}


@dataclass(frozen=True)
class Npc:
    id: str
    name: str
    description: str
    level: int
    hp: int
    damage_min: int
    damage_max: int
    hostile: bool
    xp_reward: int = 0
    loot: tuple[LootEntry, ...] = ()
    source: Source = field(default=Source("?", 0), compare=False)

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "level": self.level,
            "hp": self.hp,
            "damage_min": self.damage_min,
            "damage_max": self.damage_max,
            "hostile": self.hostile,
            "xp_reward": self.xp_reward,
            "loot": [entry.to_record() for entry in self.loot],
        }


@dataclass(frozen=True)
class GameData:
    """A validated dataset. Ids are unique per kind and every reference resolves."""

    locations: Mapping[str, Location]
    items: Mapping[str, Item]
    npcs: Mapping[str, Npc]
    root: str = ""

    def counts(self) -> dict[str, int]:
        return {
            "locations": len(self.locations),
            "items": len(self.items),
            "npcs": len(self.npcs),
        }
