"""What a live view polls: the server's counters, rates between two readings, the tier's
counts in one bounded census, and whether this ACL user may write. (REDIS_ENABLED comes
from :func:`echoes_ops.operations.flags.flag_status`, its source of truth first.)

Every command is O(1) or bounded: INFO, TIME and HMGET; the census walks the keyspace in
Lua steps of ``CENSUS_STEP`` keys (each well under 2 ms at 100,000 sessions), never KEYS.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any, Final

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoPermissionError, ResponseError

from echoes_ops.client.budget import TARGET_S
from echoes_ops.client.bulk import bulk
from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.nodes import primary_clients
from echoes_ops.contract import keys
from echoes_ops.operations.clusterinfo import tier_info
from echoes_ops.operations.tiercount import COUNT_STEP, count_tier
from echoes_ops.operations.tiermap import client_names

CENSUS_STEP: Final = COUNT_STEP  # keys per Lua SCAN step of the tier count (under 1 ms each)
STALE_AFTER: Final = 120.0  # a session whose heartbeat is older is counted stale
PUBLISH_COMMANDS: Final = ("cmdstat_publish", "cmdstat_spublish")


def _int(info: dict[str, Any], name: str) -> int:
    try:
        return int(info.get(name, 0))
    except (TypeError, ValueError):
        return 0


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class ServerCounters:
    """One reading of INFO (default sections and commandstats) and the server's TIME."""

    at: float  # server clock, epoch seconds
    run_id: str
    version: str
    mode: str
    role: str
    uptime_s: int
    used_memory: int
    maxmemory: int
    maxmemory_policy: str
    connected_clients: int
    keys: int  # every database's keys (INFO keyspace)
    keyspace_hits: int
    keyspace_misses: int
    evicted_keys: int
    expired_keys: int
    commands: int  # total_commands_processed
    publishes: int  # PUBLISH and SPUBLISH calls since start (commandstats)
    pubsub_channels: int
    pubsub_patterns: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def read_counters(r: AnyRedis) -> ServerCounters:
    """INFO, INFO commandstats and TIME in one round trip; on a cluster (where INFO cannot be
    pipelined) every primary's INFO merged (:func:`tier_info`), TIME from one primary."""
    if isinstance(r, RedisCluster):
        info, commandstats, (seconds, micros) = await asyncio.gather(
            tier_info(r), tier_info(r, "commandstats"), (await primary_clients(r))[0].time()
        )
    else:
        pipe = r.pipeline(transaction=False)
        pipe.info()
        pipe.info("commandstats")
        pipe.time()
        info, commandstats, (seconds, micros) = await pipe.execute()
    publishes = sum(
        _int(commandstats.get(name, {}), "calls")
        for name in PUBLISH_COMMANDS
        if isinstance(commandstats.get(name), dict)
    )
    return ServerCounters(
        at=seconds + micros / 1e6,
        run_id=str(info.get("run_id", "")),
        version=str(info.get("redis_version", "?")),
        mode=str(info.get("redis_mode", "standalone")),
        role=str(info.get("role", "?")),
        uptime_s=_int(info, "uptime_in_seconds"),
        used_memory=_int(info, "used_memory"),
        maxmemory=_int(info, "maxmemory"),
        maxmemory_policy=str(info.get("maxmemory_policy", "?")),
        connected_clients=_int(info, "connected_clients"),
        keys=sum(
            _int(v, "keys") for k, v in info.items() if k.startswith("db") and isinstance(v, dict)
        ),
        keyspace_hits=_int(info, "keyspace_hits"),
        keyspace_misses=_int(info, "keyspace_misses"),
        evicted_keys=_int(info, "evicted_keys"),
        expired_keys=_int(info, "expired_keys"),
        commands=_int(info, "total_commands_processed"),
        publishes=publishes,
        pubsub_channels=_int(info, "pubsub_channels"),
        pubsub_patterns=_int(info, "pubsub_patterns"),
    )


@dataclass(frozen=True)
class Rates:
    """What happened between two readings of the same server (every client included)."""

    seconds: float
    ops_per_sec: float
    publish_per_sec: float
    hit_rate: float | None  # None when nothing was looked up
    evicted: int
    expired: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def rates_between(previous: ServerCounters, current: ServerCounters) -> Rates | None:
    """None when the server restarted or its statistics were reset in between."""
    seconds = current.at - previous.at
    if previous.run_id != current.run_id or seconds <= 0:
        return None
    if current.commands < previous.commands or current.uptime_s < previous.uptime_s:
        return None
    hits = max(0, current.keyspace_hits - previous.keyspace_hits)
    misses = max(0, current.keyspace_misses - previous.keyspace_misses)
    return Rates(
        seconds=seconds,
        ops_per_sec=(current.commands - previous.commands) / seconds,
        publish_per_sec=max(0, current.publishes - previous.publishes) / seconds,
        hit_rate=hits / (hits + misses) if hits + misses else None,
        evicted=max(0, current.evicted_keys - previous.evicted_keys),
        expired=max(0, current.expired_keys - previous.expired_keys),
    )


