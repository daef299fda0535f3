"""Cached records back into models: the inverse of each model's ``to_record``
(:class:`~echoes_ops.gamedata.cache.WorldCache` stores one record per entry)."""

from __future__ import annotations

from typing import Any

from echoes_ops.gamedata.models import (
    Interactable,
    Item,
    Location,
    LootEntry,
    Npc,
    NpcSpawn,
    Source,
)


def location(record: dict[str, Any], source: Source) -> Location:
    return Location(
        id=record["id"],
        name=record["name"],
        description=record["description"],
        exits=record["exits"],
        danger_level=record["danger_level"],
        image_path=record["image_path"],
        x=record["x"],
        y=record["y"],
        tags=tuple(record["tags"]),
        interactables=tuple(
            Interactable(
                id=i["id"],
                name=i["name"],
                actions=tuple(i["actions"]),
                loot=tuple(i["loot"]),
                description=i.get("description"),
            )
            for i in record["interactables"]
        ),
        npcs=tuple(NpcSpawn(id=n["id"], chance=n["chance"]) for n in record["npcs"]),
        source=source,
    )


def item(record: dict[str, Any], source: Source) -> Item:
    return Item(**record, source=source)


def npc(record: dict[str, Any], source: Source) -> Npc:
    loot = tuple(LootEntry(**entry) for entry in record["loot"])
    return Npc(**{**record, "loot": loot}, source=source)
