"""Bulk command streaming: many commands on one connection with C-packed protocol.

redis-py's pipeline spends most of its time in per-command Python bookkeeping. For bulk
work (preload, warmup, large pipelined reads) this module packs commands with
``hiredis.pack_command``, writes them in chunks on one pooled connection, keeps one chunk
in flight while reading the previous chunk's replies (so packing overlaps the server's
work), and returns the replies in order. Error replies do not desynchronise the
connection: every reply is read, and the first error is raised afterwards (or returned in
place, if asked). An ACL refusal is raised even then, unless the caller says it can do
without the reply (``allow_denied``): a read the user may not make is not "no data". Any
other failure discards the connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError, ResponseError

from echoes_ops.errors import Interrupted

Command = tuple[Any, ...]
DEFAULT_CHUNK = 2000


async def bulk(
    r: Redis,
    commands: Sequence[Command],
    *,
    chunk: int = DEFAULT_CHUNK,
    raise_on_error: bool = True,
    allow_denied: bool = False,
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> list[Any]:
    """Send ``commands`` and return their raw replies, in order.

    Replies are as the parser returns them (HGETALL is a flat list; see :func:`pairs`).
    With ``raise_on_error`` the first error reply is raised after all replies are read;
    without, error replies are returned in place, except an ACL refusal (raised unless
    ``allow_denied``). ``stop`` is asked before each chunk is sent: when it says so, the
    connection is closed (a MULTI not yet followed by EXEC is then discarded by the server)
    and :class:`Interrupted` is raised; what was sent before has been sent.
    """
    replies: list[Any] = []
    if not commands:
        return replies
    pool = r.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    # The parser's own read_response skips the per-reply timeout bookkeeping of
    # Connection.read_response (most of the cost at this volume); one timeout covers a chunk.
    parser = getattr(conn, "_parser", None)
    read: Callable[[], Awaitable[Any]] = (
        getattr(parser, "read_response", None) or conn.read_response
    )
    timeout = conn.socket_timeout
    try:
        in_flight = 0
        for start in range(0, len(commands), chunk):
            if stop is not None and stop():
                raise Interrupted(f"stopped with {start:,} of {len(commands):,} commands sent")
            part = commands[start : start + chunk]
            payload = b"".join([hiredis.pack_command(cmd) for cmd in part])
            await conn.send_packed_command(payload, check_health=False)
            if in_flight:
                await _read_replies(read, in_flight, replies, timeout)
                if progress:
                    progress(len(replies), len(commands))
            in_flight = len(part)
        await _read_replies(read, in_flight, replies, timeout)
        if progress:
            progress(len(replies), len(commands))
    except BaseException:
        # Replies may still be in flight: the connection cannot be reused.
        await conn.disconnect()
        raise
    finally:
        await pool.release(conn)
    for reply in replies:
        if isinstance(reply, ResponseError) and (
            raise_on_error or (not allow_denied and isinstance(reply, NoPermissionError))
        ):
            raise reply
    return replies


async def _read_replies(
    read: Callable[[], Awaitable[Any]], count: int, out: list[Any], timeout: float | None
) -> None:
    async with asyncio.timeout(timeout * 4 if timeout else None):
        for _ in range(count):
            try:
                reply = await read()
            except ResponseError as exc:
                reply = exc
            out.append(reply)


def pairs(reply: Any) -> dict[str, str]:
    """A flat ``[field, value, ...]`` HGETALL reply as a dict (``{}`` for errors)."""
    if isinstance(reply, dict):
        return reply
    if not isinstance(reply, list):
        return {}
    it = iter(reply)
    return dict(zip(it, it, strict=True))
