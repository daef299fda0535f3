"""Key families and one bounded walk over the whole keyspace, shared by stats and doctor.

Every key falls in exactly one family, decided by the contract's parsers (a key that merely
looks like a game key but that no builder would produce is ``other``). The walk is one SCAN
pass without MATCH (each step sized by the server-time budget, at most 1000 keys:
``client/scan.scan_budget``; keys read as raw bytes so other applications' keys cannot
break it); on a cluster every primary in parallel, the slots that moved during the walk
read again so that the counts stay exact while a slot migrates (``client/walk.py``); per family it counts keys, keeps uniform random samples (reservoirs) for
the caller's per-key reads, and, for the families asked, reads every key's TTL in pipelined
batches of at most one SCAN step.

Reads that look keys up (TTL) are counted by Redis as keyspace hits or misses; the walk
reports how many it caused, so a caller can keep its own reads out of hit-rate figures.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Final

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from echoes_ops.client.bulk import stepped_reads
from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.rawscan import scan_raw
from echoes_ops.client.slots import slot_of
from echoes_ops.client.walk import PrimaryWalk, keys_in_slots, walk_primaries
from echoes_ops.contract import keys

FAMILIES: Final[tuple[str, ...]] = (
    "sessions",
    "inventories",
    "presence",
    "location_cache",
    "item_defs",
    "npc_defs",
    "worker_keys",
    "locks",
    "echoes",
    "other",
)

FAMILY_DESCRIPTIONS: Final[dict[str, str]] = {
    "sessions": "player:<id>:session hashes",
    "inventories": "player:<id>:inventory lists",
    "presence": "location:<loc>:players sets",
    "location_cache": "location:<loc>:cache hashes (static)",
    "item_defs": "item:<id>:def hashes (static)",
    "npc_defs": "npc:<id>:def hashes (static)",
    "worker_keys": "worker:<wid>:meta and worker:<wid>:connections",
    "locks": "lock:<name> strings",
    "echoes": "keys of echoes-ops (echoes:*)",
    "other": "everything else",
}

SCAN_COUNT: Final = 1000
EXAMPLES: Final = 5


# (pattern, parser, family) in the order a key is tried; a parser only accepts keys that
# start with its pattern's first segment, so a key is tried against those of its own only
_PARSERS: Final[tuple[tuple[str, Callable[[str], object], str], ...]] = (
    (keys.SESSION_PATTERN, keys.parse_session_key, "sessions"),
    (keys.INVENTORY_PATTERN, keys.parse_inventory_key, "inventories"),
    (keys.PRESENCE_PATTERN, keys.parse_presence_key, "presence"),
    (keys.LOCATION_CACHE_PATTERN, keys.parse_location_cache_key, "location_cache"),
    (keys.ITEM_DEF_PATTERN, keys.parse_item_def_key, "item_defs"),
    (keys.NPC_DEF_PATTERN, keys.parse_npc_def_key, "npc_defs"),
    (keys.WORKER_META_PATTERN, keys.parse_worker_meta_key, "worker_keys"),
    (keys.WORKER_CONNECTIONS_PATTERN, keys.parse_worker_connections_key, "worker_keys"),
    (keys.LOCK_PATTERN, keys.parse_lock_key, "locks"),
)
_BY_HEAD: Final[dict[str, tuple[tuple[Callable[[str], object], str], ...]]] = {
    head: tuple((parse, family) for pattern, parse, family in _PARSERS if pattern.startswith(head))
    for head in {pattern.partition(":")[0] + ":" for pattern, _, _ in _PARSERS}
}


def family_of(key: bytes | str) -> str:
    """The family of ``key`` (``other`` for keys that are not UTF-8). Only the parsers of the
    key's first segment are tried: a walk classifies every key of the keyspace (``stats``,
    ``doctor``), and trying all of them was most of those commands' CPU."""
    if isinstance(key, bytes):
        try:
            text = key.decode("utf-8")
        except UnicodeDecodeError:
            return "other"
    else:
        text = key
    head, colon, _ = text.partition(":")
    for parse, family in _BY_HEAD.get(head + colon, ()):
        if parse(text) is not None:
            return family
    if text.startswith(keys.NAMESPACE_PREFIX):
        return "echoes"
    return "other"


def _text(key: bytes) -> str:
    return key.decode("utf-8", "backslashreplace")


