"""Checks of the Redis server itself: version, eviction policy, memory, persistence."""

from __future__ import annotations

import re
from typing import Any, Final

from redis.asyncio.cluster import RedisCluster

from echoes_ops.client.nodes import each_node, primary_nodes
from echoes_ops.fmt import size
from echoes_ops.operations.doctor.base import Context, Finding, found
from echoes_ops.operations.eviction import evicts_keys_without_ttl

MIN_VERSION: Final = (6, 0)  # below: fail
RECOMMENDED_VERSION: Final = (6, 2)  # below: warn
MEMORY_WARN: Final = 0.80
MEMORY_FAIL: Final = 0.95


def parse_version(text: str) -> tuple[int, ...] | None:
    match = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    if not match:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


async def redis_version(ctx: Context) -> Finding:
    why = (
        "echoes-ops and the workers rely on ACL users (REDIS_USERNAME), SCAN ... TYPE and the "
        "CLIENT LIST fields that tell workers apart, all from Redis 6.0; 6.0 itself is "
        "end-of-life (no security fixes), and Redis 7 also applies protected mode to explicit "
        "bind addresses."
    )
    fix = "upgrade Redis to 7.x (or at least 6.2)"
    if ctx.info is None:
        return found("unknown", f"cannot read the version: {ctx.info_error}", why)
    text = str(ctx.info.get("redis_version", ""))
    version = parse_version(text)
    if version is None:
        return found("unknown", f"unrecognised version {text!r}", why)
    if version < MIN_VERSION:
        return found("fail", f"Redis {text} is older than 6.0", why, fix, version=text)
    if version < RECOMMENDED_VERSION:
        return found("warn", f"Redis {text} is end-of-life", why, fix, version=text)
    return found("ok", f"Redis {text}", why, version=text)


async def eviction_policy(ctx: Context) -> Finding:
    why = (
        "Locks, presence sets, static caches and worker connection hashes carry no TTL. Under "
        "an allkeys-* policy Redis evicts them when memory runs short: a held lock vanishes "
        "(two workers run the same task), players vanish from locations, static lookups miss. "
        "volatile-* policies evict only keys with a TTL (sessions, inventories, worker meta, "
        "locks), so eviction must stay rare: keep headroom below maxmemory."
    )
    fix = (
        "CONFIG SET maxmemory-policy volatile-lru (or noeviction with enough maxmemory), "
        "and set the same in redis.conf"
    )
    policy = str(ctx.info.get("maxmemory_policy", "")) if ctx.info else ""
    if not policy:
        policy = await ctx.config.get("maxmemory-policy") or ""
    if not policy:
        return found(
            "unknown",
            ctx.config.unknown("maxmemory-policy") if ctx.info else f"{ctx.info_error}",
            why,
        )
    if evicts_keys_without_ttl(policy):
        return found(
            "fail",
            f"maxmemory-policy {policy} can evict keys without a TTL",
            why,
            fix,
            policy=policy,
        )
    if policy == "volatile-ttl":
        return found(
            "warn",
            "maxmemory-policy volatile-ttl evicts the keys nearest expiry first: locks and "
            "worker meta keys (short TTLs) before sessions",
            why,
            "CONFIG SET maxmemory-policy volatile-lru (and in redis.conf)",
            policy=policy,
        )
    if policy.startswith("volatile-"):
        return found(
            "ok",
            f"maxmemory-policy {policy}: only keys with a TTL can be evicted",
            why,
            policy=policy,
        )
    if policy == "noeviction":
        return found(
            "ok",
            "maxmemory-policy noeviction: writes fail with OOM errors when full, nothing is "
            "dropped silently",
            why,
            policy=policy,
        )
    return found(
        "warn",
        f"unrecognised maxmemory-policy {policy!r}",
        why,
        fix,
        policy=policy,
    )


async def memory_headroom(ctx: Context) -> Finding:
    why = (
        "When used memory reaches maxmemory Redis evicts (per policy) or refuses writes: "
        "sessions and presence updates fail mid-game and preload refuses to load. Without "
        "maxmemory Redis grows until the host runs out of memory and the kernel's OOM killer "
        "stops it, and the eviction policy never applies."
    )
    if ctx.info is None:
        return found("unknown", f"cannot read memory: {ctx.info_error}", why)
    used = int(ctx.info.get("used_memory", 0) or 0)
    limit = int(ctx.info.get("maxmemory", 0) or 0)
    system = int(ctx.info.get("total_system_memory", 0) or 0)
    details: dict[str, Any] = {"used_bytes": used, "max_bytes": limit, "system_bytes": system}
    if isinstance(ctx.r, RedisCluster):
        return await _cluster_headroom(ctx.r, why, details)
    if limit == 0:
        host = f" (host memory {size(system)})" if system else ""
        return found(
            "warn",
            f"no maxmemory limit; {size(used)} used{host}",
            why,
            "set maxmemory (e.g. 75% of what the host can give Redis): CONFIG SET maxmemory "
            "<bytes>, and in redis.conf",
            **details,
        )
    share = used / limit
    details["used_of_max"] = round(share, 4)
    summary = f"{size(used)} of {size(limit)} used ({share:.0%})"
    fix = (
        "raise maxmemory (CONFIG SET maxmemory <bytes>) or free memory: look at `echoes-ops "
        "stats` for the biggest key families"
    )
    if share > MEMORY_FAIL:
        return found("fail", summary, why, fix, **details)
    if share > MEMORY_WARN:
        return found("warn", summary, why, fix, **details)
    return found("ok", summary, why, **details)


