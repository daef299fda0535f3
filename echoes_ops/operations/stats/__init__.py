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

Modules: ``model`` (result types), ``snapshot`` (taking one, intervals, watching),
``connections`` (clients and pub/sub), ``prometheus`` (the text exposition).
"""

from echoes_ops.operations.stats.connections import (
    CHANNEL_FAMILIES,
    CHANNEL_LIST_LIMIT,
    channel_family,
)
from echoes_ops.operations.stats.model import (
    NO_TTL_BUCKET,
    TTL_EDGES,
    ChannelFamily,
    ClientStats,
    Counters,
    FamilyStats,
    IntervalStats,
    MemoryStats,
    OwnLoad,
    PubSubStats,
    StatsSnapshot,
    TtlStats,
    ttl_bucket,
    ttl_bucket_labels,
)
from echoes_ops.operations.stats.prometheus import PREFIX, prometheus_text
from echoes_ops.operations.stats.snapshot import (
    MEMORY_SAMPLE,
    TTL_FAMILIES,
    TTL_SAMPLE,
    interval_between,
    snapshot,
    watch,
)

__all__ = [
    "CHANNEL_FAMILIES",
    "CHANNEL_LIST_LIMIT",
    "MEMORY_SAMPLE",
    "NO_TTL_BUCKET",
    "PREFIX",
    "TTL_EDGES",
    "TTL_FAMILIES",
    "TTL_SAMPLE",
    "ChannelFamily",
    "ClientStats",
    "Counters",
    "FamilyStats",
    "IntervalStats",
    "MemoryStats",
    "OwnLoad",
    "PubSubStats",
    "StatsSnapshot",
    "TtlStats",
    "channel_family",
    "interval_between",
    "prometheus_text",
    "snapshot",
    "ttl_bucket",
    "ttl_bucket_labels",
    "watch",
]