@dataclass
class FamilyWalk:
    """What the walk saw of one family."""

    keys: int = 0
    memory_sample: list[bytes] = field(default_factory=list)
    ttl_sample: list[bytes] = field(default_factory=list)
    # only for the families whose every TTL was read:
    ttl_read: int = 0
    no_ttl: int = 0
    no_ttl_examples: list[str] = field(default_factory=list)


@dataclass
class KeyspaceWalk:
    families: dict[str, FamilyWalk]
    worker_ids: set[str]
    scanned: int = 0
    commands: int = 0  # commands sent (SCAN steps, TTL reads)
    hits: int = 0  # keyspace hits our TTL reads caused
    misses: int = 0
    ttl_errors: int = 0  # TTL reads refused (e.g. by ACL)
    ttl_error: str | None = None
    # on a cluster, per (slot, family): [keys, TTLs read, keys without a TTL], so the counts
    # of slots that moved during the walk can be replaced by a re-read (client/walk.py)
    by_slot: dict[tuple[int, str], list[int]] | None = field(default=None, repr=False)


def _offer(sample: list[bytes], seen: int, key: bytes, size: int, rng: random.Random) -> None:
    """Reservoir sampling: after ``seen`` offers, ``sample`` is uniform over them."""
    if size <= 0:
        return
    if len(sample) < size:
        sample.append(key)
        return
    slot = rng.randrange(seen)
    if slot < size:
        sample[slot] = key


async def walk_keyspace(
    r: AnyRedis,
    *,
    memory_sample: int = 0,
    ttl_sample: int = 0,
    ttl_sample_families: Collection[str] = (),
    ttl_all_families: Collection[str] = (),
    rng: random.Random | None = None,
) -> KeyspaceWalk:
    """One SCAN pass: key counts per family, random samples of up to ``memory_sample`` keys
    per family and ``ttl_sample`` keys of ``ttl_sample_families``, and every key's TTL for
    ``ttl_all_families`` (counting keys without one). On a cluster every primary is walked in
    parallel and the walks merged (counts added, samples drawn from the nodes' samples);
    the counts of the slots that moved meanwhile are replaced by a re-read of them."""
    rng = rng or random.Random()
    per_slot = isinstance(r, RedisCluster)
    primaries: PrimaryWalk[KeyspaceWalk] = await walk_primaries(
        r,
        lambda node: _walk_node(
            r,
            node,
            memory_sample=memory_sample,
            ttl_sample=ttl_sample,
            ttl_sample_families=ttl_sample_families,
            ttl_all_families=ttl_all_families,
            rng=rng,
            per_slot=per_slot,
        ),
    )
    walks = primaries.results
    merged = walks[0] if len(walks) == 1 else _merge_walks(walks, memory_sample, ttl_sample, rng)
    if primaries.unstable:
        await _reread_moved(r, primaries, merged, ttl_all_families)
    return merged


async def _reread_moved(
    r: AnyRedis,
    primaries: PrimaryWalk[KeyspaceWalk],
    merged: KeyspaceWalk,
    ttl_all_families: Collection[str],
) -> None:
    """Replace what the walk counted in the slots that moved during it by a re-read of
    those slots (key counts and TTL counts exact; the random samples stay as drawn)."""
    for walk in primaries.results:
        for (slot, name), (count, read, no_ttl) in (walk.by_slot or {}).items():
            if slot in primaries.unstable:
                fam = merged.families[name]
                fam.keys -= count
                merged.scanned -= count  # every key is in one family: re-counted below
                fam.ttl_read -= read
                fam.no_ttl -= no_ttl
    moved = await keys_in_slots(r, primaries)
    merged.scanned += len(moved)
    ttl_keys: list[tuple[str, bytes]] = []
    for text in moved:
        name = family_of(text)
        merged.families[name].keys += 1
        if name == "worker_keys":
            wid = keys.parse_worker_meta_key(text) or keys.parse_worker_connections_key(text)
            if wid:
                merged.worker_ids.add(wid)
        if name in ttl_all_families:
            ttl_keys.append((name, text.encode()))
    if ttl_keys:
        await _read_ttls(r, merged, ttl_keys)


