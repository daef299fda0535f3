"""Bounded key iteration and batched reads.

Every walk over the keyspace goes through :func:`scan_keys` (SCAN with COUNT, never KEYS);
on Redis Cluster it scans every primary. Reads of many keys go through pipelines of at most
``batch`` commands, so no single round trip or server command grows with the data.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoPermissionError, ResponseError

from echoes_ops.client.budget import StepBudget
from echoes_ops.client.bulk import bulk
from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.pacing import PacedLine, Pacer, pacer_of
from echoes_ops.client.walk import PrimaryWalk, keys_in_slots, walk_primaries

DEFAULT_SCAN_COUNT = 1000  # the most keys one SCAN step may visit
DEFAULT_BATCH = 1000
SCAN_FIRST = 200  # the first step of a walk: well inside the budget on any server
SCAN_LOW = 200  # the smallest step, however long the round trips: ~0.5 ms of server time
# what a plain SCAN step aims at: below the Lua steps' target, because a SCAN's cost per key
# varies more from step to step (empty buckets, MATCH) and its round trip is all it says
SCAN_TARGET_S = 0.0005

__all__ = [
    "AnyRedis",
    "chunks",
    "collect_keys",
    "hgetall_many",
    "pipelined",
    "scan_budget",
    "scan_keys",
    "scan_node",
    "scan_steps",
]


async def scan_keys(
    r: AnyRedis,
    match: str,
    *,
    count: int = DEFAULT_SCAN_COUNT,
    type_: str | None = None,
) -> AsyncIterator[list[str]]:
    """Yield batches of keys matching ``match``. Keys may repeat (SCAN's guarantee; on a
    cluster, also a key seen on two nodes while its slot moves): dedupe by key.

    On a cluster every primary is walked in parallel, batches yielded as they come; then
    the keys of slots that moved during the walk are read again and yielded last
    (client/walk.py), so every key that existed throughout is yielded at least once."""
    if not isinstance(r, RedisCluster):
        async for batch in scan_node(r, match, count=count, type_=type_):
            yield batch
        return
    queue: asyncio.Queue[list[str]] = asyncio.Queue(maxsize=8)

    async def pump(node: Redis) -> None:
        async for batch in scan_node(node, match, count=count, type_=type_):
            await queue.put(batch)

    task = asyncio.create_task(walk_primaries(r, pump))
    try:
        while not task.done() or not queue.empty():
            if not queue.empty():
                yield queue.get_nowait()
                continue
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield getter.result()
            else:
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
        walk: PrimaryWalk[None] = task.result()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    moved = await keys_in_slots(r, walk, match=match)
    if moved and type_ is not None:
        types = await bulk(r, [("TYPE", key) for key in moved])
        moved = [k for k, t in zip(moved, types, strict=True) if str(t) == type_]
    if moved:
        yield moved


def scan_budget(count: int = DEFAULT_SCAN_COUNT) -> StepBudget:
    """The step sizes of a plain SCAN walk (issue #16's budget): from ``SCAN_FIRST`` keys,
    never more than ``count``, each step sized by the last ones' round trips. A bare SCAN
    cannot report its own server time, so its round trip stands for it: an upper bound,
    which only ever makes the steps smaller than they could be."""
    return StepBudget(
        size=min(SCAN_FIRST, count), target=SCAN_TARGET_S, low=min(SCAN_LOW, count), high=count
    )


async def scan_node(
    r: Redis,
    match: str,
    *,
    count: int = DEFAULT_SCAN_COUNT,
    type_: str | None = None,
    pacer: Pacer | None = None,
) -> AsyncIterator[list[str]]:
    """SCAN one node (one server, or one node of a cluster through its own client), each
    step sized by :func:`scan_budget` (at most ``count`` keys) and paced (:func:`scan_steps`)."""
    extra: tuple[str, ...] = ("MATCH", match, *(("TYPE", type_) if type_ is not None else ()))
    async for batch in scan_steps(r, extra, count=count, pacer=pacer):
        yield [str(k) for k in batch]


async def scan_steps(
    r: Redis,
    extra: tuple[str, ...],
    *,
    count: int = DEFAULT_SCAN_COUNT,
    raw: bool = False,
    pacer: Pacer | None = None,
    calls: list[int] | None = None,
) -> AsyncIterator[list[Any]]:
    """``SCAN cursor COUNT size *extra`` from cursor 0 to the end on one connection of
    ``r``'s pool, yielding each non-empty batch (as bytes with ``raw``, else as ``r``
    decodes). Each step is sized by :func:`scan_budget` and paced like the Lua walks
    (client/pacing.PacedLine; ``pacer``: one at ``r``'s duty cycle when not given): while
    others use the server it stays idle between steps, while the tier is quiet the walk runs
    at full speed. ``calls``, if given, gets a 1 appended per command sent: each SCAN (empty
    steps included) and each look (``INFO stats``). Leaving the walk early discards the connection (a reply may still be due)."""
    budget = scan_budget(count)
    pool = r.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    line = PacedLine(conn, pacer if pacer is not None else pacer_of(r), calls)
    cursor: Any = 0
    try:
        while True:
            size = budget.size
            await line.write(hiredis.pack_command(("SCAN", cursor, "COUNT", size, *extra)))
            reply = await conn.read_response(disable_decoding=raw)
            came = await line.came()
            if isinstance(reply, ResponseError):
                raise reply
            held = came - line.sent
            budget.observe(size, held)
            if calls is not None:
                calls.append(1)
            cursor, batch = reply
            if batch:
                yield batch
            if int(cursor) == 0:
                return
            await line.rest(came, held)
    except BaseException:
        await conn.disconnect()  # a reply may still be in flight: never reuse the connection
        raise
    finally:
        await pool.release(conn)


async def collect_keys(
    r: AnyRedis, match: str, *, count: int = DEFAULT_SCAN_COUNT, type_: str | None = None
) -> set[str]:
    """All keys matching ``match`` (deduplicated)."""
    found: set[str] = set()
    async for batch in scan_keys(r, match, count=count, type_=type_):
        found.update(batch)
    return found


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def pipelined(
    r: AnyRedis, calls: Sequence[tuple[str, tuple[Any, ...]]], *, batch: int = DEFAULT_BATCH
) -> list[Any]:
    """Run ``(command, args)`` calls in non-transactional pipelines of ``batch``.

    Error replies come back as exception objects in the result list (not raised), so one
    bad key does not hide the others' answers; an ACL refusal is raised (a read this user
    may not make is not "no data").
    """
    results: list[Any] = []
    for part in chunks(calls, batch):
        pipe = r.pipeline(transaction=False)
        for name, args in part:
            getattr(pipe, name)(*args)
        replies = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, NoPermissionError):
                raise reply
        results.extend(replies)
    return results


async def hgetall_many(
    r: AnyRedis, keys: Sequence[str], *, batch: int = DEFAULT_BATCH
) -> list[dict[str, str]]:
    results = await pipelined(r, [("hgetall", (k,)) for k in keys], batch=batch)
    return [res if isinstance(res, dict) else {} for res in results]
