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

from echoes_ops.client.budget import TARGET_S, StepBudget
from echoes_ops.client.bulk import bulk
from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.walk import keys_in_slots, walk_primaries
from echoes_ops.contract import codec, keys, repair_scripts
from echoes_ops.operations.stop import StopToken
from echoes_ops.operations.tiermap import Census, SessionBrief, census

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


async def census_all(r: AnyRedis, *, count: int, target: float = TARGET_S) -> Census:
    """One census per primary, in parallel, merged (one server: the census). A key is
    counted once; the keys of slots that moved while the census ran (a resharding) are left
    out of the nodes' readings and read again afterwards (``client/walk.py``). ``target``:
    the server time each step aims at (its first step is ``count`` keys)."""
    if not is_cluster(r):
        return await census(r, count=count, budget=StepBudget(count, target=target))
    walk = await walk_primaries(
        r, lambda node: census(node, count=count, budget=StepBudget(count, target=target))
    )
    merged = Census()
    stable = walk.stable
    for part in walk.results:
        merged.scanned += part.scanned
        if not walk.unstable:  # no slot moved (the usual case): every reading stands
            merged.sessions.update(part.sessions)
            merged.presence.update(part.presence)
            merged.inventories.update(part.inventories)
            merged.locks.update(part.locks)
            merged.worker_metas |= part.worker_metas
            merged.worker_connections |= part.worker_connections
            continue
        for cid, brief in part.sessions.items():
            if stable(keys.session_key(cid)):
                merged.sessions[cid] = brief
        for loc, found in part.presence.items():
            if stable(found[0]):
                merged.presence[loc] = found
        merged.inventories.update((k, t) for k, t in part.inventories.items() if stable(k))
        merged.locks.update((k, t) for k, t in part.locks.items() if stable(k))
        merged.worker_metas |= {w for w in part.worker_metas if stable(keys.worker_meta_key(w))}
        merged.worker_connections |= {
            w for w in part.worker_connections if stable(keys.worker_connections_key(w))
        }
    moved = await keys_in_slots(r, walk)
    if moved:
        await _census_keys(r, moved, merged)
    return merged


async def _census_keys(r: AnyRedis, names: list[str], into: Census) -> None:
    """What the census reads of each of ``names`` (keys of slots that moved), one command
    per key, pipelined per slot: sessions (fields and TTL), presence sets (size),
    inventories and locks (TTL), worker keys (their existence)."""
    now = time.time()  # (the keys are counted already: scanned is each node's DBSIZE)
    commands: list[tuple[Any, ...]] = []
    kinds: list[tuple[str, str]] = []
    for name in names:
        if keys.parse_session_key(name) is not None:
            commands += [("HMGET", name, "location_id", "worker_id", "last_heartbeat")]
            commands += [("TTL", name)]
            kinds.append(("s", name))
        elif keys.parse_presence_key(name) is not None:
            commands.append(("SCARD", name))
            kinds.append(("p", name))
        elif keys.parse_inventory_key(name) is not None:
            commands.append(("TTL", name))
            kinds.append(("i", name))
        elif keys.parse_lock_key(name) is not None:
            commands.append(("TTL", name))
            kinds.append(("l", name))
        elif (wid := keys.parse_worker_meta_key(name)) is not None:
            into.worker_metas.add(wid)
        elif (wid := keys.parse_worker_connections_key(name)) is not None:
            into.worker_connections.add(wid)
    replies = iter(await bulk(r, commands, raise_on_error=False))
    for code, name in kinds:
        reply = next(replies)
        if code == "s":
            ttl = next(replies)
            cid = keys.parse_session_key(name)
            if cid is not None and isinstance(reply, list) and isinstance(ttl, int):
                location, worker, beat = reply
                into.sessions[cid] = SessionBrief(
                    codec.decode_str(location),
                    codec.decode_str(worker),
                    codec.decode_epoch(beat, now=now),
                    ttl,
                )
        elif isinstance(reply, int):
            if code == "p":
                loc = keys.parse_presence_key(name)
                if loc is not None:
                    into.presence[loc] = (name, reply)
            elif code == "i":
                into.inventories[name] = reply
            else:
                into.locks[name] = reply


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
