"""Which topology a client talks to, in one line every command can print:
``standalone``, ``sentinel <master>``, ``cluster 3 primaries / 3 replicas``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool

from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.nodes import address_of, cluster_nodes

STANDALONE = "standalone"
SENTINEL = "sentinel"
CLUSTER = "cluster"


@dataclass(frozen=True)
class Topology:
    kind: str  # standalone, sentinel or cluster
    label: str  # one line: "cluster 3 primaries / 3 replicas"
    primaries: tuple[str, ...]  # host:port of each primary, address order
    replicas: tuple[str, ...] = ()  # host:port of each replica the client knows of
    master_name: str | None = None  # Sentinel's name for the primary

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cluster_label(primaries: int, replicas: int) -> str:
    one = "primary" if primaries == 1 else "primaries"
    two = "replica" if replicas == 1 else "replicas"
    return f"cluster {primaries} {one} / {replicas} {two}"


async def describe(r: AnyRedis) -> Topology:
    """The topology ``r`` talks to, from what the client knows (a cluster client's slot map,
    a Sentinel pool's master name); no server round trip beyond the cluster's first
    discovery."""
    if isinstance(r, RedisCluster):
        primaries = [n.name for n in await cluster_nodes(r)]
        replicas = [n.name for n in await cluster_nodes(r, replicas=True)]
        return Topology(
            CLUSTER, cluster_label(len(primaries), len(replicas)), tuple(primaries), tuple(replicas)
        )
    pool = r.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        name = str(pool.service_name)
        return Topology(SENTINEL, f"sentinel {name}", (), master_name=name)
    return Topology(STANDALONE, STANDALONE, (address_of(r),))
