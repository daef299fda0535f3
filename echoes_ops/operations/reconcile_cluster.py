"""Reconcile on Redis Cluster (docs/design.md, guarantees per topology).

The census runs on every primary in parallel (each node's own Lua SCAN steps, sized by the
server-time budget) and is merged, a key seen on two nodes during a slot migration counted
once. Repairs whose keys lie in different slots (a presence set and a session, a session and
its worker's connections) cannot re-check one key and change another atomically; on a
cluster they act only on findings seen twice, ``--grace`` apart (a second pass confirms each
one), and each change is one call on the key it changes that re-checks that key
(``contract/repair_scripts.py``), the other key re-read just before it. A repair of one key
(a missing TTL) needs no second sighting.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio.cluster import RedisCluster

from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.nodes import each_primary
from echoes_ops.contract import keys, repair_scripts
from echoes_ops.operations.stop import StopToken
from echoes_ops.operations.tiermap import Census, census

# repairs whose keys lie in different slots on a cluster
CROSS_SLOT_KINDS = frozenset(
    {"orphan_member", "location_mismatch", "missing_member", "dead_worker", "stale_connection"}
)
NOTE = (
    "Redis Cluster: repairs across slots (presence, dead workers, connections) act only on "
    "findings seen in two passes {grace:g} s apart, and each change re-checks the key it "
    "changes in the call that changes it"
)


def is_cluster(r: AnyRedis) -> bool:
    return isinstance(r, RedisCluster)


async def census_all(r: AnyRedis, *, count: int) -> Census:
    """One census per primary, in parallel, merged (one server: the census)."""
    if not is_cluster(r):
        return await census(r, count=count)
    parts = await each_primary(r, lambda node: census(node, count=count))
    merged = Census()
    for part in parts:
        merged.scanned += part.scanned
        merged.sessions.update(part.sessions)  # a key seen on two nodes counts once
        merged.presence.update(part.presence)
        merged.inventories.update(part.inventories)
        merged.locks.update(part.locks)
        merged.worker_metas |= part.worker_metas
        merged.worker_connections |= part.worker_connections
    return merged


async def wait_for_second_pass(started: float, grace: float, stop: StopToken) -> None:
    """Sleep until ``grace`` seconds after ``started`` (monotonic), checking ``stop``."""
    while (left := started + grace - time.monotonic()) > 0:
        stop.check("nothing repaired (stopped while waiting for the confirming pass)")
        await asyncio.sleep(min(left, 0.2))


async def apply_one(r: AnyRedis, kind: str, key_list: list[str], args: list[str]) -> int:
    """One cross-slot repair as calls of one key each; 1 if it changed something.

    The arguments are those of the single-node script of ``kind`` (reconcile.py builds
    them); here they are taken apart into per-key calls."""
    if kind == "orphan_member":
        presence, session = key_list
        if await r.exists(session):
            return 0
        return int(await r.srem(presence, args[0]))
    if kind == "location_mismatch":
        presence, session = key_list
        cid, set_location = args[0], args[1]
        named = await r.hget(session, "location_id")
        if not named or named == set_location:
            return 0
        return int(await r.srem(presence, cid))
    if kind == "missing_member":
        presence, session = key_list
        cid, wanted = args[0], args[1]
        if await r.hget(session, "location_id") != wanted:
            return 0
        return int(await r.sadd(presence, cid))
    if kind == "dead_worker":
        session, connections = key_list
        cid, worker = args[0], args[1]
        release = r.register_script(repair_scripts.RELEASE_SESSION_OF_WORKER)
        was_at: Any = await release(keys=[session], args=[worker])
        await r.hdel(connections, cid)
        if was_at is None:
            return 0
        was_in = _presence_key(str(was_at))
        if was_in is not None:
            await r.srem(was_in, cid)
        return 1
    if kind == "stale_connection":
        connections, session = key_list
        field_name, worker = args[0], args[1]
        if session != connections and await r.hget(session, "worker_id") == worker:
            return 0
        return int(await r.hdel(connections, field_name))
    raise ValueError(f"not a cross-slot repair: {kind}")


def _presence_key(location: str) -> str | None:
    """The presence set of ``location``; None for no location or an id no key can be built
    from (there is no set to clean then)."""
    if not location:
        return None
    try:
        return keys.presence_key(location)
    except ValueError:
        return None
