"""The static dataset as Redis sees it: diffing it against the encoded gamedata
(:mod:`~echoes_ops.operations.static_encoding`, whose names are also given here) and the
version record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from echoes_ops.client.bulk import READ_STEP, bulk, pairs
from echoes_ops.client.connect import AnyRedis
from echoes_ops.contract import codec, keys
from echoes_ops.contract.static import StaticKind
from echoes_ops.operations.static_encoding import Digest as Digest
from echoes_ops.operations.static_encoding import Encoded as Encoded
from echoes_ops.operations.static_encoding import Flat as Flat
from echoes_ops.operations.static_encoding import as_mapping as as_mapping
from echoes_ops.operations.static_encoding import content_digest as content_digest
from echoes_ops.operations.static_encoding import content_hash as content_hash
from echoes_ops.operations.static_encoding import encode_gamedata as encode_gamedata
from echoes_ops.operations.static_encoding import flatten as flatten


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
