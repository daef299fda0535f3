"""What a stats snapshot holds: result types, TTL buckets, and the INFO field readers."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from echoes_ops.operations.cluster_health import ClusterHealth
from echoes_ops.operations.keyspace import FAMILY_DESCRIPTIONS
from echoes_ops.operations.static_data import version_json

# Remaining-TTL buckets, seconds: [0, 60), [60, 300), [300, 600), [600, 1800), [1800, ...)
TTL_EDGES: Final = (60, 300, 600, 1800)
NO_TTL_BUCKET: Final = "none"


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
    cluster: ClusterHealth | None = None  # per node, on Redis Cluster (totals above)

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
            "gamedata": version_json(self.gamedata),
            "cluster": self.cluster.as_dict() if self.cluster is not None else None,
            "own_load": asdict(self.own),
            "elapsed_s": round(self.elapsed_s, 3),
        }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def info_int(info: dict[str, Any], name: str) -> int:
    """An integer INFO (or CLIENT LIST) field; 0 when missing or not a number."""
    try:
        return int(info.get(name, 0))
    except (TypeError, ValueError):
        return 0


def info_float(info: dict[str, Any], name: str) -> float | None:
    """A finite float INFO field; None when missing or not a number."""
    try:
        value = float(info[name])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
