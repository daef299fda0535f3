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
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import hiredis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    MovedError,
    NoPermissionError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)

from echoes_ops.client.nodes import node_client
from echoes_ops.client.pacing import FIRST_LOOK, QUICK_LOOK, PacedLine, Pacer, pacer_of
from echoes_ops.client.slots import first_key, slot_of
from echoes_ops.errors import Interrupted

Command = tuple[Any, ...]
DEFAULT_CHUNK = 2000
# reads beside a live tier (preload's diff and verify, stats' and doctor's samples and TTL
# reads): chunks this small, one in flight. A probe's PING p99 during 22,000 pipelined
# HGETALLs was 8.0-13.6 ms with chunks of 2,000 (max 9-20) and 3.7-8.5 ms with 100 stepped
# (max 5-11; between the runs 4.4), the reads taking as long; during 22,000 TTLs and 3,000
# MEMORY USAGE 10.4-13.2 ms against 5.4-5.6 ms, ~0.1 s slower (docs/benchmarks/impact.md, #16)
READ_STEP = 100


ScriptCall = tuple[str, Sequence[Any], Sequence[Any]]  # (script text, keys, args)

Sent = TypeVar("Sent")


async def reloading(
    r: Redis | RedisCluster,
    scripts: Iterable[str],
    send: Callable[[Sequence[Sent]], Awaitable[list[Any]]],
    calls: Sequence[Sent],
) -> list[Any]:
    """``send(calls)`` (EVALSHA calls of ``scripts``, in any form ``send`` takes; it returns
    error replies in place) and its replies in order; the calls the server answered NOSCRIPT
    (its script cache flushed meanwhile: a restart, SCRIPT FLUSH, a promoted replica that
    never loaded them) are sent again once, after loading ``scripts`` again. A script's sha
    is the digest of its text, so the calls are resent as they are. A call refused with
    NOSCRIPT did not run."""
    replies = await send(calls)
    again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if again:
        for text in scripts:
            await r.script_load(text)  # SCRIPT LOAD reaches every primary of a cluster
        retried = await send([calls[i] for i in again])
        for i, reply in zip(again, retried, strict=True):
            replies[i] = reply
    return replies


async def bulk_scripts(
    r: Redis | RedisCluster, calls: Sequence[ScriptCall], shas: dict[str, str] | None = None
) -> list[Any]:
    """Run each (script, keys, args) as EVALSHA, all in one :func:`bulk` (routed by first key
    on a cluster), and return the replies in order, errors in place. Scripts are loaded once
    (``shas`` caches them across calls), and the calls the server answered NOSCRIPT are sent
    again once after loading their scripts again (:func:`reloading`)."""
    known = {} if shas is None else shas
    for text, _, _ in calls:
        if text not in known:
            known[text] = await r.script_load(text)
    commands = [
        ("EVALSHA", known[text], len(key_list), *key_list, *args) for text, key_list, args in calls
    ]

    async def send(part: Sequence[Command]) -> list[Any]:
        return await bulk(r, part, raise_on_error=False)

    return await reloading(r, {text for text, _, _ in calls}, send, commands)


async def bulk(
    r: Redis | RedisCluster,
    commands: Sequence[Command],
    *,
    chunk: int = DEFAULT_CHUNK,
    stepped: bool = False,
    raise_on_error: bool = True,
    allow_denied: bool = False,
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
    pacer: Pacer | None = None,
    looks: list[int] | None = None,
    pacers: dict[str, Pacer] | None = None,
    burst: bool = False,
) -> list[Any]:
    """Send ``commands`` and return their raw replies, in order.

    Replies are as the parser returns them (HGETALL is a flat list; see :func:`pairs`).
    With ``raise_on_error`` the first error reply is raised after all replies are read;
    without, error replies are returned in place, except an ACL refusal (raised unless
    ``allow_denied``).

    ``stepped``: a chunk is written only once the previous chunk's replies are in (one chunk
    in flight per server: short steps the server finishes before it goes idle; see
    :class:`StepConnection`), paced like every stepped walk (client/pacing.PacedLine: while
    others use the server it stays idle between chunks, a chunk's round trip standing for
    its server time; a quiet tier at full speed).
    ``pacer`` (one server): the pacing of a pass of several calls, so the gap after the last
    chunk is kept too; else one at the client's duty cycle for this call.
    ``pacers`` (cluster): by node name, the same for a pass of several calls; a node's pacer
    is taken from it, or made and put there, so a later call goes on at the pace its looks
    found instead of a new pacer's, which paces until its second look.
    ``burst`` (one server, ``stepped``): once a look finds the tier quiet (or pacing is off),
    the chunks left go as one pipeline: for a check whose wall time an operator waits on,
    which a quiet tier need not be spared.
    ``stop`` is asked before each chunk is sent: when it says so, the connection is closed (a
    MULTI not yet followed by EXEC is then discarded by the server) and :class:`Interrupted`
    is raised; what was sent before has been sent.
    """
    if isinstance(r, RedisCluster):
        replies = await _bulk_cluster(
            r,
            commands,
            chunk=chunk,
            stepped=stepped,
            progress=progress,
            stop=stop,
            looks=looks,
            pacers=pacers,
        )
    else:
        replies = await _bulk_one(
            r,
            commands,
            chunk=chunk,
            stepped=stepped,
            progress=progress,
            stop=stop,
            pacer=pacer,
            looks=looks,
            burst=burst,
        )
    for reply in replies:
        if isinstance(reply, ResponseError) and (
            raise_on_error or (not allow_denied and isinstance(reply, NoPermissionError))
        ):
            raise reply
    return replies