def _merge_walks(
    walks: list[KeyspaceWalk], memory_sample: int, ttl_sample: int, rng: random.Random
) -> KeyspaceWalk:
    merged = KeyspaceWalk(families={name: FamilyWalk() for name in FAMILIES}, worker_ids=set())
    for walk in walks:
        merged.worker_ids |= walk.worker_ids
        merged.scanned += walk.scanned
        merged.commands += walk.commands
        merged.hits += walk.hits
        merged.misses += walk.misses
        merged.ttl_errors += walk.ttl_errors
        merged.ttl_error = merged.ttl_error or walk.ttl_error
        for name, fam in walk.families.items():
            into = merged.families[name]
            into.keys += fam.keys
            into.ttl_read += fam.ttl_read
            into.no_ttl += fam.no_ttl
            into.no_ttl_examples.extend(fam.no_ttl_examples)
    for name, into in merged.families.items():
        parts = [w.families[name] for w in walks]
        into.memory_sample = _draw([(p.memory_sample, p.keys) for p in parts], memory_sample, rng)
        into.ttl_sample = _draw([(p.ttl_sample, p.keys) for p in parts], ttl_sample, rng)
        into.no_ttl_examples = into.no_ttl_examples[:EXAMPLES]
    return merged


def _draw(samples: list[tuple[list[bytes], int]], size: int, rng: random.Random) -> list[bytes]:
    """``size`` keys from the nodes' uniform samples, each node in proportion to its keys."""
    total = sum(keys_seen for _, keys_seen in samples)
    if size <= 0 or total == 0:
        return []
    out: list[bytes] = []
    for sample, keys_seen in samples:
        share = min(len(sample), round(size * keys_seen / total))
        out.extend(rng.sample(sample, share) if share < len(sample) else sample)
    return out[:size]


async def _walk_node(
    r: AnyRedis,
    node: Redis,
    *,
    memory_sample: int,
    ttl_sample: int,
    ttl_sample_families: Collection[str],
    ttl_all_families: Collection[str],
    rng: random.Random,
    per_slot: bool = False,
) -> KeyspaceWalk:
    """:func:`walk_keyspace` on one node (TTL reads through ``r``, which routes them)."""
    walk = KeyspaceWalk(families={name: FamilyWalk() for name in FAMILIES}, worker_ids=set())
    if per_slot:
        walk.by_slot = {}
    calls: list[int] = []
    async for batch in scan_raw(node, count=SCAN_COUNT, calls=calls):
        walk.scanned += len(batch)
        ttl_keys: list[tuple[str, bytes]] = []
        for key in batch:
            name = family_of(key)
            fam = walk.families[name]
            fam.keys += 1
            if walk.by_slot is not None:
                walk.by_slot.setdefault((slot_of(key), name), [0, 0, 0])[0] += 1
            _offer(fam.memory_sample, fam.keys, key, memory_sample, rng)
            if name in ttl_sample_families:
                _offer(fam.ttl_sample, fam.keys, key, ttl_sample, rng)
            if name in ttl_all_families:
                ttl_keys.append((name, key))
            if name == "worker_keys":
                text = _text(key)
                wid = keys.parse_worker_meta_key(text) or keys.parse_worker_connections_key(text)
                if wid:
                    walk.worker_ids.add(wid)
        if ttl_keys:
            await _read_ttls(r, walk, ttl_keys)
    walk.commands += len(calls)
    return walk


async def _read_ttls(r: AnyRedis, walk: KeyspaceWalk, ttl_keys: list[tuple[str, bytes]]) -> None:
    """Every TTL of ``ttl_keys`` ((family, key)), pipelined, counted into ``walk``."""
    # a refused TTL read is counted (ttl_errors): the caller says "unknown"
    commands = [("TTL", key) for _, key in ttl_keys]
    replies, sent = await stepped_reads(r, commands, allow_denied=True)
    walk.commands += sent
    for (name, key), ttl in zip(ttl_keys, replies, strict=True):
        if isinstance(ttl, ResponseError):
            walk.ttl_errors += 1
            walk.ttl_error = str(ttl).splitlines()[0] if str(ttl) else "error"
        if not isinstance(ttl, int):
            continue
        if ttl == -2:
            walk.misses += 1
            continue
        walk.hits += 1
        fam = walk.families[name]
        fam.ttl_read += 1
        counts = walk.by_slot.get((slot_of(key), name)) if walk.by_slot is not None else None
        if counts is not None:
            counts[1] += 1
        if ttl == -1:
            fam.no_ttl += 1
            if counts is not None:
                counts[2] += 1
            if len(fam.no_ttl_examples) < EXAMPLES:
                fam.no_ttl_examples.append(_text(key))
