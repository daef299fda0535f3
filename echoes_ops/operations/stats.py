"""Health metrics of the tier: cache hit rate, evictions, memory, clients, pub/sub, key
families, TTLs, gamedata version; one snapshot, or a series with per-interval rates.

Every server command is small: INFO and TIME, one SCAN pass (COUNT 1000 per step), one
pipelined batch of ``MEMORY USAGE`` for a random sample of at most ``MEMORY_SAMPLE`` keys per
family, one of ``TTL`` for a sample of at most ``TTL_SAMPLE`` sessions and inventories,
CLIENT LIST (O(clients)), and PUBSUB CHANNELS restricted to the tier's channel families
(skipped when the server has more than ``CHANNEL_LIST_LIMIT`` channels) with NUMSUB in
batches. Per-family memory and TTL buckets of sampled families are *estimates* (sample mean
or share scaled by the exact key count) and are marked so.

Reading a TTL counts as a keyspace hit (or miss) in Redis; a snapshot records the hits,
misses and commands it caused itself, and the per-interval figures leave them out. The
since-start counters cannot be corrected: every snapshot adds at most ``2 * TTL_SAMPLE + 1``
lookups to them.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import NoPermissionError, ResponseError

from echoes_ops.client.bulk import bulk
from echoes_ops.contract import keys
from echoes_ops.errors import InvalidIdError
from echoes_ops.operations.keyspace import FAMILIES, FAMILY_DESCRIPTIONS, walk_keyspace
from echoes_ops.operations.static_data import read_version

MEMORY_SAMPLE: Final = 64  # keys per family measured with MEMORY USAGE
MEMORY_USAGE_SAMPLES: Final = 5  # nested elements MEMORY USAGE samples (Redis' default)
TTL_SAMPLE: Final = 1000  # sessions / inventories whose TTL is read per snapshot
TTL_FAMILIES: Final = ("sessions", "inventories")
# Remaining-TTL buckets, seconds: [0, 60), [60, 300), [300, 600), [600, 1800), [1800, ...)
TTL_EDGES: Final = (60, 300, 600, 1800)
NO_TTL_BUCKET: Final = "none"
CHANNEL_LIST_LIMIT: Final = 100_000  # above this many channels only totals are reported
NUMSUB_BATCH: Final = 1000
TOP_CHANNELS: Final = 10
CHANNEL_FAMILIES: Final = ("broadcast", "workers", "location", "player", "other")


def ttl_bucket_labels() -> list[str]:
    labels = []
    low = 0
    for edge in TTL_EDGES:
        labels.append(f"{low}-{edge}s")
        low = edge
    labels.append(f"{low}s+")
    return [*labels, NO_TTL_BUCKET]


def ttl_bucket(ttl: int) -> str:
    if ttl < 0:
        return NO_TTL_BUCKET
    low = 0
    for edge in TTL_EDGES:
        if ttl < edge:
            return f"{low}-{edge}s"
        low = edge
    return f"{low}s+"


def _ratio(hits: int, misses: int) -> float | None:
    total = hits + misses
    return hits / total if total else None


# -- result types -------------------------------------------------------------------------


@dataclass
class Counters:
    """Since-start (or since CONFIG RESETSTAT) server counters."""

    keyspace_hits: int
    keyspace_misses: int
    evicted_keys: int
    expired_keys: int
    commands_processed: int

    @property
    def hit_rate(self) -> float | None:
        return _ratio(self.keyspace_hits, self.keyspace_misses)


@dataclass
class MemoryStats:
    used_bytes: int
    peak_bytes: int
    max_bytes: int  # 0 = no limit
    rss_bytes: int
    dataset_bytes: int
    fragmentation_ratio: float | None
    policy: str

    @property
    def used_of_max(self) -> float | None:
        return self.used_bytes / self.max_bytes if self.max_bytes else None


@dataclass
class ClientStats:
    connected: int
    visible: bool  # False when CLIENT LIST is not allowed
    worker_connections: int  # clients named after a known worker
    workers_connected: list[str]
    pubsub_clients: int  # clients with at least one channel or pattern subscription
    pattern_subscribers: int  # clients with at least one pattern subscription
    blocked: int


@dataclass
class ChannelFamily:
    channels: int = 0
    subscriptions: int = 0


@dataclass
class PubSubStats:
    channels_total: int
    patterns_total: int
    listed: bool  # per-family counts were read (False: too many channels, or denied)
    why_not_listed: str | None
    families: dict[str, ChannelFamily]
    top_channels: list[tuple[str, int]]


@dataclass
class FamilyStats:
    keys: int
    sampled: int
    sampled_bytes: int
    estimated_bytes: int | None  # sample mean x key count; None when not measurable

    @property
    def exact(self) -> bool:
        return self.estimated_bytes is not None and self.sampled == self.keys


@dataclass
class TtlStats:
    keys: int
    sampled: int
    buckets: dict[str, int]  # label -> keys (scaled from the sample when sampled < keys)

    @property
    def exact(self) -> bool:
        return self.sampled >= self.keys


@dataclass
class IntervalStats:
    """Rates between two snapshots of the same server, our own reads left out."""

    seconds: float
    keyspace_hits: int
    keyspace_misses: int
    evicted_keys: int
    expired_keys: int
    commands: int

    @property
    def hit_rate(self) -> float | None:
        return _ratio(self.keyspace_hits, self.keyspace_misses)

    @property
    def ops_per_sec(self) -> float:
        return self.commands / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 3),
            "keyspace_hits": self.keyspace_hits,
            "keyspace_misses": self.keyspace_misses,
            "hit_rate": _round(self.hit_rate),
            "ops_per_sec": round(self.ops_per_sec, 1),
            "evicted_keys": self.evicted_keys,
            "expired_keys": self.expired_keys,
        }


@dataclass
class OwnLoad:
    """What taking the snapshot cost the server (left out of interval figures)."""

    commands: int = 0
    keyspace_hits: int = 0
    keyspace_misses: int = 0


@dataclass
class StatsSnapshot:
    taken_at: float  # server clock (TIME), epoch seconds
    run_id: str
    version: str
    role: str
    uptime_s: int
    db_keys: int  # INFO keyspace, the connected database
    counters: Counters
    instantaneous_ops_per_sec: int
    memory: MemoryStats
    clients: ClientStats
    pubsub: PubSubStats
    families: dict[str, FamilyStats] | None  # None with keyspace=False
    ttl: dict[str, TtlStats] | None
    gamedata: dict[str, str]
    elapsed_s: float
    own: OwnLoad = field(default_factory=OwnLoad)
    interval: IntervalStats | None = None

    def as_dict(self) -> dict[str, Any]:
        memory = asdict(self.memory)
        memory["used_of_max"] = _round(self.memory.used_of_max)
        return {
            "taken_at": round(self.taken_at, 3),
            "server": {
                "version": self.version,
                "role": self.role,
                "run_id": self.run_id,
                "uptime_s": self.uptime_s,
                "db_keys": self.db_keys,
            },
            "cache": {
                "keyspace_hits": self.counters.keyspace_hits,
                "keyspace_misses": self.counters.keyspace_misses,
                "hit_rate": _round(self.counters.hit_rate),
                "evicted_keys": self.counters.evicted_keys,
                "expired_keys": self.counters.expired_keys,
            },
            "ops": {
                "instantaneous_ops_per_sec": self.instantaneous_ops_per_sec,
                "commands_processed": self.counters.commands_processed,
            },
            "interval": self.interval.as_dict() if self.interval else None,
            "memory": memory,
            "clients": asdict(self.clients),
            "pubsub": {
                "channels_total": self.pubsub.channels_total,
                "patterns_total": self.pubsub.patterns_total,
                "listed": self.pubsub.listed,
                "why_not_listed": self.pubsub.why_not_listed,
                "families": {k: asdict(v) for k, v in self.pubsub.families.items()},
                "top_channels": [
                    {"channel": c, "subscribers": n} for c, n in self.pubsub.top_channels
                ],
            },
            "families": None
            if self.families is None
            else {
                name: {
                    "keys": f.keys,
                    "estimated_bytes": f.estimated_bytes,
                    "estimate": not f.exact,
                    "sampled_keys": f.sampled,
                    "sampled_bytes": f.sampled_bytes,
                    "description": FAMILY_DESCRIPTIONS[name],
                }
                for name, f in self.families.items()
            },
            "ttl": None
            if self.ttl is None
            else {
                name: {
                    "keys": t.keys,
                    "sampled_keys": t.sampled,
                    "estimate": not t.exact,
                    "buckets": t.buckets,
                }
                for name, t in self.ttl.items()
            },
            "gamedata": self.gamedata,
            "own_load": asdict(self.own),
            "elapsed_s": round(self.elapsed_s, 3),
        }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


# -- taking a snapshot ----------------------------------------------------------------------


def _int(info: dict[str, Any], name: str) -> int:
    try:
        return int(info.get(name, 0))
    except (TypeError, ValueError):
        return 0


def _float(info: dict[str, Any], name: str) -> float | None:
    try:
        value = float(info[name])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _db_keys(info: dict[str, Any], db: int) -> int:
    entry = info.get(f"db{db}")
    return _int(entry, "keys") if isinstance(entry, dict) else 0


async def snapshot(
    r: Redis,
    *,
    keyspace: bool = True,
    previous: StatsSnapshot | None = None,
    rng: random.Random | None = None,
) -> StatsSnapshot:
    """One snapshot; with ``previous`` (of the same server) its ``interval`` is filled in.
    ``keyspace=False`` skips the key walk (families, TTL buckets)."""
    started = time.perf_counter()
    own = OwnLoad()
    pipe = r.pipeline(transaction=False)
    pipe.info()
    pipe.time()
    info, (seconds, micros) = await pipe.execute()
    own.commands += 2
    taken_at = seconds + micros / 1e6

    counters = Counters(
        keyspace_hits=_int(info, "keyspace_hits"),
        keyspace_misses=_int(info, "keyspace_misses"),
        evicted_keys=_int(info, "evicted_keys"),
        expired_keys=_int(info, "expired_keys"),
        commands_processed=_int(info, "total_commands_processed"),
    )
    memory = MemoryStats(
        used_bytes=_int(info, "used_memory"),
        peak_bytes=_int(info, "used_memory_peak"),
        max_bytes=_int(info, "maxmemory"),
        rss_bytes=_int(info, "used_memory_rss"),
        dataset_bytes=_int(info, "used_memory_dataset"),
        fragmentation_ratio=_float(info, "mem_fragmentation_ratio"),
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

    clients = await _clients(r, info, worker_ids, own)
    pubsub = await _pubsub(r, info, own)
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
        uptime_s=_int(info, "uptime_in_seconds"),
        db_keys=_db_keys(info, int(r.connection_pool.connection_kwargs.get("db", 0) or 0)),
        counters=counters,
        instantaneous_ops_per_sec=_int(info, "instantaneous_ops_per_sec"),
        memory=memory,
        clients=clients,
        pubsub=pubsub,
        families=families,
        ttl=ttl,
        gamedata=gamedata,
        elapsed_s=time.perf_counter() - started,
        own=own,
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


async def _family_memory(r: Redis, walked: dict[str, Any], own: OwnLoad) -> dict[str, FamilyStats]:
    commands: list[tuple[Any, ...]] = []
    owners: list[str] = []
    for name in FAMILIES:
        for key in walked[name].memory_sample:
            commands.append(("MEMORY", "USAGE", key, "SAMPLES", MEMORY_USAGE_SAMPLES))
            owners.append(name)
    replies = await bulk(r, commands, raise_on_error=False)
    own.commands += len(commands)
    measured: dict[str, list[int]] = {name: [] for name in FAMILIES}
    denied = False
    for name, reply in zip(owners, replies, strict=True):
        if isinstance(reply, int):
            measured[name].append(reply)
        elif isinstance(reply, ResponseError):
            denied = True
    out = {}
    for name in FAMILIES:
        count = walked[name].keys
        values = measured[name]
        estimate: int | None
        if count == 0:
            estimate = 0
        elif values and not denied:
            estimate = round(sum(values) / len(values) * count)
        else:
            estimate = None
        out[name] = FamilyStats(
            keys=count, sampled=len(values), sampled_bytes=sum(values), estimated_bytes=estimate
        )
    return out


async def _ttl_buckets(r: Redis, walked: dict[str, Any], own: OwnLoad) -> dict[str, TtlStats]:
    commands: list[tuple[Any, ...]] = []
    owners: list[str] = []
    for name in TTL_FAMILIES:
        for key in walked[name].ttl_sample:
            commands.append(("TTL", key))
            owners.append(name)
    replies = await bulk(r, commands, raise_on_error=False)
    own.commands += len(commands)
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


async def _named_workers(r: Redis, names: set[str], own: OwnLoad) -> set[str]:
    """The client names that are workers: those with a meta or connections key (EXISTS,
    pipelined; no key walk)."""
    candidates = []
    for name in sorted(names):
        try:
            candidates.append((name, keys.worker_meta_key(name), keys.worker_connections_key(name)))
        except InvalidIdError:
            continue  # a name no worker key can have
    replies = await bulk(
        r, [("EXISTS", meta, conns) for _, meta, conns in candidates], raise_on_error=False
    )
    own.commands += len(candidates)
    found = set()
    for (name, _, _), count in zip(candidates, replies, strict=True):
        if isinstance(count, int):
            own.keyspace_hits += count
            own.keyspace_misses += 2 - count
            if count:
                found.add(name)
    return found


async def _clients(
    r: Redis, info: dict[str, Any], worker_ids: set[str] | None, own: OwnLoad
) -> ClientStats:
    """Connections, and which belong to workers (a client named after a worker with keys;
    ``worker_ids`` None: look the names up)."""
    connected = _int(info, "connected_clients")
    blocked = _int(info, "blocked_clients")
    own.commands += 1
    try:
        listed = await r.client_list()
    except NoPermissionError:
        return ClientStats(connected, False, 0, [], 0, 0, blocked)
    names = [str(c.get("name", "")) for c in listed]
    if worker_ids is None:
        worker_ids = await _named_workers(r, {n for n in names if n}, own)
    workers = sorted({n for n in names if n and n in worker_ids})
    worker_conns = sum(1 for n in names if n and n in worker_ids)
    pubsub = sum(1 for c in listed if _int(c, "sub") > 0 or _int(c, "psub") > 0)
    patterns = sum(1 for c in listed if _int(c, "psub") > 0)
    return ClientStats(connected, True, worker_conns, workers, pubsub, patterns, blocked)


def channel_family(channel: str) -> str:
    if channel == keys.BROADCAST_CHANNEL:
        return "broadcast"
    if channel == keys.WORKERS_CHANNEL:
        return "workers"
    for family, builder, prefix in (
        ("location", keys.location_channel, keys.LOCATION_CHANNEL_PATTERN[:-1]),
        ("player", keys.player_channel, keys.PLAYER_CHANNEL_PATTERN[:-1]),
    ):
        if channel.startswith(prefix):
            try:
                if builder(channel[len(prefix) :]) == channel:
                    return family
            except ValueError:
                return "other"
    return "other"


async def _pubsub(r: Redis, info: dict[str, Any], own: OwnLoad) -> PubSubStats:
    total = _int(info, "pubsub_channels")
    patterns = _int(info, "pubsub_patterns")
    families = {name: ChannelFamily() for name in CHANNEL_FAMILIES}
    if total > CHANNEL_LIST_LIMIT:
        return PubSubStats(
            total,
            patterns,
            False,
            f"{total} channels (more than {CHANNEL_LIST_LIMIT}): totals only",
            families,
            [],
        )
    channels: list[str] = [keys.BROADCAST_CHANNEL, keys.WORKERS_CHANNEL]
    try:
        for pattern in (keys.LOCATION_CHANNEL_PATTERN, keys.PLAYER_CHANNEL_PATTERN):
            channels += [str(c) for c in await r.pubsub_channels(pattern)]
            own.commands += 1
        counts: list[tuple[str, int]] = []
        for start in range(0, len(channels), NUMSUB_BATCH):
            part = channels[start : start + NUMSUB_BATCH]
            counts += [(str(c), int(n)) for c, n in await r.pubsub_numsub(*part)]
            own.commands += 1
    except NoPermissionError as exc:
        return PubSubStats(total, patterns, False, f"not allowed: {exc}", families, [])
    listed = 0
    for channel, subscribers in counts:
        family = families[channel_family(channel)]
        if subscribers > 0:
            family.channels += 1
            family.subscriptions += subscribers
            listed += 1
    families["other"].channels = max(0, total - listed)
    top = sorted((c for c in counts if c[1] > 0), key=lambda c: (-c[1], c[0]))[:TOP_CHANNELS]
    return PubSubStats(total, patterns, True, None, families, top)


async def watch(
    r: Redis,
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


# -- Prometheus text exposition ------------------------------------------------------------

PREFIX: Final = "echoes_redis_"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: list[tuple[dict[str, str], float]] | float | None,
    ) -> None:
        """One family: HELP, TYPE, then its samples (a bare number = one unlabelled)."""
        if samples is None:
            return
        if not isinstance(samples, list):
            samples = [({}, samples)]
        full = PREFIX + name
        self.lines.append(f"# HELP {full} {_escape_help(help_text)}")
        self.lines.append(f"# TYPE {full} {kind}")
        for labels, value in samples:
            text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
            self.lines.append(
                f"{full}{{{text}}} {_number(value)}" if text else f"{full} {_number(value)}"
            )

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def prometheus_text(s: StatsSnapshot) -> str:
    """The snapshot in the Prometheus text exposition format (version 0.0.4): base units
    (bytes, seconds), ``_total`` counters, labels for family and bucket."""
    out = _Exposition()
    gauge, counter = "gauge", "counter"
    out.metric(
        "stats_timestamp_seconds",
        gauge,
        "When this snapshot was taken, by the Redis server's clock (epoch seconds).",
        s.taken_at,
    )
    out.metric("stats_duration_seconds", gauge, "How long taking this snapshot took.", s.elapsed_s)
    out.metric(
        "server_info",
        gauge,
        "Redis server version and role (always 1).",
        [({"version": s.version, "role": s.role}, 1)],
    )
    out.metric("uptime_seconds", gauge, "Seconds since the Redis server started.", s.uptime_s)
    out.metric(
        "keyspace_hits_total",
        counter,
        "Successful key lookups since start or CONFIG RESETSTAT.",
        s.counters.keyspace_hits,
    )
    out.metric(
        "keyspace_misses_total",
        counter,
        "Failed key lookups (cache misses) since start or CONFIG RESETSTAT.",
        s.counters.keyspace_misses,
    )
    if s.counters.hit_rate is not None:
        out.metric(
            "keyspace_hit_ratio",
            gauge,
            "hits / (hits + misses) since start; prefer rate() of the two counters.",
            s.counters.hit_rate,
        )
    out.metric(
        "evicted_keys_total",
        counter,
        "Keys evicted because of maxmemory.",
        s.counters.evicted_keys,
    )
    out.metric(
        "expired_keys_total",
        counter,
        "Keys removed because their TTL ran out.",
        s.counters.expired_keys,
    )
    out.metric(
        "commands_processed_total",
        counter,
        "Commands the server processed.",
        s.counters.commands_processed,
    )
    out.metric(
        "instantaneous_ops_per_second",
        gauge,
        "Commands per second, Redis' own recent estimate.",
        s.instantaneous_ops_per_sec,
    )
    m = s.memory
    out.metric("memory_used_bytes", gauge, "Memory used by Redis (used_memory).", m.used_bytes)
    out.metric("memory_peak_bytes", gauge, "Peak of used_memory.", m.peak_bytes)
    out.metric("memory_max_bytes", gauge, "The maxmemory setting; 0 = no limit.", m.max_bytes)
    out.metric("memory_rss_bytes", gauge, "Resident set size of the server process.", m.rss_bytes)
    out.metric(
        "memory_dataset_bytes",
        gauge,
        "Memory used by the data (used_memory_dataset).",
        m.dataset_bytes,
    )
    out.metric(
        "memory_fragmentation_ratio",
        gauge,
        "RSS / used memory (mem_fragmentation_ratio).",
        m.fragmentation_ratio,
    )
    out.metric(
        "maxmemory_policy_info",
        gauge,
        "The eviction policy (always 1).",
        [({"policy": m.policy}, 1)],
    )
    c = s.clients
    out.metric("connected_clients", gauge, "Client connections.", c.connected)
    out.metric("blocked_clients", gauge, "Clients blocked in a blocking command.", c.blocked)
    if c.visible:
        out.metric(
            "worker_clients",
            gauge,
            "Client connections named after a known game worker.",
            c.worker_connections,
        )
        out.metric(
            "workers_connected",
            gauge,
            "Game workers with at least one connection.",
            len(c.workers_connected),
        )
        out.metric(
            "pubsub_clients",
            gauge,
            "Clients subscribed to at least one channel or pattern.",
            c.pubsub_clients,
        )
    p = s.pubsub
    out.metric(
        "pubsub_active_channels",
        gauge,
        "Channels with at least one subscriber (all families).",
        p.channels_total,
    )
    out.metric("pubsub_patterns", gauge, "Subscribed patterns (PUBSUB NUMPAT).", p.patterns_total)
    if p.listed:
        out.metric(
            "pubsub_channels",
            gauge,
            "Channels with subscribers, by channel family.",
            [({"family": name}, f.channels) for name, f in p.families.items()],
        )
        out.metric(
            "pubsub_subscriptions",
            gauge,
            "Channel subscriptions (PUBSUB NUMSUB summed), by channel family; 'other' not counted.",
            [
                ({"family": name}, f.subscriptions)
                for name, f in p.families.items()
                if name != "other"
            ],
        )
    out.metric("db_keys", gauge, "Keys in the connected database (INFO keyspace).", s.db_keys)
    if s.families is not None:
        out.metric(
            "keys",
            gauge,
            "Keys by family, counted with SCAN.",
            [({"family": name}, f.keys) for name, f in s.families.items()],
        )
        out.metric(
            "memory_estimated_bytes",
            gauge,
            "Estimated memory by key family: mean MEMORY USAGE of a random sample x key count.",
            [
                ({"family": name}, f.estimated_bytes)
                for name, f in s.families.items()
                if f.estimated_bytes is not None
            ],
        )
        out.metric(
            "memory_sampled_keys",
            gauge,
            "Keys measured with MEMORY USAGE for the estimate, by family.",
            [({"family": name}, f.sampled) for name, f in s.families.items()],
        )
    if s.ttl is not None:
        out.metric(
            "keys_by_ttl",
            gauge,
            "Sessions and inventories by remaining TTL bucket (bucket 'none' = no TTL); "
            "estimated from a random sample when the family is large.",
            [
                ({"family": name, "bucket": label}, n)
                for name, t in s.ttl.items()
                for label, n in t.buckets.items()
            ],
        )
        out.metric(
            "ttl_sampled_keys",
            gauge,
            "Keys whose TTL was read for the buckets, by family.",
            [({"family": name}, t.sampled) for name, t in s.ttl.items()],
        )
    version = s.gamedata.get("content_hash")
    out.metric(
        "gamedata_info",
        gauge,
        "The loaded gamedata version (content hash; 'none' when no version record).",
        [({"version": version or "none"}, 1)],
    )
    try:
        loaded_at = float(s.gamedata["loaded_at"])
    except (KeyError, ValueError):
        loaded_at = None
    if loaded_at is not None and math.isfinite(loaded_at):
        out.metric(
            "gamedata_loaded_timestamp_seconds",
            gauge,
            "When the loaded gamedata was preloaded (epoch seconds).",
            loaded_at,
        )
    return out.text()
