"""A stats snapshot in the Prometheus text exposition format (version 0.0.4)."""

from __future__ import annotations

import math
from typing import Final

from echoes_ops.operations.stats.model import StatsSnapshot

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
