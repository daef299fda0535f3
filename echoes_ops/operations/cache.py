"""What the static caches hold compared with gamedata, and invalidating them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.cluster import RedisCluster

from echoes_ops.client.bulk import bulk
from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.slots import group_by_slot
from echoes_ops.contract import keys
from echoes_ops.contract.static import StaticKind
from echoes_ops.gamedata.models import GameData
from echoes_ops.operations.static_data import (
    KindDiff,
    content_hash,
    diff_static,
    encode_gamedata,
    find_static_keys,
    read_version,
    version_json,
)

# Fields every static hash must have to be usable by the plan's readers.
REQUIRED_FIELDS = frozenset({"id", "name"})
EXAMPLES = 20


@dataclass
class KindStatus:
    expected: int
    loaded: int
    diff: KindDiff
    malformed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "loaded": self.loaded,
            "missing": len(self.diff.added),
            "stale": len(self.diff.changed),
            "extra": len(self.diff.removed),
            "malformed": len(self.malformed),
            "missing_ids": self.diff.added[:EXAMPLES],
            "stale_ids": self.diff.changed[:EXAMPLES],
            "extra_ids": self.diff.removed[:EXAMPLES],
            "malformed_keys": self.malformed[:EXAMPLES],
        }


@dataclass
class CacheStatus:
    gamedata_version: str
    loaded_version: str | None
    version_record: dict[str, str]
    kinds: dict[str, KindStatus]

    @property
    def in_sync(self) -> bool:
        return self.loaded_version == self.gamedata_version and all(
            k.diff.clean and not k.malformed for k in self.kinds.values()
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "in_sync": self.in_sync,
            "gamedata_version": self.gamedata_version,
            "loaded_version": self.loaded_version,
            "version_record": version_json(self.version_record),
            "kinds": {name: k.as_dict() for name, k in self.kinds.items()},
        }


async def cache_status(r: AnyRedis, data: GameData) -> CacheStatus:
    """Compare every static key with gamedata: missing, stale, extra and malformed keys."""
    encoded = encode_gamedata(data)
    version = await read_version(r)
    diffs = await diff_static(r, encoded)
    kinds: dict[str, KindStatus] = {}
    for kind, (diff, present) in diffs.items():
        malformed = await _malformed(r, sorted(present))
        kinds[kind.label] = KindStatus(
            expected=len(encoded[kind]), loaded=len(present), diff=diff, malformed=malformed
        )
    return CacheStatus(
        gamedata_version=content_hash(encoded),
        loaded_version=version.get("content_hash"),
        version_record=version,
        kinds=kinds,
    )


async def _malformed(r: AnyRedis, present: list[str]) -> list[str]:
    """Keys of a static family that are not hashes or lack the required fields."""
    replies = await bulk(
        r, [("HMGET", key, *sorted(REQUIRED_FIELDS)) for key in present], raise_on_error=False
    )
    bad = []
    for key, reply in zip(present, replies, strict=True):
        if not isinstance(reply, list) or any(value is None for value in reply):
            bad.append(key)
    return bad


@dataclass
class InvalidateResult:
    dry_run: bool
    keys: list[str]
    deleted: int

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "keys": self.keys, "deleted": self.deleted}


async def invalidate(
    r: AnyRedis, kind: StaticKind, ids: Sequence[str], *, dry_run: bool = False
) -> InvalidateResult:
    """Delete the named static keys (ids are validated first; none is deleted on a bad id).

    The version record's content hash is cleared so the next preload rewrites them.
    """
    targets = [kind.key(i) for i in ids]
    return await _delete(r, targets, dry_run=dry_run)


async def invalidate_all_static(r: AnyRedis, *, dry_run: bool = False) -> InvalidateResult:
    targets: list[str] = []
    for found in (await find_static_keys(r)).values():
        targets.extend(sorted(found))
    targets.append(keys.LOCATION_INDEX_KEY)
    return await _delete(r, targets, dry_run=dry_run)


async def _delete(r: AnyRedis, targets: list[str], *, dry_run: bool) -> InvalidateResult:
    existing = await bulk(r, [("EXISTS", key) for key in targets])
    present = [key for key, found in zip(targets, existing, strict=True) if found]
    if dry_run or not present:
        return InvalidateResult(dry_run=dry_run, keys=present, deleted=0)
    if isinstance(r, RedisCluster):
        # one UNLINK per slot group (each atomic), after the content hash is cleared: a
        # run cut off midway leaves the hash cleared, so the next preload diffs every key
        await r.hdel(keys.GAMEDATA_VERSION_KEY, "content_hash")
        unlinks = [
            ("UNLINK", *group[start : start + 1000])
            for group in group_by_slot(present).values()
            for start in range(0, len(group), 1000)
        ]
        deleted = sum(int(n) for n in await bulk(r, unlinks))
        return InvalidateResult(dry_run=False, keys=present, deleted=deleted)
    commands: list[tuple[Any, ...]] = [("MULTI",)]
    for start in range(0, len(present), 1000):
        commands.append(("UNLINK", *present[start : start + 1000]))
    commands.append(("HDEL", keys.GAMEDATA_VERSION_KEY, "content_hash"))
    commands.append(("EXEC",))
    replies = await bulk(r, commands)
    executed = replies[-1] if isinstance(replies[-1], list) else []
    deleted = sum(int(x) for x in executed[:-1]) if executed else 0
    return InvalidateResult(dry_run=False, keys=present, deleted=deleted)