async def _bulk_one(
    r: Redis,
    commands: Sequence[Command],
    *,
    chunk: int,
    stepped: bool = False,
    progress: Callable[[int, int], None] | None,
    stop: Callable[[], bool] | None,
    pacer: Pacer | None = None,
    looks: list[int] | None = None,
    burst: bool = False,
) -> list[Any]:
    """Every reply, error replies in place, on one server."""
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
    line = None
    if stepped:
        # a walk that turns to one pipeline on a quiet tier looks again sooner
        own = pacer or pacer_of(r, first_look=QUICK_LOOK if burst else FIRST_LOOK)
        line = PacedLine(conn, own, looks)
    try:
        in_flight = 0
        for start in range(0, len(commands), chunk):
            if stop is not None and stop():
                raise Interrupted(f"stopped with {start:,} of {len(commands):,} commands sent")
            part = commands[start : start + chunk]
            payload = b"".join([hiredis.pack_command(cmd) for cmd in part])
            if line is not None:  # stepped: one chunk in flight, paced
                await line.write(payload)
                await _read_replies(read, len(part), replies, timeout)
                came = await line.came()
                if progress:
                    progress(len(replies), len(commands))
                if start + chunk < len(commands) or pacer is not None:
                    # a caller's pacer paces a pass of several calls: the gap after the
                    # last chunk is kept too, or the next call's first would follow it
                    await line.rest(came, came - line.sent)
                if burst and (not line.pacer.busy or line.pacer.duty >= 1):
                    line = None  # a quiet tier: the rest as one pipeline
                continue
            await conn.send_packed_command(payload, check_health=False)
            if in_flight:
                await _read_replies(read, in_flight, replies, timeout)
                if progress:
                    progress(len(replies), len(commands))
            in_flight = len(part)
        if in_flight:
            await _read_replies(read, in_flight, replies, timeout)
            if progress:
                progress(len(replies), len(commands))
    except BaseException:
        # Replies may still be in flight: the connection cannot be reused.
        await conn.disconnect()
        raise
    finally:
        await pool.release(conn)
    return replies


async def stepped_reads(
    r: Redis | RedisCluster, commands: Sequence[Command], *, allow_denied: bool = False
) -> tuple[list[Any], int]:
    """Reads beside a live tier: :func:`bulk` in paced steps of ``READ_STEP``, error replies
    in place (an ACL refusal too with ``allow_denied``); the replies and how many commands
    were sent (the reads and the pacing's looks: for callers that count their own)."""
    looks: list[int] = []
    replies = await bulk(
        r,
        commands,
        chunk=READ_STEP,
        stepped=True,
        raise_on_error=False,
        allow_denied=allow_denied,
        looks=looks,
    )
    return replies, len(commands) + len(looks)


class StepConnection:
    """Commands sent in short steps on one pooled connection of one server: a step (one
    command, or a few written at once) is written only after the previous step's replies
    are in (``async with StepConnection(r) as line: await line.calls([...])``).

    For a long run of short server commands that must each stay inside the command budget:
    with a whole pipeline queued, the server runs them back to back and the OS stops it in
    the middle of one whenever its time slice ends (a 0.5 ms command then lasts the slice of
    whatever ran instead, several milliseconds on a busy host); a server that goes idle
    between short steps starts each one afresh and finishes it. The caller overlaps its own
    work with the step in flight. Error replies are returned in place (an ACL refusal is
    raised); any other failure discards the connection.

    The steps are paced like every stepped walk (client/pacing.PacedLine; ``pacer``: one at
    ``r``'s duty cycle when not given): while others use the server, a step is written no
    sooner than the gap its predecessor asks for after its replies came (its round trip
    standing for its server time; the caller's own work meanwhile counts toward the gap);
    on a quiet server at full speed.
    """

    def __init__(self, r: Redis, pacer: Pacer | None = None) -> None:
        self._r = r
        self._conn: Any = None
        self._read: Callable[[], Awaitable[Any]] | None = None
        self._timeout: float | None = None
        self.pacer = pacer if pacer is not None else pacer_of(r)
        self._line: PacedLine | None = None
        self._last: tuple[float, float] | None = None  # the last step: (replies came, held)

    async def __aenter__(self) -> StepConnection:
        conn = await self._r.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        self._conn = conn
        self._line = PacedLine(conn, self.pacer)
        parser = getattr(conn, "_parser", None)
        self._read = getattr(parser, "read_response", None) or conn.read_response
        # one timeout bounds each call's write and read together (the connection's own
        # write timeout is off while this holds it: a timer less per call)
        self._timeout, conn.socket_timeout = conn.socket_timeout, None
        return self

    async def calls(self, commands: Sequence[Command]) -> list[Any]:
        """A few commands written at once, and their replies (error replies in place)."""
        return await self.packed([hiredis.pack_command(command) for command in commands])

    async def packed(self, commands: Sequence[bytes]) -> list[Any]:
        """:meth:`calls` of commands already in the wire protocol (RESP), one bytes each."""
        line, read = self._line, self._read
        assert line is not None
        assert read is not None
        if self._last is not None:
            await line.rest(*self._last)
        replies: list[Any] = []
        async with asyncio.timeout(self._timeout):
            await line.write(b"".join(commands))
            for _ in commands:
                try:
                    replies.append(await read())
                except ResponseError as exc:
                    replies.append(exc)
            came = await line.came()
        self._last = (came, came - line.sent)
        for reply in replies:
            if isinstance(reply, NoPermissionError):
                raise reply
        return replies

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        conn, self._conn = self._conn, None
        self._line, self._last = None, None
        if conn is None:
            return
        conn.socket_timeout = self._timeout
        try:
            if kind is not None:
                await conn.disconnect()  # a reply may still be in flight
        finally:
            await self._r.connection_pool.release(conn)


