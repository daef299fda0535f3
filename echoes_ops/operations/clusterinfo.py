"""INFO for the whole tier: one server's own, or every primary's of a cluster merged.

Counters, memory, clients and key counts add up across primaries (the tier's totals);
``run_id`` becomes the primaries' run ids joined, so any node restarting shows as a restart
to interval arithmetic; uptime is the shortest; a ratio (fragmentation) and the host memory
(``total_system_memory``: nodes may share a host) the largest; any other
text (version, policy, role) the first primary's.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.nodes import each_primary, primary_clients

_FIRST = frozenset({"redis_version", "maxmemory_policy", "role", "redis_mode", "os"})
_MIN = frozenset({"uptime_in_seconds", "uptime_in_days"})
# a host's size, not a total: nodes may share one host (a local cluster), and the host memory
# a node can grow into is its own host's, so the largest host is shown, never a sum
_MAX = frozenset({"total_system_memory"})


async def tier_info(r: AnyRedis, *sections: str) -> dict[str, Any]:
    """INFO (``sections``, or the default ones) for the tier: merged on a cluster."""
    if not isinstance(r, RedisCluster):
        return dict(await r.info(*sections) if sections else await r.info())
    infos = await each_primary(r, lambda node: node.info(*sections) if sections else node.info())
    return merge_info([dict(i) for i in infos])


def merge_info(infos: list[dict[str, Any]]) -> dict[str, Any]:
    if not infos:
        return {}
    merged: dict[str, Any] = {}
    for name in infos[0]:
        values = [info[name] for info in infos if name in info]
        merged[name] = _merge(name, values)
    return merged


def _merge(name: str, values: list[Any]) -> Any:
    first = values[0]
    if name == "run_id":
        return ",".join(str(v) for v in values)
    if name in _FIRST:
        return first
    if name in _MIN and all(isinstance(v, int) for v in values):
        return min(values)
    if name in _MAX and all(isinstance(v, int) for v in values):
        return max(values)
    if all(isinstance(v, dict) for v in values):  # db0: {keys, expires, avg_ttl}
        keys = set().union(*(v.keys() for v in values))
        return {k: _merge(k, [v[k] for v in values if k in v]) for k in keys}
    if all(isinstance(v, bool) for v in values):
        return first
    if all(isinstance(v, int) for v in values):
        return sum(values)
    if all(isinstance(v, int | float) for v in values):
        return max(values)
    return first


async def server_time(r: AnyRedis) -> float:
    """The server's clock (TIME), from the first primary on a cluster."""
    client = (await primary_clients(r))[0]
    seconds, micros = await client.time()
    return float(seconds) + float(micros) / 1e6


async def first_primary(r: AnyRedis) -> Redis:
    """A plain client for per-node reads whose answer is the same on every node (CONFIG GET,
    ACL WHOAMI): the server itself, or a cluster's first primary."""
    return (await primary_clients(r))[0]
