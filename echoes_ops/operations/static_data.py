"""The static dataset as Redis sees it: encoding gamedata into hashes, and diffing."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from echoes_ops.client.bulk import READ_STEP, bulk, pairs
from echoes_ops.client.connect import AnyRedis
from echoes_ops.contract import codec, keys
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


@dataclass
class KindDiff:
    """How one kind's keys in Redis differ from the dataset."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    # the Redis keys behind added + changed, and behind removed (not part of the output)
    write_keys: list[str] = field(default_factory=list, repr=False)
    remove_keys: list[str] = field(default_factory=list, repr=False)

    @property
    def to_write(self) -> list[str]:
        return self.added + self.changed

    @property
    def clean(self) -> bool:
        return not (self.added or self.changed or self.removed)

    def as_dict(self, *, examples: int | None = None) -> dict[str, object]:
        def cut(ids: list[str]) -> list[str]:
            return ids if examples is None else ids[:examples]

        return {
            "added": len(self.added),
            "changed": len(self.changed),
            "removed": len(self.removed),
            "unchanged": self.unchanged,
            "added_ids": cut(self.added),
            "changed_ids": cut(self.changed),
            "removed_ids": cut(self.removed),
        }


async def find_static_keys(r: AnyRedis) -> dict[StaticKind, set[str]]:
    """Every static key in Redis, per kind, from one SCAN walk (``STATIC_CACHE_PATTERN``:
    the server's time of a walk is its visit of every key of the keyspace, whatever the
    pattern, so one walk costs a third of one per family). Look-alikes that only match the
    glob (``location:a:b:cache``) are dropped."""
    from echoes_ops.client.scan import collect_keys  # the walk: not for a version lookup

    found = await collect_keys(r, keys.STATIC_CACHE_PATTERN)
    return {kind: {k for k in found if kind.parse(k) is not None} for kind in StaticKind}


async def diff_static(r: AnyRedis, encoded: Encoded) -> dict[StaticKind, tuple[KindDiff, set[str]]]:
    """Compare the dataset with Redis. Returns per kind the diff (ids) and present keys.

    One SCAN walk finds the three families (:func:`find_static_keys`), then existing hashes
    are read in pipelined batches.
    """
    result: dict[StaticKind, tuple[KindDiff, set[str]]] = {}
    found = await find_static_keys(r)
    for kind in StaticKind:
        wanted = encoded.get(kind, {})
        present = found[kind]
        common = sorted(k for k in wanted if k in present)
        reads = [("HGETALL", k) for k in common]
        current = [
            pairs(x)
            for x in await bulk(r, reads, chunk=READ_STEP, stepped=True, raise_on_error=False)
        ]
        diff = KindDiff()
        changed_keys = []
        for key, stored in zip(common, current, strict=True):
            if stored == as_mapping(wanted[key]):
                diff.unchanged += 1
            else:
                changed_keys.append(key)
        added_keys = [k for k in wanted if k not in present]
        diff.remove_keys = sorted(k for k in present if k not in wanted)
        diff.write_keys = added_keys + changed_keys
        diff.added = sorted(_id(kind, k) for k in added_keys)
        diff.changed = sorted(_id(kind, k) for k in changed_keys)
        diff.removed = [_id(kind, k) for k in diff.remove_keys]
        result[kind] = (diff, present)
    return result


def _id(kind: StaticKind, key: str) -> str:
    parsed = kind.parse(key)
    return parsed if parsed is not None else key


# Numeric fields of the gamedata version record (preload writes every field as a string).
VERSION_INTS = ("locations", "items", "npcs")
VERSION_FLOATS = ("loaded_at",)


def version_json(record: Mapping[str, str]) -> dict[str, Any]:
    """The version record for JSON output: counts and ``loaded_at`` as numbers."""
    return codec.typed_fields(record, ints=VERSION_INTS, floats=VERSION_FLOATS)


async def read_version(r: AnyRedis) -> dict[str, str]:
    value: dict[str, str] = await r.hgetall(keys.GAMEDATA_VERSION_KEY)  # type: ignore[assignment]
    return value