_REDIRECTED = (MovedError, AskError, TryAgainError)


def _units(commands: Sequence[Command]) -> list[tuple[int, int]]:
    """``commands`` as routing units ``(start, end)``: one command, or a whole
    MULTI ... EXEC block (it goes to one node as it is)."""
    units: list[tuple[int, int]] = []
    i = 0
    while i < len(commands):
        if str(commands[i][0]).upper() == "MULTI":
            end = i + 1
            while end < len(commands) and str(commands[end][0]).upper() not in {"EXEC", "DISCARD"}:
                end += 1
            units.append((i, min(end + 1, len(commands))))
            i = end + 1
        else:
            units.append((i, i + 1))
            i += 1
    return units


def _unit_slot(commands: Sequence[Command], start: int, end: int) -> int:
    for command in commands[start:end]:
        key = first_key(command)
        if key is not None:
            return slot_of(key)
    raise ValueError(
        f"{commands[start][0]!r} names no key, so it has no node on a cluster: run it on "
        "each node (echoes_ops.client.nodes.each_primary)"
    )


async def _bulk_cluster(
    r: RedisCluster,
    commands: Sequence[Command],
    *,
    chunk: int,
    stepped: bool,
    progress: Callable[[int, int], None] | None,
    stop: Callable[[], bool] | None,
    looks: list[int] | None = None,
    pacers: dict[str, Pacer] | None = None,
) -> list[Any]:
    """Every reply, in order, on a cluster: each command (or MULTI block) goes to the primary
    that owns its first key's slot; each node's share streams on that node's own connection,
    all nodes in parallel. A key moved meanwhile (MOVED/ASK/TRYAGAIN during a resharding) is
    sent again through redis-py's cluster client, which follows the redirection."""
    if not commands:
        return []
    await r.initialize()
    by_node: dict[str, tuple[Any, list[int]]] = {}
    in_transaction: set[int] = set()
    for start, end in _units(commands):
        if end - start > 1:
            in_transaction.update(range(start, end))
        node = r.nodes_manager.get_node_from_slot(_unit_slot(commands, start, end))
        entry = by_node.setdefault(node.name, (node, []))
        entry[1].extend(range(start, end))
    done = [0]

    def counted(n: int, _total: int) -> None:
        done[0] += n
        if progress:
            progress(done[0], len(commands))

    async def on_node(node: Any, indexes: list[int]) -> list[Any]:
        last = [0]

        def step(sent: int, total: int) -> None:
            counted(sent - last[0], total)
            last[0] = sent

        client = node_client(r, node)
        pacer = None
        if pacers is not None and stepped:
            if node.name not in pacers:
                pacers[node.name] = pacer_of(client)
            pacer = pacers[node.name]
        return await _bulk_one(
            client,
            [commands[i] for i in indexes],
            chunk=chunk,
            stepped=stepped,
            progress=step,
            stop=stop,
            pacer=pacer,
            looks=looks,
        )

    groups = list(by_node.values())
    results = await asyncio.gather(*(on_node(n, ix) for n, ix in groups), return_exceptions=True)
    replies: list[Any] = [None] * len(commands)
    for (_, indexes), result in zip(groups, results, strict=True):
        if isinstance(result, BaseException):
            raise result
        for i, reply in zip(indexes, result, strict=True):
            replies[i] = reply
    for i, reply in enumerate(replies):
        if isinstance(reply, _REDIRECTED):
            if i in in_transaction:
                raise reply  # a transaction caught by a resharding: never replayed piecemeal
            try:
                replies[i] = await r.execute_command(*commands[i])
            except ResponseError as exc:
                replies[i] = exc
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