async def _cluster_headroom(r: RedisCluster, why: str, details: dict[str, Any]) -> Finding:
    """Memory per primary: each fills up on its own (its slots' keys), so the fullest one
    decides, and a primary without maxmemory is named even when the others have one."""
    nodes = await primary_nodes(r)
    infos = await each_node([n.client for n in nodes], lambda c: c.info("memory"))
    per_node = {
        node.name: (int(info.get("used_memory", 0) or 0), int(info.get("maxmemory", 0) or 0))
        for node, info in zip(nodes, infos, strict=True)
    }
    details["primaries"] = {
        name: {"used_bytes": used, "max_bytes": limit} for name, (used, limit) in per_node.items()
    }
    unlimited = sorted(name for name, (_, limit) in per_node.items() if limit == 0)
    set_fix = (
        "set maxmemory on every primary (e.g. 75% of what its host can give Redis): CONFIG SET "
        "maxmemory <bytes> on each node, and in each redis.conf"
    )
    if len(unlimited) == len(per_node):
        host = f" (host memory {size(details['system_bytes'])})" if details["system_bytes"] else ""
        return found(
            "warn",
            f"no maxmemory limit on any of the {len(per_node)} primaries; "
            f"{size(details['used_bytes'])} used in all{host}",
            why,
            set_fix,
            **details,
        )
    name, (used, limit) = max(
        ((n, v) for n, v in per_node.items() if v[1] > 0), key=lambda item: item[1][0] / item[1][1]
    )
    share = used / limit
    details["used_of_max"] = round(share, 4)
    summary = f"fullest primary {name}: {size(used)} of {size(limit)} used ({share:.0%})"
    fix = (
        f"raise maxmemory on {name} (CONFIG SET maxmemory <bytes>), move slots off it, or free "
        "memory: look at `echoes-ops stats` for the biggest key families"
    )
    if share > MEMORY_FAIL:
        return found("fail", summary, why, fix, **details)
    if unlimited:
        return found(
            "warn", f"{summary}; no maxmemory on {', '.join(unlimited)}", why, set_fix, **details
        )
    if share > MEMORY_WARN:
        return found("warn", summary, why, fix, **details)
    return found("ok", summary, why, **details)


async def persistence(ctx: Context) -> Finding:
    why = (
        "Sessions, presence and the static caches live only in Redis. After a restart without "
        "persistence every player is logged out, locations are empty and static lookups miss "
        "until `echoes-ops preload` runs. PostgreSQL stays the source of truth, so no "
        "persistence is a warning, not a failure; failing persistence is a failure (with "
        "stop-writes-on-bgsave-error, Redis refuses writes)."
    )
    if ctx.info is None:
        return found("unknown", f"cannot read persistence: {ctx.info_error}", why)
    aof = str(ctx.info.get("aof_enabled", "0")) == "1"
    aof_status = str(ctx.info.get("aof_last_write_status", "ok"))
    rdb_status = str(ctx.info.get("rdb_last_bgsave_status", "ok"))
    save = await ctx.config.get("save")
    details = {"appendonly": aof, "save": save, "aof_last_write_status": aof_status}
    details["rdb_last_bgsave_status"] = rdb_status
    if aof_status == "err" or rdb_status == "err":
        return found(
            "fail",
            f"persistence is failing (AOF last write {aof_status}, last RDB save {rdb_status})",
            why,
            "read the Redis log for the cause (disk full, permissions); fix it, then "
            "BGSAVE / BGREWRITEAOF",
            **details,
        )
    rdb = bool(save and save.strip())
    if aof or rdb:
        parts = (["AOF on"] if aof else []) + ([f"RDB snapshots (save {save})"] if rdb else [])
        return found("ok", ", ".join(parts), why, **details)
    if save is None:
        return found(
            "unknown",
            f"AOF off; {ctx.config.unknown('the RDB save schedule')}",
            why,
            "check `save` in redis.conf",
            **details,
        )
    return found(
        "warn",
        "neither AOF nor RDB snapshots: a restart loses everything",
        why,
        "CONFIG SET appendonly yes (and in redis.conf), or a save schedule such as "
        "`save 3600 1 300 100 60 10000`",
        **details,
    )
