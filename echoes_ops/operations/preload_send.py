"""Sending a preload's commands on either topology, and telling which one it is: what the
unchanged check (:func:`all_present`), the stepped writer (:mod:`~echoes_ops.operations.preload_online`) and its
verify pass share. Kept apart from the writer so that a preload of an unchanged world
imports none of it (#17: such a run is all start-up).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ClusterDownError,
    MaxConnectionsError,
    RedisClusterException,
    SlotNotCoveredError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from echoes_ops.client.bulk import READ_STEP, Command, bulk
from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.pacing import Pacer
from echoes_ops.client.slots import group_by_slot
from echoes_ops.contract import keys

# Redis Cluster: how long a round is tried again while a failover runs (a primary gone, its
# replica not yet promoted: cluster-node-timeout plus the election). Every command of a
# round rewrites the same value, so sending a round again is harmless.
FAILOVER_WAIT_S = 30.0
FAILOVER_PAUSE_S = 0.25
FAILOVER_ERRORS = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    SlotNotCoveredError,
    RedisClusterException,
)
NOT_FAILOVER = (AuthenticationError, AuthorizationError, MaxConnectionsError)


def is_cluster(r: AnyRedis) -> bool:
    return isinstance(r, RedisCluster)


async def send(
    r: AnyRedis,
    commands: Sequence[Command],
    *,
    reads: bool = False,
    step: int | None = None,
    pacer: Pacer | None = None,
    pacers: dict[str, Pacer] | None = None,
    burst: bool = False,
) -> list[Any]:
    """Send ``commands`` and return their replies in order, errors in place. One server:
    streamed on one connection (``client.bulk``); ``reads``: in paced steps of
    ``READ_STEP``, one in flight; ``step``: in paced steps of that many (the stepped
    writer's calls, each already about the budget: one at a time, the server idle between
    them while the game uses it; the unchanged check's EXISTS calls, two at a time);
    ``pacer``: the pacing of a whole pass of several sends (else one per send, which paces
    its first steps until it has looked at the server twice). Redis Cluster: ``reads`` and ``step`` the same per node, each primary's share
    in its own paced steps (``pacers``: by node name, the pacing of a whole pass, as
    ``client.bulk`` keeps it); otherwise one non-transactional pipeline, which redis-py
    routes per node and retries on MOVED/ASK and failover. Either way, while a failover
    runs the whole call is sent again (:func:`_send_cluster`). ``burst`` (one server):
    ``client.bulk``'s, the rest in one pipeline once the tier is seen quiet."""
    if not commands:
        return []
    stepped = reads or step is not None
    chunk = READ_STEP if step is None else step
    if isinstance(r, RedisCluster):
        return await _send_cluster(r, commands, chunk=chunk if stepped else None, pacers=pacers)
    if stepped:
        return await bulk(
            r, commands, chunk=chunk, stepped=True, raise_on_error=False, pacer=pacer, burst=burst
        )
    return await bulk(r, commands, raise_on_error=False)


async def _send_cluster(
    r: RedisCluster,
    commands: Sequence[Command],
    *,
    chunk: int | None = None,
    pacers: dict[str, Pacer] | None = None,
) -> list[Any]:
    """One pipeline, or with ``chunk`` paced steps of that many commands per node
    (``client.bulk``, which sends a command MOVED meanwhile again through redis-py); while
    a failover runs (a node unreachable, the cluster down), the whole call again after
    ``FAILOVER_PAUSE_S`` (the stepped sends with the cluster's slot map read again: the
    promoted replica takes the dead primary's slots), until ``FAILOVER_WAIT_S``. Then the
    last error is raised."""
    deadline = time.monotonic() + FAILOVER_WAIT_S
    while True:
        try:
            replies = await _send_cluster_once(r, commands, chunk, pacers)
        except NOT_FAILOVER:
            raise
        except (*FAILOVER_ERRORS, TimeoutError):
            if time.monotonic() >= deadline:
                raise
            await _after_failure(r, chunk)
            continue
        failing = [
            x for x in replies if isinstance(x, FAILOVER_ERRORS) and not isinstance(x, NOT_FAILOVER)
        ]
        if failing and time.monotonic() < deadline:
            await _after_failure(r, chunk)
            continue
        return replies


async def _send_cluster_once(
    r: RedisCluster, commands: Sequence[Command], chunk: int | None, pacers: dict[str, Pacer] | None
) -> list[Any]:
    if chunk is not None:
        return await bulk(
            r, commands, chunk=chunk, stepped=True, raise_on_error=False, pacers=pacers
        )
    pipe = r.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    return list(await pipe.execute(raise_on_error=False))


async def _after_failure(r: RedisCluster, chunk: int | None) -> None:
    """The pause before a call is sent again; for the stepped sends (their own per-node
    connections, outside redis-py's retries) the slot map read again, if a node answers."""
    await asyncio.sleep(FAILOVER_PAUSE_S)
    if chunk is None:
        return
    try:
        await r.nodes_manager.initialize()
    except NOT_FAILOVER:
        raise
    except (*FAILOVER_ERRORS, TimeoutError):
        return  # no node answered yet: the next send fails the same way and comes back


# keys per EXISTS (this check, and the verify after a write): on a tier of 1M keys an EXISTS
# of 1,000 held the server 0.56-0.97 ms, at the edge of the 1 ms budget (#16)
EXISTS_BATCH = 250
# EXISTS calls per step of the unchanged check on one server: 500 keys, about 0.3-0.5 ms of
# the server on a tier of 1M keys (the EXISTS of 1,000 above), one step in flight, paced
EXISTS_STEP = 2


async def all_present(r: AnyRedis, static_keys: list[str]) -> bool:
    """Whether every static key still exists (eviction or a manual delete makes a gap
    that an unchanged version record would hide). EXISTS of ``EXISTS_BATCH`` keys a call;
    ``EXISTS_STEP`` calls a step (per node on a cluster), paced like every stepped walk
    (the whole check as one pipeline held the server back to back: 88 calls for 22,000
    keys). Once a look finds the tier quiet the rest goes as one pipeline (``burst``): one
    step in flight at a time cost an unchanged preload of 220,000 keys about 90 ms of round
    trips, where #17's goal for the whole command is 0.4 s."""
    wanted = [*static_keys, keys.LOCATION_INDEX_KEY]
    groups = list(group_by_slot(wanted).values()) if is_cluster(r) else [wanted]
    commands: list[Command] = [
        ("EXISTS", *group[i : i + EXISTS_BATCH])
        for group in groups
        for i in range(0, len(group), EXISTS_BATCH)
    ]
    replies = await send(r, commands, step=EXISTS_STEP, burst=True)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return sum(int(n) for n in replies) == len(wanted)
