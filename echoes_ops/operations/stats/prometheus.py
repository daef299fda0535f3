"""A stats snapshot as Prometheus metric families (prometheus-client renders them: the text
format 0.0.4 for ``stats --prometheus``, OpenMetrics too for ``metrics serve``)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Final

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from echoes_ops.operations.stats.model import StatsSnapshot

PREFIX: Final = "echoes_redis_"

Samples = Sequence[tuple[dict[str, str], float]]


class Exposition(Collector):
    """Metric families under :data:`PREFIX`, built one by one, rendered by prometheus-client
    (which escapes help texts and label values)."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def metric(self, name: str, kind: str, help_text: str, samples: Samples | float | None) -> None:
        """One family (``kind`` gauge or counter; a counter's ``name`` ends in ``_total``);
        ``samples`` a bare number for one unlabelled sample, None for no family at all."""
        if samples is None:
            return
        if not isinstance(samples, Sequence):
            samples = [({}, samples)]
        full = PREFIX + name
        labels = list(samples[0][0]) if samples else []
        family: Metric
        if kind == "counter":
            family = CounterMetricFamily(full, help_text, labels=labels)
        elif kind == "gauge":
            family = GaugeMetricFamily(full, help_text, labels=labels)
        else:
            raise ValueError(f"unknown metric kind {kind!r}")
        for values, value in samples:
            family.add_metric([values[label] for label in labels], float(value))
        self.families.append(family)

    def extend(self, other: Exposition) -> None:
        self.families.extend(other.families)

    def collect(self) -> Iterator[Metric]:
        """The families (so an Exposition is a collector prometheus-client can render)."""
        return iter(self.families)

    def text(self) -> str:
        """The text exposition format, version 0.0.4."""
        return generate_latest(self).decode("utf-8")


def prometheus_text(s: StatsSnapshot) -> str:
    """The snapshot in the Prometheus text exposition format (version 0.0.4): base units
    (bytes, seconds), ``_total`` counters, labels for family and bucket."""
    return stats_exposition(s).text()


def stats_exposition(s: StatsSnapshot) -> Exposition:
    """The snapshot's metric families."""
    out = Exposition()
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
    return out
