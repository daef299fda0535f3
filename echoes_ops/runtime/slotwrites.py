"""A worker's multi-key writes: one MULTI/EXEC on one server, one per hash slot on a cluster.

On one server (or the Sentinel primary) the commands of a :class:`Transaction` go in one
MULTI/EXEC, as before: all or nothing. On Redis Cluster a transaction may only touch keys of
one slot, and the contract's keys carry no hash tags (a player's session, its location set
and its worker's connections hash live in three slots), so the commands are grouped by the
slot of their key: each group is one MULTI/EXEC (atomic), the groups run one after another
in the order their first command was added. A failure between groups leaves the earlier
groups applied and the later ones not: callers add their commands so that such a prefix is
drift that ``reconcile`` reports and repairs (docs/design.md, "Guarantees per topology";
each Tier method says which prefix it can leave).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from echoes_ops.client.connect import AnyRedis

Queue = Callable[[Any], object]  # queues one command on a (transaction) pipeline


class Transaction:
    """Commands on keys, applied atomically per slot (everything at once on one server)."""

    def __init__(self, r: AnyRedis) -> None:
        self.r = r
        self._ops: list[tuple[str, Queue]] = []

    def add(self, key: str, queue: Queue) -> Transaction:
        """``queue(pipe)`` queues one command on ``key``; returns self for chaining."""
        self._ops.append((key, queue))
        return self

    def groups(self) -> list[list[int]]:
        """The commands as they will run (indexes of :meth:`add` calls): one list per
        MULTI/EXEC, in order."""
        if not isinstance(self.r, RedisCluster):
            return [list(range(len(self._ops)))] if self._ops else []
        by_slot: dict[int, list[int]] = {}
        for n, (key, _queue) in enumerate(self._ops):
            by_slot.setdefault(int(key_slot(key.encode("utf-8"))), []).append(n)
        return list(by_slot.values())

    async def execute(self) -> list[Any]:
        """Run every group; the replies in the order the commands were added."""
        replies: list[Any] = [None] * len(self._ops)
        for group in self.groups():
            pipe = self.r.pipeline(transaction=True)
            for n in group:
                self._ops[n][1](pipe)
            for n, reply in zip(group, await pipe.execute(), strict=True):
                replies[n] = reply
        return replies