@dataclass(frozen=True)
class TierSummary:
    """The tier's counts from one census pass."""

    sessions: int
    stale_sessions: int  # heartbeat known and older than ``stale_after``
    unknown_heartbeat: int
    players_in_locations: int
    locations_with_players: int
    locks: int
    scanned: int
    stale_after: float
    elapsed_s: float
    worker_ids: tuple[str, ...] = ()  # workers with a meta or connections key
    lock_names: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def tier_summary(
    r: AnyRedis,
    *,
    stale_after: float = STALE_AFTER,
    step: int = CENSUS_STEP,
    target: float = TARGET_S,
) -> TierSummary:
    """The tier's counts, counted on the server (:mod:`echoes_ops.operations.tiercount`):
    the client receives ids and a few rows per step, never the sessions."""
    started = time.perf_counter()
    tier = await count_tier(r, stale_after=stale_after, step=step, target=target)
    members = list(tier.presence.values())
    return TierSummary(
        sessions=len(tier.sessions),
        stale_sessions=len(tier.stale),
        unknown_heartbeat=len(tier.unknown),
        players_in_locations=sum(members),
        locations_with_players=sum(1 for n in members if n > 0),
        locks=len(tier.lock_keys),
        scanned=tier.scanned,
        stale_after=stale_after,
        elapsed_s=time.perf_counter() - started,
        worker_ids=tuple(sorted(tier.worker_metas | tier.worker_connections)),
        lock_names=tuple(sorted(n for n in map(keys.parse_lock_key, tier.lock_keys) if n)),
    )


async def live_worker_ids(r: AnyRedis) -> set[str]:
    """Connected clients named after a worker that has a meta key (workers name their
    connection after their id): found without scanning the keyspace."""
    names = await client_names(r)
    candidates = []
    for name in sorted(names or ()):
        try:
            candidates.append((name, keys.worker_meta_key(name)))
        except ValueError:
            continue  # a client name no worker key can be built from
    found = await bulk(r, [("EXISTS", key) for _, key in candidates], raise_on_error=False)
    return {name for (name, _), exists in zip(candidates, found, strict=True) if exists == 1}


@dataclass(frozen=True)
class WriteAccess:
    """Whether this connection may make the writes an operator's actions need."""

    writable: bool
    user: str | None  # ACL user, None when ACL WHOAMI is not allowed
    reason: str  # why not (or how it was decided)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _probes() -> list[tuple[str, ...]]:
    """The writes the operator actions make, as ACL DRYRUN arguments."""
    return [
        ("SET", keys.lock_key("dashboard-probe"), "x", "NX", "PX", "1"),
        ("DEL", keys.session_key(1)),
        ("EVALSHA", "0" * 40, "1", keys.session_key(1)),
        ("PUBLISH", keys.BROADCAST_CHANNEL, "x"),
        ("XADD", keys.AUDIT_STREAM_KEY, "*", "probe", "x"),
    ]


async def write_access(r: AnyRedis) -> WriteAccess:
    """A replica is read-only; otherwise ``ACL DRYRUN`` tells, for the current user, whether
    each write the actions need is allowed. When ACL WHOAMI or DRYRUN is not allowed, a
    no-op DEL of a random lock key tells whether the user may write at all. Nothing is
    written either way."""
    info = await r.info("replication")
    if str(info.get("role", "master")) != "master":
        return WriteAccess(False, None, "connected to a read-only replica")
    try:
        whoami = await r.acl_whoami()
        user: str | None = whoami.decode() if isinstance(whoami, bytes) else str(whoami)
    except NoPermissionError:
        user = None
    if user is None:
        return await _delete_probe(r, None)
    for probe in _probes():
        try:
            reply = await r.acl_dryrun(user, *probe)
        except (NoPermissionError, ResponseError):  # not allowed, or a server without it
            return await _delete_probe(r, user)
        text = reply.decode() if isinstance(reply, bytes) else str(reply)
        if text != "OK":
            return WriteAccess(False, user, f"ACL user {user!r} may not {probe[0]}: {text}")
    return WriteAccess(True, user, f"ACL user {user!r} may make every write")


async def _delete_probe(r: AnyRedis, user: str | None) -> WriteAccess:
    """Without ACL DRYRUN: DEL of a lock key that cannot exist (random name) changes
    nothing, and is refused when the user may not write."""
    who = f"ACL user {user!r}" if user else "this user"
    try:
        await r.delete(keys.lock_key(f"dashboard-probe-{secrets.token_hex(8)}"))
    except NoPermissionError as exc:
        return WriteAccess(False, user, f"{who} may not write: {exc}")
    return WriteAccess(True, user, f"{who} may write (DEL probe; ACL DRYRUN not available)")
