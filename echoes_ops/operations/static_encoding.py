"""Gamedata encoded into the static hashes Redis holds, and the content hash of the whole
dataset. No Redis client here: a plain ``preload``'s reading child (cli/readahead.py) notes
a world's hash and keys with it before the command has loaded one."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from echoes_ops.contract import codec
from echoes_ops.contract.static import StaticKind

if TYPE_CHECKING:
    from echoes_ops.gamedata.models import GameData, Item, Location

# An encoded hash as HSET takes it: (field, value, field, value, ...), in contract order.
Flat = tuple[str, ...]
# kind -> {redis key -> encoded hash}
Encoded = dict[StaticKind, dict[str, Flat]]


def flatten(mapping: dict[str, str]) -> Flat:
    return tuple(part for item in mapping.items() for part in item)


def as_mapping(flat: Flat) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _location_hash(loc: Location) -> Flat:
    f, j = codec.encode_float, codec.encode_json
    return (
        "id", loc.id,
        "name", loc.name,
        "description", loc.description,
        "exits", j(dict(loc.exits)),
        "danger_level", str(loc.danger_level),
        "image_path", loc.image_path,
        "x", f(loc.x),
        "y", f(loc.y),
        "tags", j(list(loc.tags)),
        "interactables", j([i.to_record() for i in loc.interactables]),
        "npcs", j([n.to_record() for n in loc.npcs]),
    )  # fmt: skip


def _item_hash(item: Item) -> Flat:
    f, j, b = codec.encode_float, codec.encode_json, codec.encode_bool
    return (
        "id", item.id,
        "name", item.name,
        "description", item.description,
        "type", item.type,
        "weight", f(item.weight),
        "volume", f(item.volume),
        "emoji", item.emoji,
        "image_path", item.image_path,
        "equippable", b(item.equippable),
        "consumable", b(item.consumable),
        "tier", str(item.tier),
        "stats", j(item.stats),
        "effects", j(item.effects),
    )  # fmt: skip


def encode_gamedata(data: GameData) -> Encoded:
    """Every static key with the exact hash fields the plan's readers expect.

    Locations and items, the bulk of a world, use direct encoders (no per-field type
    dispatch); tests/test_static_data.py keeps them identical to ``codec.encode_mapping``.
    """
    encoded: Encoded = {
        StaticKind.LOCATION: {
            StaticKind.LOCATION.key(i): _location_hash(loc) for i, loc in data.locations.items()
        },
        StaticKind.ITEM: {
            StaticKind.ITEM.key(i): _item_hash(item) for i, item in data.items.items()
        },
        StaticKind.NPC: {
            StaticKind.NPC.key(i): flatten(codec.encode_mapping(npc.to_record()))
            for i, npc in data.npcs.items()
        },
    }
    return encoded


@dataclass(frozen=True)
class Digest:
    """The dataset's content hash and the size of what was hashed (about its data size)."""

    sha256: str
    size: int


def content_digest(encoded: Encoded) -> Digest:
    """A stable digest of what would be stored (independent of file layout and order)."""
    document = orjson.dumps(
        {kind.label: encoded.get(kind, {}) for kind in StaticKind}, option=orjson.OPT_SORT_KEYS
    )
    return Digest(hashlib.sha256(document).hexdigest(), len(document))


def content_hash(encoded: Encoded) -> str:
    return content_digest(encoded).sha256
