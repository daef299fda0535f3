"""Doctor: check the tier against what the design needs, each check with a verdict, why
it matters and how to fix it.

Verdicts, from best to worst: ``ok``, ``unknown`` (the check could not run: a command is
disabled, renamed or denied by ACL, a source is not configured; ``why`` says which),
``warn`` and ``fail``. A check never crashes the run: a Redis error reply (NOPERM, unknown
command) turns that check into ``unknown``. Only losing the connection ends the run.

Reads are bounded like every other view: one SCAN pass (COUNT 1000) with pipelined TTL
reads for sessions, inventories and locks, a pipelined sample of sessions for clock skew,
CONFIG GET of single parameters, INFO, TIME, CLIENT LIST and the worker views. The TTL reads
count as keyspace hits in Redis' statistics.
"""

from __future__ import annotations

import ipaddress
import random
import re
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import NoPermissionError, ResponseError

from echoes_ops.client.bulk import bulk
from echoes_ops.client.postgres import open_postgres
from echoes_ops.contract import codec, keys
from echoes_ops.errors import PostgresError
from echoes_ops.gamedata.models import GameData
from echoes_ops.operations.cache import cache_status
from echoes_ops.operations.keyspace import KeyspaceWalk, walk_keyspace
from echoes_ops.operations.migrations import SCHEMA
from echoes_ops.operations.reconcile import LOCK_REPAIR_TTL
from echoes_ops.operations.tiermap import WorkerLiveness, worker_liveness
from echoes_ops.operations.workers import list_workers

VERDICTS: Final = ("ok", "unknown", "warn", "fail")
RANK: Final = {name: index for index, name in enumerate(VERDICTS)}

CHECKS: Final = (
    "redis_version",
    "eviction_policy",
    "memory_headroom",
    "persistence",
    "static_data",
    "keys_without_ttl",
    "dead_workers",
    "pubsub_output_buffer",
    "network_exposure",
    "clock_skew",
    "redis_enabled",
)

MIN_VERSION: Final = (6, 0)  # below: fail
RECOMMENDED_VERSION: Final = (6, 2)  # below: warn
MEMORY_WARN: Final = 0.80
MEMORY_FAIL: Final = 0.95
PUBSUB_MIN_BYTES: Final = 8 * 1024 * 1024  # a hard limit below this drops workers in bursts
SKEW_WARN: Final = 5.0  # seconds
SKEW_FAIL: Final = 30.0  # half of reconcile's default grace: live players could look dead
SKEW_SESSION_SAMPLE: Final = 200
# The flag's name (as in echoes_ops.contract.flags, read here without depending on it).
REDIS_ENABLED: Final = "REDIS_ENABLED"
_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off"})
# worker meta ``mode`` values: Redis in use, or the PostgreSQL-only fallback
_MODE_ENABLED: Final = frozenset({"redis"})
_MODE_DISABLED: Final = frozenset({"fallback", "postgres", "postgresql", "local", "disabled"})


@dataclass
class Check:
    id: str
    title: str
    verdict: str
    summary: str  # what was found
    why: str  # why it matters
    fix: str  # what to do ("" when nothing)
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "verdict": self.verdict,
            "summary": self.summary,
            "why": self.why,
            "fix": self.fix,
            "details": self.details,
        }


@dataclass
class DoctorReport:
    checks: list[Check]
    server_time: float
    elapsed_s: float

    @property
    def worst(self) -> str:
        return max((c.verdict for c in self.checks), key=RANK.__getitem__, default="ok")

    def counts(self) -> dict[str, int]:
        return {v: sum(1 for c in self.checks if c.verdict == v) for v in VERDICTS}

    def as_dict(self) -> dict[str, Any]:
        return {
            "worst": self.worst,
            "counts": self.counts(),
            "checks": [c.as_dict() for c in self.checks],
            "server_time": round(self.server_time, 3),
            "elapsed_s": round(self.elapsed_s, 3),
        }


TITLES: Final = {
    "redis_version": "Redis version",
    "eviction_policy": "Eviction policy",
    "memory_headroom": "Memory headroom",
    "persistence": "Persistence",
    "static_data": "Static data",
    "keys_without_ttl": "Keys without TTL",
    "dead_workers": "Dead workers",
    "pubsub_output_buffer": "Pub/sub output buffer limit",
    "network_exposure": "Network exposure",
    "clock_skew": "Clock skew",
    "redis_enabled": "REDIS_ENABLED agreement",
}


def _check(
    check_id: str, verdict: str, summary: str, why: str, fix: str = "", /, **details: Any
) -> Check:
    return Check(check_id, TITLES[check_id], verdict, summary, why, fix, dict(details))


