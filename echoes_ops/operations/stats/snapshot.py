"""Taking a stats snapshot: INFO and TIME, the key walk with its MEMORY USAGE and TTL
samples, and the interval between two snapshots."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import Any, Final

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from echoes_ops.client.bulk import stepped_reads
from echoes_ops.client.connect import AnyRedis
from echoes_ops.operations.cluster_health import cluster_health
from echoes_ops.operations.clusterinfo import server_time, tier_info
from echoes_ops.operations.keyspace import FAMILIES, walk_keyspace
from echoes_ops.operations.static_data import read_version
from echoes_ops.operations.stats.connections import client_stats, pubsub_stats
from echoes_ops.operations.stats.model import (
    Counters,
    FamilyStats,
    IntervalStats,
    MemoryStats,
    OwnLoad,
    StatsSnapshot,
    TtlStats,
    info_float,
    info_int,
    ttl_bucket,
    ttl_bucket_labels,
)

MEMORY_SAMPLE: Final = 64  # keys per family measured with MEMORY USAGE
MEMORY_USAGE_SAMPLES: Final = 5  # nested elements MEMORY USAGE samples (Redis' default)
TTL_SAMPLE: Final = 1000  # sessions / inventories whose TTL is read per snapshot
TTL_FAMILIES: Final = ("sessions", "inventories")


def _db_keys(info: dict[str, Any], db: int) -> int:
    entry = info.get(f"db{db}")
    return info_int(entry, "keys") if isinstance(entry, dict) else 0


async def snapshot(
    r: AnyRedis,
    *,
    keyspace: bool = True,
    previous: StatsSnapshot | None = None,
    rng: random.Random | None = None,
) -> StatsSnapshot:
    """One snapshot; with ``previous`` (of the same server) its ``interval`` is filled in.
    ``keyspace=False`` skips the key walk (families, TTL buckets)."""
    started = time.perf_counter()
    own = OwnLoad()
    info = await tier_info(r)  # every primary's, merged, on a cluster
    taken_at = await server_time(r)
    own.commands += 2

    counters = Counters(
        keyspace_hits=info_int(info, "keyspace_hits"),
        keyspace_misses=info_int(info, "keyspace_misses"),
        evicted_keys=info_int(info, "evicted_keys"),
        expired_keys=info_int(info, "expired_keys"),
        commands_processed=info_int(info, "total_commands_processed"),
    )
    memory = MemoryStats(
        used_bytes=info_int(info, "used_memory"),
        peak_bytes=info_int(info, "used_memory_peak"),
        max_bytes=info_int(info, "maxmemory"),
        rss_bytes=info_int(info, "used_memory_rss"),
        dataset_bytes=info_int(info, "used_memory_dataset"),
        fragmentation_ratio=info_float(info, "mem_fragmentation_ratio"),
        policy=str(info.get("maxmemory_policy", "?")),
    )

    families: dict[str, FamilyStats] | None = None
    ttl: dict[str, TtlStats] | None = None
    if keyspace:
        walk = await walk_keyspace(
            r,
            memory_sample=MEMORY_SAMPLE,
            ttl_sample=TTL_SAMPLE,
            ttl_sample_families=TTL_FAMILIES,
            rng=rng,
        )
        own.commands += walk.commands
        worker_ids: set[str] | None = walk.worker_ids
        families = await _family_memory(r, walk.families, own)
        ttl = await _ttl_buckets(r, walk.families, own)
    else:
        worker_ids = None  # found from the client names instead of a key walk

    clients = await client_stats(r, info, worker_ids, own)
    pubsub = await pubsub_stats(r, info, own)
    gamedata = await read_version(r)
    own.commands += 1
    if gamedata:
        own.keyspace_hits += 1
    else:
        own.keyspace_misses += 1

    result = StatsSnapshot(
        taken_at=taken_at,
        run_id=str(info.get("run_id", "")),
        version=str(info.get("redis_version", "?")),
        role=str(info.get("role", "?")),
        uptime_s=info_int(info, "uptime_in_seconds"),
        db_keys=_db_keys(info, _db_of(r)),
        counters=counters,
        instantaneous_ops_per_sec=info_int(info, "instantaneous_ops_per_sec"),
        memory=memory,
        clients=clients,
        pubsub=pubsub,
        families=families,
        ttl=ttl,
        gamedata=gamedata,
        elapsed_s=time.perf_counter() - started,
        own=own,
        cluster=await cluster_health(r),
    )
    if previous is not None:
        result.interval = interval_between(previous, result)
    return result


def interval_between(previous: StatsSnapshot, current: StatsSnapshot) -> IntervalStats | None:
    """Counter deltas from ``previous`` to ``current`` without ``previous``'s own reads
    (everything it sent came after its INFO, so it falls in this interval). None when the
    server restarted or its statistics were reset in between."""
    if previous.run_id != current.run_id or current.uptime_s < previous.uptime_s:
        return None
    a, b = previous.counters, current.counters
    deltas = (
        b.keyspace_hits - a.keyspace_hits - previous.own.keyspace_hits,
        b.keyspace_misses - a.keyspace_misses - previous.own.keyspace_misses,
        b.evicted_keys - a.evicted_keys,
        b.expired_keys - a.expired_keys,
        b.commands_processed - a.commands_processed - previous.own.commands,
    )
    if any(d < -10 for d in deltas[2:4]) or b.commands_processed < a.commands_processed:
        return None  # CONFIG RESETSTAT in between
    hits, misses, evicted, expired, commands = (max(0, d) for d in deltas)
    return IntervalStats(
        seconds=max(0.0, current.taken_at - previous.taken_at),
        keyspace_hits=hits,
        keyspace_misses=misses,
        evicted_keys=evicted,
        expired_keys=expired,
        commands=commands,
    )


async def _family_memory(
    r: AnyRedis, walked: dict[str, Any], own: OwnLoad
) -> dict[str, FamilyStats]:
    commands: list[tuple[Any, ...]] = []
    owners: list[str] = []
    for name in FAMILIES:
        for key in walked[name].memory_sample:
            commands.append(("MEMORY", "USAGE", key, "SAMPLES", MEMORY_USAGE_SAMPLES))
            owners.append(name)
    # a user limited to the tier's keys may not measure other applications' keys ("other"):
    # that family's estimate is unknown, the others' stand
    replies, sent = await stepped_reads(r, commands, allow_denied=True)
    own.commands += sent
    measured: dict[str, list[int]] = {name: [] for name in FAMILIES}
    denied: set[str] = set()
    for name, reply in zip(owners, replies, strict=True):
        if isinstance(reply, int):
            measured[name].append(reply)
        elif isinstance(reply, ResponseError):
            denied.add(name)
    out = {}
    for name in FAMILIES:
        count = walked[name].keys
        values = measured[name]
        estimate: int | None
        if count == 0:
            estimate = 0
        elif values and name not in denied:
            estimate = round(sum(values) / len(values) * count)
        else:
            estimate = None
        out[name] = FamilyStats(
            keys=count, sampled=len(values), sampled_bytes=sum(values), estimated_bytes=estimate
        )
    return out


async def _ttl_buckets(r: AnyRedis, walked: dict[str, Any], own: OwnLoad) -> dict[str, TtlStats]:
    commands: list[tuple[Any, ...]] = []
    owners: list[str] = []
    for name in TTL_FAMILIES:
        for key in walked[name].ttl_sample:
            commands.append(("TTL", key))
            owners.append(name)
    replies, sent = await stepped_reads(r, commands)
    own.commands += sent
    seen: dict[str, dict[str, int]] = {name: {} for name in TTL_FAMILIES}
    for name, reply in zip(owners, replies, strict=True):
        if not isinstance(reply, int):
            continue
        if reply == -2:  # expired since the SCAN
            own.keyspace_misses += 1
            continue
        own.keyspace_hits += 1
        label = ttl_bucket(reply)
        seen[name][label] = seen[name].get(label, 0) + 1
    out = {}
    for name in TTL_FAMILIES:
        count = walked[name].keys
        sampled = sum(seen[name].values())
        exact = sampled >= count
        buckets = {}
        for label in ttl_bucket_labels():
            n = seen[name].get(label, 0)
            buckets[label] = n if exact or not sampled else round(n / sampled * count)
        out[name] = TtlStats(keys=count, sampled=sampled, buckets=buckets)
    return out


async def watch(
    r: AnyRedis,
    every: float,
    *,
    count: int | None = None,
    keyspace: bool = True,
    rng: random.Random | None = None,
) -> AsyncIterator[StatsSnapshot]:
    """Snapshots every ``every`` seconds (the wait starts when the previous snapshot has
    been consumed), each with the interval since the one before; ``count`` bounds them."""
    previous: StatsSnapshot | None = None
    taken = 0
    while count is None or taken < count:
        if previous is not None:
            await asyncio.sleep(every)
        current = await snapshot(r, keyspace=keyspace, previous=previous, rng=rng)
        taken += 1
        yield current
        previous = current


def _db_of(r: AnyRedis) -> int:
    """The database a client uses (always 0 on a cluster)."""
    if isinstance(r, RedisCluster):
        return 0
    return int(r.connection_pool.connection_kwargs.get("db", 0) or 0)
