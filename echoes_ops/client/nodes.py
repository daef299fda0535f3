"""Work that runs per node: on one server that node is the server, on a cluster every
primary (or, for reads that may lag, every replica).

Single-node code (SCAN walks, per-node Lua census steps, :func:`echoes_ops.client.bulk.bulk`,
:mod:`echoes_ops.client.rawscan`) runs unchanged on each node's own plain :class:`Redis`
client; :func:`each_primary` runs it on every primary in parallel and returns the results
in node order, for the caller to merge. A key is counted once by the caller (a key being
migrated can be seen on two nodes: dedupe by key).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from echoes_ops.client.connect import AnyRedis, TierCluster
from echoes_ops.client.errors import on_node

T = TypeVar("T")

PRIMARIES = "primaries"
REPLICAS = "replicas"


@dataclass(frozen=True)
class Node:
    """One node a per-node step runs on: its ``host:port`` name and a plain client."""

    name: str
    client: Redis
    role: str  # "primary" or "replica"


def _sorted(nodes: list[ClusterNode]) -> list[ClusterNode]:
    return sorted(nodes, key=lambda n: (n.host, int(n.port)))


async def cluster_nodes(r: RedisCluster, *, replicas: bool = False) -> list[ClusterNode]:
    """The cluster's primaries (or replicas) as the client knows them, sorted by address."""
    await r.initialize()
    return _sorted(r.get_replicas() if replicas else r.get_primaries())


def node_client(r: RedisCluster, node: ClusterNode) -> Redis:
    """A plain client on one node of ``r``'s cluster."""
    if not isinstance(r, TierCluster):
        raise TypeError("per-node work needs a client from echoes_ops.client.connect")
    return r.node_client(node)


async def primary_nodes(r: AnyRedis) -> list[Node]:
    """One :class:`Node` per primary, in address order (``[r]`` itself on one server)."""
    if not isinstance(r, RedisCluster):
        return [Node(address_of(r), r, "primary")]
    return [Node(node.name, node_client(r, node), "primary") for node in await cluster_nodes(r)]


async def replica_nodes(r: AnyRedis) -> list[Node]:
    """One :class:`Node` per replica of a cluster, in address order (none on one server:
    a standalone or Sentinel client reaches the primary only)."""
    if not isinstance(r, RedisCluster):
        return []
    return [
        Node(node.name, node_client(r, node), "replica")
        for node in await cluster_nodes(r, replicas=True)
    ]


async def primary_clients(r: AnyRedis) -> list[Redis]:
    """A plain per-node client for every primary (``[r]`` on one server)."""
    return [node.client for node in await primary_nodes(r)]


async def each_primary(r: AnyRedis, fn: Callable[[Redis], Awaitable[T]]) -> list[T]:
    """``fn(node_client)`` on every primary in parallel; the results in node order. The
    first failure is raised once every call has ended (none is left running)."""
    return await each_node(await primary_clients(r), fn)


async def each_node(clients: list[Redis], fn: Callable[[Redis], Awaitable[T]]) -> list[T]:
    """``fn(client)`` for each client in parallel; results in order, the first error raised
    after all have ended, marked with the node it came from (the node that failed, not the
    seed address, is what an operator must look at)."""
    if len(clients) == 1:
        return [await fn(clients[0])]
    results = await asyncio.gather(*(fn(c) for c in clients), return_exceptions=True)
    for client, result in zip(clients, results, strict=True):
        if isinstance(result, BaseException):
            raise on_node(result, address_of(client))
    return list(results)  # type: ignore[arg-type]


def address_of(r: Redis) -> str:
    """``host:port`` (or the socket path) a plain client connects to."""
    kwargs = r.connection_pool.connection_kwargs
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"


async def walk_clients(r: AnyRedis) -> list[Redis]:
    """Where a keyspace walk reads: a client per primary, or with ``--read-from replicas``
    (ECHOES_OPS_READ_FROM) a client on one replica of each primary (the primary itself for
    one without a replica); ``[r]`` on one server."""
    if not isinstance(r, TierCluster) or r.node_target.read_from != REPLICAS:
        return await primary_clients(r)
    await r.initialize()
    replicas: dict[str, ClusterNode] = {}
    for nodes in r.nodes_manager.slots_cache.values():
        if nodes and nodes[0].name not in replicas and len(nodes) > 1:
            replicas[nodes[0].name] = nodes[1]
    out: list[Redis] = []
    for primary in await cluster_nodes(r):
        replica = replicas.get(primary.name)
        if replica is None:
            out.append(node_client(r, primary))
        else:
            out.append(r.node_client(replica, replica=True))
    return out