def _refused(exc: ResponseError) -> str:
    """Why a command was refused, in one line."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, NoPermissionError) or "NOPERM" in text:
        return f"denied by ACL for this user ({text})"
    if "unknown command" in text.lower():
        return f"disabled or renamed on this server ({text})"
    return text


class _Config:
    """CONFIG GET of single parameters, remembering why it failed (never raising)."""

    def __init__(self, r: Redis) -> None:
        self.r = r
        self.values: dict[str, str | None] = {}
        self.error: str | None = None

    async def get(self, name: str) -> str | None:
        if name in self.values:
            return self.values[name]
        value: str | None = None
        if self.error is None:
            try:
                reply = await self.r.config_get(name)
            except ResponseError as exc:
                self.error = f"CONFIG GET {_refused(exc)}"
            else:
                raw = reply.get(name)
                value = None if raw is None else str(raw)
        self.values[name] = value
        return value

    def unknown(self, what: str) -> str:
        return f"cannot read {what}: {self.error or 'the server does not report it'}"


@dataclass
class _Context:
    r: Redis
    info: dict[str, Any] | None
    info_error: str | None
    config: _Config
    server_time: float
    walk: KeyspaceWalk
    liveness: dict[str, WorkerLiveness]


async def doctor(
    r: Redis,
    *,
    gamedata: GameData | None,
    gamedata_problem: str | None = None,
    database_url: str | None = None,
    env_file: str | None = None,
    rng: random.Random | None = None,
) -> DoctorReport:
    """Run every check (see :data:`CHECKS`) and return them in that order."""
    started = time.perf_counter()
    info: dict[str, Any] | None
    info_error = None
    try:
        info = await r.info()
    except ResponseError as exc:
        info, info_error = None, f"INFO {_refused(exc)}"
    seconds, micros = await r.time()
    server_time = seconds + micros / 1e6
    walk = await walk_keyspace(
        r,
        ttl_all_families=("sessions", "inventories", "locks"),
        ttl_sample=SKEW_SESSION_SAMPLE,
        ttl_sample_families=("sessions",),
        rng=rng,
    )
    liveness = await worker_liveness(r, walk.worker_ids)
    ctx = _Context(r, info, info_error, _Config(r), server_time, walk, liveness)

    runs: list[tuple[str, Callable[[], Awaitable[Check]]]] = [
        ("redis_version", lambda: _redis_version(ctx)),
        ("eviction_policy", lambda: _eviction_policy(ctx)),
        ("memory_headroom", lambda: _memory_headroom(ctx)),
        ("persistence", lambda: _persistence(ctx)),
        ("static_data", lambda: _static_data(ctx, gamedata, gamedata_problem)),
        ("keys_without_ttl", lambda: _keys_without_ttl(ctx)),
        ("dead_workers", lambda: _dead_workers(ctx)),
        ("pubsub_output_buffer", lambda: _pubsub_output_buffer(ctx)),
        ("network_exposure", lambda: _network_exposure(ctx)),
        ("clock_skew", lambda: _clock_skew(ctx)),
        ("redis_enabled", lambda: _redis_enabled(ctx, database_url, env_file)),
    ]
    checks = []
    for check_id, run in runs:
        try:
            checks.append(await run())
        except ResponseError as exc:
            checks.append(
                _check(
                    check_id,
                    "unknown",
                    f"could not run: {_refused(exc)}",
                    "a command this check needs was refused",
                    "grant the command to the user echoes-ops connects as, or check by hand",
                )
            )
    return DoctorReport(checks, server_time, time.perf_counter() - started)


# -- server ---------------------------------------------------------------------------------


def parse_version(text: str) -> tuple[int, ...] | None:
    match = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    if not match:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


async def _redis_version(ctx: _Context) -> Check:
    why = (
        "echoes-ops and the workers rely on ACL users (REDIS_USERNAME), SCAN ... TYPE and the "
        "CLIENT LIST fields that tell workers apart, all from Redis 6.0; 6.0 itself is "
        "end-of-life (no security fixes), and Redis 7 also applies protected mode to explicit "
        "bind addresses."
    )
    fix = "upgrade Redis to 7.x (or at least 6.2)"
    if ctx.info is None:
        return _check("redis_version", "unknown", f"cannot read the version: {ctx.info_error}", why)
    text = str(ctx.info.get("redis_version", ""))
    version = parse_version(text)
    if version is None:
        return _check("redis_version", "unknown", f"unrecognised version {text!r}", why)
    if version < MIN_VERSION:
        return _check(
            "redis_version", "fail", f"Redis {text} is older than 6.0", why, fix, version=text
        )
    if version < RECOMMENDED_VERSION:
        return _check(
            "redis_version", "warn", f"Redis {text} is end-of-life", why, fix, version=text
        )
    return _check("redis_version", "ok", f"Redis {text}", why, version=text)


async def _eviction_policy(ctx: _Context) -> Check:
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
        return _check(
            "eviction_policy",
            "unknown",
            ctx.config.unknown("maxmemory-policy") if ctx.info else f"{ctx.info_error}",
            why,
        )
    if policy.startswith("allkeys-"):
        return _check(
            "eviction_policy",
            "fail",
            f"maxmemory-policy {policy} can evict keys without a TTL",
            why,
            fix,
            policy=policy,
        )
    if policy == "volatile-ttl":
        return _check(
            "eviction_policy",
            "warn",
            "maxmemory-policy volatile-ttl evicts the keys nearest expiry first: locks and "
            "worker meta keys (short TTLs) before sessions",
            why,
            "CONFIG SET maxmemory-policy volatile-lru (and in redis.conf)",
            policy=policy,
        )
    if policy.startswith("volatile-"):
        return _check(
            "eviction_policy",
            "ok",
            f"maxmemory-policy {policy}: only keys with a TTL can be evicted",
            why,
            policy=policy,
        )
    if policy == "noeviction":
        return _check(
            "eviction_policy",
            "ok",
            "maxmemory-policy noeviction: writes fail with OOM errors when full, nothing is "
            "dropped silently",
            why,
            policy=policy,
        )
    return _check(
        "eviction_policy",
        "warn",
        f"unrecognised maxmemory-policy {policy!r}",
        why,
        fix,
        policy=policy,
    )


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


async def _memory_headroom(ctx: _Context) -> Check:
    why = (
        "When used memory reaches maxmemory Redis evicts (per policy) or refuses writes: "
        "sessions and presence updates fail mid-game and preload refuses to load. Without "
        "maxmemory Redis grows until the host runs out of memory and the kernel's OOM killer "
        "stops it, and the eviction policy never applies."
    )
    if ctx.info is None:
        return _check("memory_headroom", "unknown", f"cannot read memory: {ctx.info_error}", why)
    used = int(ctx.info.get("used_memory", 0) or 0)
    limit = int(ctx.info.get("maxmemory", 0) or 0)
    system = int(ctx.info.get("total_system_memory", 0) or 0)
    details: dict[str, Any] = {"used_bytes": used, "max_bytes": limit, "system_bytes": system}
    if limit == 0:
        host = f" (host memory {_size(system)})" if system else ""
        return _check(
            "memory_headroom",
            "warn",
            f"no maxmemory limit; {_size(used)} used{host}",
            why,
            "set maxmemory (e.g. 75% of what the host can give Redis): CONFIG SET maxmemory "
            "<bytes>, and in redis.conf",
            **details,
        )
    share = used / limit
    details["used_of_max"] = round(share, 4)
    summary = f"{_size(used)} of {_size(limit)} used ({share:.0%})"
    fix = (
        "raise maxmemory (CONFIG SET maxmemory <bytes>) or free memory: look at `echoes-ops "
        "stats` for the biggest key families"
    )
    if share > MEMORY_FAIL:
        return _check("memory_headroom", "fail", summary, why, fix, **details)
    if share > MEMORY_WARN:
        return _check("memory_headroom", "warn", summary, why, fix, **details)
    return _check("memory_headroom", "ok", summary, why, **details)


async def _persistence(ctx: _Context) -> Check:
    why = (
        "Sessions, presence and the static caches live only in Redis. After a restart without "
        "persistence every player is logged out, locations are empty and static lookups miss "
        "until `echoes-ops preload` runs. PostgreSQL stays the source of truth, so no "
        "persistence is a warning, not a failure; failing persistence is a failure (with "
        "stop-writes-on-bgsave-error, Redis refuses writes)."
    )
    if ctx.info is None:
        return _check("persistence", "unknown", f"cannot read persistence: {ctx.info_error}", why)
    aof = str(ctx.info.get("aof_enabled", "0")) == "1"
    aof_status = str(ctx.info.get("aof_last_write_status", "ok"))
    rdb_status = str(ctx.info.get("rdb_last_bgsave_status", "ok"))
    save = await ctx.config.get("save")
    details = {"appendonly": aof, "save": save, "aof_last_write_status": aof_status}
    details["rdb_last_bgsave_status"] = rdb_status
    if aof_status == "err" or rdb_status == "err":
        return _check(
            "persistence",
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
        return _check("persistence", "ok", ", ".join(parts), why, **details)
    if save is None:
        return _check(
            "persistence",
            "unknown",
            f"AOF off; {ctx.config.unknown('the RDB save schedule')}",
            why,
            "check `save` in redis.conf",
            **details,
        )
    return _check(
        "persistence",
        "warn",
        "neither AOF nor RDB snapshots: a restart loses everything",
        why,
        "CONFIG SET appendonly yes (and in redis.conf), or a save schedule such as "
        "`save 3600 1 300 100 60 10000`",
        **details,
    )


# -- data -----------------------------------------------------------------------------------

STATIC_FAMILIES: Final = ("location_cache", "item_defs", "npc_defs")


async def _static_data(ctx: _Context, data: GameData | None, problem: str | None) -> Check:
    why = (
        "Workers read locations, items and NPC definitions from the static caches; missing "
        "or malformed entries break lookups, stale ones serve old data."
    )
    fix = "echoes-ops preload (rewrites only what differs, atomically)"
    loaded = {name: ctx.walk.families[name].keys for name in STATIC_FAMILIES}
    if sum(loaded.values()) == 0:
        return _check(
            "static_data",
            "fail",
            "no static data loaded (no location, item or NPC keys)",
            why,
            fix,
            loaded=loaded,
        )
    if data is None:
        return _check(
            "static_data",
            "unknown",
            f"static data present ({sum(loaded.values())} keys) but not compared: "
            f"{problem or 'no gamedata'}",
            why,
            "pass --gamedata DIR (the gamedata the game runs with)",
            loaded=loaded,
        )
    status = await cache_status(ctx.r, data)
    kinds = {name: k.as_dict() for name, k in status.kinds.items()}
    missing = sum(k["missing"] for k in kinds.values())
    malformed = sum(k["malformed"] for k in kinds.values())
    stale = sum(k["stale"] for k in kinds.values())
    extra = sum(k["extra"] for k in kinds.values())
    details = {
        "gamedata_version": status.gamedata_version,
        "loaded_version": status.loaded_version,
        "missing": missing,
        "malformed": malformed,
        "stale": stale,
        "extra": extra,
    }
    counts = f"{missing} missing, {malformed} malformed, {stale} stale, {extra} extra"
    if missing or malformed:
        return _check(
            "static_data", "fail", f"static caches incomplete: {counts}", why, fix, **details
        )
    if not status.in_sync:
        version = "" if status.loaded_version == status.gamedata_version else "; version differs"
        return _check(
            "static_data",
            "warn",
            f"static caches differ from gamedata: {counts}{version}",
            why,
            fix,
            **details,
        )
    return _check(
        "static_data",
        "ok",
        f"loaded and matching gamedata {status.gamedata_version[:12]}",
        why,
        **details,
    )


async def _keys_without_ttl(ctx: _Context) -> Check:
    why = (
        "Sessions, inventories and locks must expire. A session without a TTL keeps a player "
        "online forever; an inventory without one serves stale items; a lock without one is "
        "never released if its holder dies, so the task it guards stops for good."
    )
    fix = (
        "echoes-ops reconcile --fix (gives each the contract's TTL: sessions "
        f"{keys.SESSION_TTL} s, inventories {keys.INVENTORY_TTL} s, locks {LOCK_REPAIR_TTL} s)"
    )
    found = {name: ctx.walk.families[name].no_ttl for name in ("sessions", "inventories", "locks")}
    examples = {
        name: ctx.walk.families[name].no_ttl_examples
        for name in found
        if ctx.walk.families[name].no_ttl_examples
    }
    summary = (
        f"{found['sessions']} session(s), {found['inventories']} inventory(ies), "
        f"{found['locks']} lock(s) without a TTL"
    )
    details = {"without_ttl": found, "examples": examples}
    if ctx.walk.ttl_errors:
        return _check(
            "keys_without_ttl",
            "unknown",
            f"{summary}, but {ctx.walk.ttl_errors} TTL read(s) were refused: {ctx.walk.ttl_error}",
            why,
            "allow TTL for the user echoes-ops connects as, or check by hand",
            **details,
        )
    if found["locks"]:
        return _check("keys_without_ttl", "fail", summary, why, fix, **details)
    if found["sessions"] or found["inventories"]:
        return _check("keys_without_ttl", "warn", summary, why, fix, **details)
    return _check("keys_without_ttl", "ok", summary, why, **details)


async def _dead_workers(ctx: _Context) -> Check:
    why = (
        "A worker that died without cleaning up leaves its players' sessions, presence "
        "entries and connections hash behind: ghost players stay visible in locations and "
        "count as online."
    )
    workers = await list_workers(ctx.r)
    dead = [w for w in workers if not w.alive and (w.connections or w.players)]
    details: dict[str, Any] = {
        "workers": len(workers),
        "alive": sum(1 for w in workers if w.alive),
        "dead_with_leftovers": [
            {
                "id": w.worker_id,
                "connections": w.connections,
                "players": w.players,
                "heartbeat_age": None if w.heartbeat_age is None else round(w.heartbeat_age, 1),
            }
            for w in dead
        ],
    }
    if any(not live.clients_visible for live in ctx.liveness.values()):
        details["note"] = "CLIENT LIST not allowed: liveness judged by meta keys only"
    if dead:
        ids = ", ".join(w.worker_id for w in dead[:5]) + (" ..." if len(dead) > 5 else "")
        return _check(
            "dead_workers",
            "warn",
            f"{len(dead)} dead worker(s) with leftovers: {ids}",
            why,
            "echoes-ops workers cleanup <id> (after checking it is really gone), or "
            "echoes-ops reconcile --fix",
            **details,
        )
    return _check(
        "dead_workers",
        "ok",
        f"{details['alive']} live worker(s), none dead with leftovers",
        why,
        **details,
    )


# -- configuration --------------------------------------------------------------------------

_UNITS: Final = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1024,
    "m": 1000**2,
    "mb": 1024**2,
    "g": 1000**3,
    "gb": 1024**3,
}


def parse_bytes(text: str) -> int | None:
    match = re.fullmatch(r"(\d+)([a-zA-Z]*)", text.strip())
    if not match or match.group(2).lower() not in _UNITS:
        return None
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def parse_buffer_limits(text: str) -> dict[str, tuple[int, int, int]]:
    """``client-output-buffer-limit`` as {class: (hard bytes, soft bytes, soft seconds)}."""
    tokens = text.split()
    out: dict[str, tuple[int, int, int]] = {}
    for start in range(0, len(tokens) - 3, 4):
        name, hard, soft, seconds = tokens[start : start + 4]
        values = parse_bytes(hard), parse_bytes(soft), parse_bytes(seconds)
        if None in values:
            continue
        out[name.lower()] = (values[0] or 0, values[1] or 0, values[2] or 0)
    return out


async def _pubsub_output_buffer(ctx: _Context) -> Check:
    why = (
        "Redis queues pub/sub messages for each subscriber that reads slower than they are "
        "published. Unlimited, a stalled worker makes that queue grow without bound, in used "
        "memory, until eviction or OOM hits the whole tier. Too low, a worker that falls "
        "behind in a burst (a broadcast, a crowded location) is disconnected and everything "
        "queued is lost: pub/sub is at-most-once."
    )
    fix = (
        'CONFIG SET client-output-buffer-limit "pubsub 32mb 8mb 60" (Redis\' default), and '
        "the same in redis.conf"
    )
    text = await ctx.config.get("client-output-buffer-limit")
    if text is None:
        return _check(
            "pubsub_output_buffer",
            "unknown",
            ctx.config.unknown("client-output-buffer-limit"),
            why,
            "check client-output-buffer-limit pubsub in redis.conf",
        )
    limits = parse_buffer_limits(text).get("pubsub")
    if limits is None:
        return _check("pubsub_output_buffer", "unknown", f"no pubsub class in {text!r}", why, fix)
    hard, soft, seconds = limits
    details = {"hard_bytes": hard, "soft_bytes": soft, "soft_seconds": seconds}
    shown = f"pubsub {hard} {soft} {seconds}"
    if hard == 0 and soft == 0:
        return _check(
            "pubsub_output_buffer",
            "warn",
            f"{shown}: unlimited; a stalled subscriber can use all memory",
            why,
            fix,
            **details,
        )
    effective = hard if hard else soft
    if effective < PUBSUB_MIN_BYTES:
        return _check(
            "pubsub_output_buffer",
            "warn",
            f"{shown}: a subscriber is dropped after {_size(effective)} of backlog, too "
            f"little for bursts (want at least {_size(PUBSUB_MIN_BYTES)})",
            why,
            fix,
            **details,
        )
    return _check(
        "pubsub_output_buffer",
        "ok",
        f"{shown}: bounded, room for bursts ({_size(effective)})",
        why,
        **details,
    )


def address_scope(address: str) -> str:
    """``loopback``, ``any`` (all interfaces) or ``address`` (a specific non-loopback one)
    for a ``bind`` entry (a leading ``-`` marks it optional) or a ``laddr`` host."""
    text = address.strip()
    if text.startswith("-"):
        text = text[1:]
    if text.startswith("/"):
        return "loopback"  # a unix socket path
    if text in {"*", "::*", "", "0.0.0.0", "::"}:
        return "any"
    if text.lower() == "localhost":
        return "loopback"
    text = text.strip("[]").split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return "address"  # a host name: cannot be sure it is loopback
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified:
        return "any"
    return "address"


def _host_of(laddr: str) -> str:
    """The host part of ``ip:port`` / ``[v6]:port`` / ``v6:port``."""
    if laddr.startswith("["):
        return laddr[1:].split("]", 1)[0]
    return laddr.rsplit(":", 1)[0] if ":" in laddr else laddr


async def _client_laddr(r: Redis) -> str | None:
    """The server address our own connection came in on (CLIENT INFO, 6.2+)."""
    try:
        reply = await r.client_info()
    except ResponseError:
        return None
    laddr = reply.get("laddr") if isinstance(reply, dict) else None
    return str(laddr) if laddr else None


async def _default_user_open(ctx: _Context) -> tuple[bool | None, str]:
    """Whether a client can connect without credentials (the default user is on with
    nopass), and how that was learned. Secrets are never read into the report."""
    try:
        user = await ctx.r.acl_getuser("default")
    except ResponseError as exc:
        acl_error = _refused(exc)
    else:
        if not user:
            return False, "ACL: no default user"
        raw_flags: Any = user.get("flags") or []
        flags = {str(f) for f in raw_flags}
        if "off" in flags:
            return False, "ACL: default user disabled"
        return ("nopass" in flags), "ACL GETUSER default"
    password = await ctx.config.get("requirepass")
    if password is None:
        return None, f"ACL GETUSER {acl_error}; {ctx.config.unknown('requirepass')}"
    return (password == ""), "CONFIG GET requirepass"


async def _network_exposure(ctx: _Context) -> Check:
    why = (
        "A Redis reachable from other hosts without a password gives anyone on that network "
        "every session, the ability to kick players, forge broadcasts and, through CONFIG, "
        "often the host itself. Protected mode refuses non-loopback clients while the "
        "default user has no password, but only on Redis 7 for explicit bind addresses, "
        "and one setting turns it off."
    )
    fix = (
        "require credentials: requirepass, or ACL users with `ACL SETUSER default off`; bind "
        "only the interfaces the workers use, firewall the port, keep protected-mode yes"
    )
    bind = await ctx.config.get("bind")
    port = await ctx.config.get("port")
    tls_port = await ctx.config.get("tls-port")
    protected = await ctx.config.get("protected-mode")
    laddr = await _client_laddr(ctx.r)
    open_access, auth_source = await _default_user_open(ctx)
    addresses = bind.split() if bind is not None else []
    exposed_binds = [a for a in addresses if address_scope(a) != "loopback"]
    if bind is not None and not addresses:
        exposed_binds = ["(all interfaces)"]
    ports = [p for p in (port, tls_port) if p not in (None, "", "0")]
    laddr_exposed = laddr is not None and address_scope(_host_of(laddr)) != "loopback"
    details: dict[str, Any] = {
        "bind": bind,
        "port": port,
        "tls_port": tls_port,
        "protected_mode": protected,
        "connected_via": laddr,
        "default_user_without_password": open_access,
        "auth_checked_with": auth_source,
    }
    if bind is None and not laddr_exposed:
        return _check(
            "network_exposure",
            "unknown",
            f"{ctx.config.unknown('bind')}; connected over loopback",
            why,
            "check bind, protected-mode and requirepass in redis.conf",
            **details,
        )
    exposed = laddr_exposed or (bool(exposed_binds) and (bool(ports) or port is None))
    if not exposed:
        where = "loopback only" if ports else "no TCP port (unix socket only)"
        return _check("network_exposure", "ok", f"listens on {where} ({bind})", why, **details)
    where = ", ".join(exposed_binds) if exposed_binds else f"{laddr}"
    if open_access is False:
        return _check(
            "network_exposure",
            "ok",
            f"reachable on {where}; credentials required ({auth_source})",
            why,
            **details,
        )
    if open_access is None:
        return _check(
            "network_exposure",
            "unknown",
            f"reachable on {where}; whether a password is required is unknown: {auth_source}",
            why,
            fix,
            **details,
        )
    version = parse_version(str(ctx.info.get("redis_version", ""))) if ctx.info else None
    protects = protected == "yes" and (not addresses or (version is not None and version >= (7,)))
    if protects:
        return _check(
            "network_exposure",
            "warn",
            f"reachable on {where} with no password for the default user; only protected "
            "mode keeps non-loopback clients out",
            why,
            fix,
            **details,
        )
    return _check(
        "network_exposure",
        "fail",
        f"reachable on {where} with no password for the default user and protected-mode "
        f"{protected or 'unknown'}",
        why,
        fix,
        **details,
    )


# -- time and flags -------------------------------------------------------------------------


async def _clock_skew(ctx: _Context) -> Check:
    why = (
        "Heartbeats are wall-clock epoch seconds written by each worker, read against other "
        "clocks: a worker whose clock is behind makes its live players look idle, so "
        "`reconcile --fix` and `workers cleanup` (60 s grace) could remove them; one ahead "
        "hides players that are really gone."
    )
    fix = "run NTP (chrony, systemd-timesyncd) on the worker hosts and the Redis host"
    now = ctx.server_time
    live = {wid: w for wid, w in ctx.liveness.items() if w.alive}
    if not live:
        return _check("clock_skew", "ok", "no live workers to compare", why, workers={})
    offsets: dict[str, list[float]] = {wid: [] for wid in live}
    lower_bounds: dict[str, list[float]] = {wid: [] for wid in live}
    ordered = sorted(live)
    pttls = await bulk(
        ctx.r, [("PTTL", keys.worker_meta_key(wid)) for wid in ordered], raise_on_error=False
    )
    for wid, pttl in zip(ordered, pttls, strict=True):
        beat = codec.decode_epoch(live[wid].meta.get("heartbeat"), now=now)
        if beat is None or not isinstance(pttl, int) or pttl <= 0:
            continue
        if pttl <= keys.WORKER_META_TTL * 1000:
            # heartbeat and EXPIRE (the contract's 15 s) are written together, so the
            # remaining TTL says when, by the server's clock, the heartbeat was written
            written = now - (keys.WORKER_META_TTL - pttl / 1000)
            offsets[wid].append(beat - written)
        elif beat > now:
            lower_bounds[wid].append(beat - now)
    sample = ctx.walk.families["sessions"].ttl_sample
    commands: list[tuple[Any, ...]] = []
    for key in sample:
        commands += [("HMGET", key, "worker_id", "last_heartbeat"), ("PTTL", key)]
    replies = await bulk(ctx.r, commands, raise_on_error=False)
    for index in range(len(sample)):
        values, pttl = replies[2 * index], replies[2 * index + 1]
        if not isinstance(values, list) or not isinstance(pttl, int) or pttl <= 0:
            continue
        owner = None if values[0] is None else str(values[0])
        beat = codec.decode_epoch(None if values[1] is None else str(values[1]), now=now)
        if owner not in live or beat is None or pttl > keys.SESSION_TTL * 1000:
            continue
        # other writes may refresh the TTL without a heartbeat: this only bounds how far
        # ahead the worker's clock is, never how far behind
        lower_bounds[owner].append(beat - (now - (keys.SESSION_TTL - pttl / 1000)))
    per_worker: dict[str, dict[str, Any]] = {}
    for wid in ordered:
        if offsets[wid]:
            skew: float | None = statistics.median(offsets[wid])
            source = "meta"
        elif lower_bounds[wid] and max(lower_bounds[wid]) > 0:
            skew, source = max(lower_bounds[wid]), "sessions (at least)"
        else:
            skew, source = None, "unknown"
        if skew is not None and lower_bounds[wid] and max(lower_bounds[wid]) > skew:
            skew, source = max(lower_bounds[wid]), "sessions (at least)"
        per_worker[wid] = {
            "offset_s": None if skew is None else round(skew, 3),
            "source": source,
            "sessions_sampled": len(lower_bounds[wid]),
        }
    known = {wid: v["offset_s"] for wid, v in per_worker.items() if v["offset_s"] is not None}
    if not known:
        return _check(
            "clock_skew",
            "unknown",
            f"{len(live)} live worker(s), none with a heartbeat that can be compared",
            why,
            workers=per_worker,
        )
    worst_id = max(known, key=lambda w: abs(known[w]))
    worst = known[worst_id]
    direction = "ahead of" if worst > 0 else "behind"
    summary = f"worst: {worst_id} is {abs(worst):.1f} s {direction} the Redis server's clock"
    verdict = "fail" if abs(worst) > SKEW_FAIL else "warn" if abs(worst) > SKEW_WARN else "ok"
    if verdict == "ok":
        summary = f"{len(known)} worker(s) within {SKEW_WARN:.0f} s of the server ({summary})"
    return _check(
        "clock_skew",
        verdict,
        summary,
        why,
        fix if verdict != "ok" else "",
        server_time=round(now, 3),
        workers=per_worker,
    )


def flag_value(text: str | None) -> bool | None:
    if text is None:
        return None
    value = text.strip().strip("'\"").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None


def read_env_file(path: str, name: str) -> tuple[str | None, str]:
    """The last ``name=value`` of a dotenv / docker env file (``export`` allowed, comments
    skipped), with a note on what happened."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}"
    found: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :].lstrip()
        key, sep, value = stripped.partition("=")
        if sep and key.strip() == name:
            value = value.strip()
            if value[:1] in {"'", '"'} and value.endswith(value[:1]) and len(value) >= 2:
                value = value[1:-1]
            else:
                value = value.split(" #", 1)[0].strip()
            found = value
    if found is None:
        return None, f"{name} not set in {path}"
    return found, path


