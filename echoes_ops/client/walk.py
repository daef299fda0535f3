"""Walking the keyspace of every primary, with exact results while slots move.

A per-node walk (SCAN steps, Lua census steps) runs on every primary in parallel
(:func:`walk_primaries`). A key stays on one node for the whole walk unless its slot moves
meanwhile (a resharding: ``CLUSTER SETSLOT ... MIGRATING``/``IMPORTING`` and ``MIGRATE``), and
then SCAN may miss it on both nodes (gone from the source before the source's cursor got
there, arrived on the target after the target's cursor passed). So the primaries' slot map is
read before and after the walk; the slots that were moving at either end or changed owner
(:func:`~echoes_ops.client.slotmap.unstable_slots`) are read again once the walk is done, key
by key (:func:`keys_in_slots`: ``CLUSTER COUNTKEYSINSLOT``/``GETKEYSINSLOT``, the source
before the target, so a key that moves in between is seen at least once), and the caller
replaces what the walk found in those slots by what that read finds. On one server there
is no slot map and nothing is read again.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from echoes_ops.client.bulk import bulk
from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.nodes import each_node, node_client, walk_clients
from echoes_ops.client.slotmap import SlotState, slot_state, unstable_slots
from echoes_ops.client.slots import slot_of
from echoes_ops.errors import BusyError

T = TypeVar("T")

# The most keys one moved slot may hold for the walk to re-read it exactly (a slot holds ~60
# keys per million keys in the cluster); GETKEYSINSLOT has no cursor, so a fuller slot makes
# the walk fail with one line rather than answer short.
SLOT_KEYS_MAX = 10_000


@dataclass(frozen=True)
class PrimaryWalk(Generic[T]):
    """What a walk found on each primary (node order), and the slots to read again."""

    results: list[T]
    unstable: frozenset[int]
    state: SlotState | None  # the slot map after the walk (None on one server)

    def stable(self, key: str | bytes) -> bool:
        """Whether ``key``'s reading from the walk stands (its slot did not move)."""
        return not self.unstable or slot_of(key) not in self.unstable


async def walk_primaries(r: AnyRedis, fn: Callable[[Redis], Awaitable[T]]) -> PrimaryWalk[T]:
    """``fn(node)`` on every primary in parallel, with the slots that moved meanwhile."""
    if not isinstance(r, RedisCluster):
        return PrimaryWalk([await fn(r)], frozenset(), None)
    before = await slot_state(r)
    results = await each_node(await walk_clients(r), fn)
    after = await slot_state(r)
    return PrimaryWalk(results, unstable_slots(before, after), after)


async def keys_in_slots(
    r: AnyRedis, walk: PrimaryWalk[Any], *, match: str | None = None
) -> list[str]:
    """Every key now in the walk's unstable slots (matching the glob ``match``), each once."""
    if not walk.unstable or walk.state is None or not isinstance(r, RedisCluster):
        return []
    # read a moving slot's source before its target
    plan: dict[str, list[int]] = {}  # node address -> slots, in reading order
    later: dict[str, list[int]] = {}
    for slot in sorted(walk.unstable):
        move = walk.state.moves.get(slot)
        if move is not None:
            source, target = move
            plan.setdefault(walk.state.addresses.get(source, ""), []).append(slot)
            later.setdefault(walk.state.addresses.get(target, ""), []).append(slot)
        else:
            owner = walk.state.owners.get(slot)
            if owner is not None:
                plan.setdefault(walk.state.addresses.get(owner, ""), []).append(slot)
    found: dict[str, None] = {}
    for stage in (plan, later):
        for address, slots in stage.items():
            if not address:
                continue
            for key in await _node_slot_keys(_address_client(r, address), slots):
                found.setdefault(key, None)
    keys = list(found)
    if match is not None:
        keys = [k for k in keys if fnmatch.fnmatchcase(k, match)]
    return keys


def _address_client(r: RedisCluster, address: str) -> Redis:
    host, _, port = address.rpartition(":")
    return node_client(r, ClusterNode(host, int(port)))


async def _node_slot_keys(node: Redis, slots: Iterable[int]) -> list[str]:
    wanted = list(slots)
    counts = await bulk(node, [("CLUSTER", "COUNTKEYSINSLOT", slot) for slot in wanted])
    full = [slot for slot, n in zip(wanted, counts, strict=True) if int(n) > SLOT_KEYS_MAX]
    if full:
        raise BusyError(
            f"slot {full[0]} moved during the walk and holds more than {SLOT_KEYS_MAX:,} keys: "
            "it cannot be re-read exactly",
            hint="run the command again once the resharding is over",
        )
    calls = [
        ("CLUSTER", "GETKEYSINSLOT", slot, int(n))
        for slot, n in zip(wanted, counts, strict=True)
        if int(n) > 0
    ]
    keys: list[str] = []
    for reply in await bulk(node, calls):
        keys.extend(str(k) for k in reply)
    return keys