async def _postgres_flag(dsn: str, name: str) -> tuple[str | None, str]:
    try:
        async with open_postgres(dsn) as conn:
            table = await conn.fetchval("SELECT to_regclass($1)", f"{SCHEMA}.flags")
            if table is None:
                return None, f"no {SCHEMA}.flags table (run `echoes-ops db migrate`)"
            value = await conn.fetchval(f"SELECT value FROM {SCHEMA}.flags WHERE name = $1", name)
    except PostgresError as exc:
        return None, str(exc)
    if value is None:
        return None, f"no {name} row in {SCHEMA}.flags (workers use the default)"
    return str(value), f"{SCHEMA}.flags"


def _worker_flag(meta: dict[str, str]) -> bool | None:
    explicit = flag_value(meta.get("redis_enabled"))
    if explicit is not None:
        return explicit
    mode = (meta.get("mode") or "").strip().lower()
    if mode in _MODE_ENABLED:
        return True
    if mode in _MODE_DISABLED:
        return False
    return None


async def _redis_enabled(ctx: _Context, database_url: str | None, env_file: str | None) -> Check:
    why = (
        "REDIS_ENABLED decides whether workers use Redis or fall back to PostgreSQL and "
        "in-process connections. PostgreSQL holds the switch, the env file keeps it across "
        "restarts and Redis mirrors it: when they disagree, a restart flips workers to "
        "another mode, and workers in different modes split the game (players on one side "
        "do not see the other)."
    )
    sources: dict[str, dict[str, Any]] = {}

    if database_url:
        raw, note = await _postgres_flag(database_url, REDIS_ENABLED)
    else:
        raw, note = None, "DATABASE_URL not set"
    sources["postgresql"] = {"raw": raw, "value": flag_value(raw), "note": note}

    if env_file:
        raw, note = read_env_file(env_file, REDIS_ENABLED)
    else:
        raw, note = None, "ECHOES_OPS_ENV_FILE not set"
    sources["env_file"] = {"raw": raw, "value": flag_value(raw), "note": note}

    mirror = await ctx.r.hget(keys.FLAGS_KEY, REDIS_ENABLED)
    raw = None if mirror is None else str(mirror)
    sources["redis_mirror"] = {
        "raw": raw,
        "value": flag_value(raw),
        "note": keys.FLAGS_KEY if raw is not None else f"no {REDIS_ENABLED} in {keys.FLAGS_KEY}",
    }

    workers: dict[str, bool | None] = {
        wid: _worker_flag(w.meta) for wid, w in sorted(ctx.liveness.items()) if w.alive
    }
    worker_values = {v for v in workers.values() if v is not None}
    sources["workers"] = {
        "value": next(iter(worker_values)) if len(worker_values) == 1 else None,
        "by_worker": workers,
        "note": f"{len(workers)} live worker(s)" if workers else "no live workers",
    }

    invalid = [
        f"{name}={s['raw']!r}"
        for name, s in sources.items()
        if s.get("raw") is not None and s["value"] is None
    ]
    for s in sources.values():
        value = s["value"]
        s["state"] = str(value).lower() if isinstance(value, bool) else "unknown"
    if len(worker_values) > 1:
        sources["workers"]["state"] = "mixed"
    details = {"sources": sources}
    summary_values = ", ".join(f"{name} {s['state']}" for name, s in sources.items())
    fix = (
        "set it once through the source of truth (`echoes-ops flags set REDIS_ENABLED ...`, "
        "which updates PostgreSQL, the env file and the mirror), then restart or notify the "
        "workers that did not switch"
    )
    if len(worker_values) > 1:
        split = ", ".join(f"{w}={v}" for w, v in workers.items() if v is not None)
        return _check(
            "redis_enabled", "fail", f"live workers disagree: {split}", why, fix, **details
        )
    truth = sources["postgresql"]["value"]
    if isinstance(truth, bool) and worker_values and truth not in worker_values:
        return _check(
            "redis_enabled",
            "fail",
            f"workers run with {not truth} but PostgreSQL says {truth} ({summary_values})",
            why,
            fix,
            **details,
        )
    known = {name: s["value"] for name, s in sources.items() if isinstance(s["value"], bool)}
    if invalid:
        return _check(
            "redis_enabled",
            "warn",
            f"not a boolean: {', '.join(invalid)} ({summary_values})",
            why,
            fix,
            **details,
        )
    if len(set(known.values())) > 1:
        return _check(
            "redis_enabled", "warn", f"sources disagree: {summary_values}", why, fix, **details
        )
    if len(known) < 2:
        return _check(
            "redis_enabled",
            "ok",
            f"nothing to compare ({summary_values})",
            why,
            **details,
        )
    return _check("redis_enabled", "ok", f"all agree: {summary_values}", why, **details)
