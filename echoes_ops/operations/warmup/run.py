"""The warmup operation: checks, the lock, and the loop in which reading PostgreSQL,
encoding and writing Redis overlap."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from echoes_ops.client.budget import StepBudget
from echoes_ops.client.bulk import Command, StepConnection, bulk, reloading
from echoes_ops.client.connect import AnyRedis
from echoes_ops.client.pacing import Pacer
from echoes_ops.client.postgres import connect_postgres, target_of
from echoes_ops.contract import codec, keys, scripts_warmup
from echoes_ops.errors import BusyError, ConfigError, OpsError, PostgresError
from echoes_ops.gamedata import World
from echoes_ops.gamedata.models import GameData
from echoes_ops.operations.stop import StopToken
from echoes_ops.operations.warmup.encoding import (
    Batch,
    Encoded,
    PackedHead,
    encode_yielding,
    headers,
)
from echoes_ops.operations.warmup.queries import (
    DEFAULT_CHARACTERS_QUERY,
    DEFAULT_INVENTORY_QUERY,
    PG_ERRORS,
    Source,
    close,
    prepare,
    query_error,
    read_batch,
)
from echoes_ops.operations.warmup.report import WHAT_CHOICES, WarmupReport, parse_what, tally
from echoes_ops.operations.warmup.writer import Written, write_cluster, write_stepwise
from echoes_ops.primitives import lock

WARMUP_LOCK = "echoes-ops.warmup"
# Lock TTL; the lock is extended after each batch, so a long run keeps it.
LOCK_TTL = 300.0
# PostgreSQL rows per cursor fetch (one inventory query per fetch).
BATCH_SIZE = 2000
# Players per EVALSHA call at most; the calls are sized from the server time they report
# (client/budget.StepBudget), so each stays inside the command budget.
MAX_SCRIPT_BATCH = 500
# Script calls written at once on one server (about 1 ms of server work, then the server
# goes idle until the next step); the next calls are cut when their replies are in.
CALLS_IN_FLIGHT = 2
# Players of the first calls, before any measurement.
FIRST_STEP = 16
# Server CPU time a call's body aims at: the shared step target (client/budget.TARGET_S,
# 0.5 ms) less a margin for reading the call's arguments (about a fifth of its time, before
# the script's clock starts). At 0.5 ms, as much as the shared target, the calls' p99 in
# SLOWLOG was 0.95-1.21 ms (benchmarks/warmup_ab.py, 100,000 characters, session 8).
STEP_TARGET_S = 0.0004

Progress = Callable[[int], None]


async def warmup(
    r: AnyRedis,
    database_url: str,
    *,
    operator: str,
    what: Collection[str] = WHAT_CHOICES,
    active_within: int = 30,
    characters_query: str | None = None,
    inventory_query: str | None = None,
    gamedata: GameData | World | None = None,
    dry_run: bool = False,
    max_seconds: float | None = None,
    batch_size: int = BATCH_SIZE,
    script_batch: int = MAX_SCRIPT_BATCH,
    session_ttl: int = keys.SESSION_TTL,
    inventory_ttl: int = keys.INVENTORY_TTL,
    clock: Callable[[], float] = time.time,
    progress: Progress | None = None,
    stop: StopToken | None = None,
) -> WarmupReport:
    """Warm sessions and inventories of characters active in the last ``active_within``
    minutes (and, with ``"static"`` in ``what``, re-preload ``gamedata`` if it changed).

    Raises :class:`PostgresError` / :class:`ConfigError` before writing anything when
    PostgreSQL is unreachable or a query does not fit the schema, and :class:`BusyError`
    when another warmup holds the lock. Stops after the batch during which ``max_seconds``
    passed and reports ``partial``. ``stop`` is checked between batches: a stop raises
    :class:`Interrupted` saying how many characters were warmed.
    """
    token = stop or StopToken()
    chosen = parse_what(list(what))
    if active_within < 1:
        raise ConfigError(f"--active-within must be at least 1 minute, got {active_within}")
    if batch_size < 1 or not 1 <= script_batch <= MAX_SCRIPT_BATCH:
        raise ConfigError(f"batch sizes must be positive (script batch at most {MAX_SCRIPT_BATCH})")
    if "static" in chosen and gamedata is None:
        raise ConfigError("warming static data needs gamedata")
    started = time.perf_counter()
    report = WarmupReport(
        dry_run=dry_run,
        what=chosen,
        active_within_minutes=active_within,
        started_at=clock(),
        max_seconds=max_seconds,
    )
    do_sessions = "sessions" in chosen
    do_inventories = "inventories" in chosen
    do_players = do_sessions or do_inventories

    conn = None
    if do_players:
        # PostgreSQL first: if it is unreachable or a query does not fit, nothing is written
        conn = await connect_postgres(database_url)
    try:
        source = None
        where = target_of(database_url) or "?"
        if conn is not None:
            # one read-only snapshot for every read (characters and inventories agree); the
            # statements are prepared inside it. Closing the connection ends it. No parallel
            # workers: each batch's inventory query is small, and a background job should not
            # start worker processes on the game's database (they cost more than they save).
            try:
                await conn.execute(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;"
                    " SET LOCAL max_parallel_workers_per_gather = 0"
                )
            except PG_ERRORS as exc:
                reason = (str(exc).splitlines() or [type(exc).__name__])[0]
                raise PostgresError(f"PostgreSQL at {where} failed: {reason}") from None
            source = await prepare(
                conn,
                where,
                characters_query or DEFAULT_CHARACTERS_QUERY,
                (inventory_query or DEFAULT_INVENTORY_QUERY) if do_inventories else None,
                active_within,
                packed=not isinstance(r, RedisCluster),
            )
            report.ignored_columns = list(source.columns.ignored)
        handle = None
        if not dry_run:
            handle = await lock.try_acquire(
                r, WARMUP_LOCK, lock.operator_owner(operator), _lock_ttl(max_seconds)
            )
            if handle is None:
                holder = await r.get(keys.lock_key(WARMUP_LOCK))
                who = f" by {lock.owner_of(str(holder))}" if holder else ""
                raise BusyError(
                    f"another warmup is running (lock:{WARMUP_LOCK} is held{who}); skipped"
                )
        try:
            token.check("nothing written")
            if "static" in chosen:
                assert gamedata is not None
                report.static = await _static(
                    r, gamedata, operator=operator, dry_run=dry_run, stop=token
                )
            if source is not None:
                await _players(
                    r,
                    source,
                    report,
                    handle=handle,
                    dry_run=dry_run,
                    do_sessions=do_sessions,
                    do_inventories=do_inventories,
                    batch_size=batch_size,
                    script_batch=script_batch,
                    session_ttl=session_ttl,
                    inventory_ttl=inventory_ttl,
                    deadline=None if max_seconds is None else started + max_seconds,
                    clock=clock,
                    progress=progress,
                    stop_token=token,
                )
        finally:
            if handle is not None:
                await lock.release(r, handle.key, handle.token)
    finally:
        if conn is not None:
            await close(conn)
    report.elapsed_s = time.perf_counter() - started
    if report.stopped_because == "interrupted":
        raise token.stopped(
            f"warmed {report.characters:,} characters in {report.batches:,} batches; the rest "
            "were not warmed",
            {"characters": report.characters, "batches": report.batches, "partial": True},
        )
    return report


def _lock_ttl(max_seconds: float | None) -> float:
    return LOCK_TTL if max_seconds is None else max(LOCK_TTL, max_seconds + 60.0)


async def _static(
    r: AnyRedis, data: GameData | World, *, operator: str, dry_run: bool, stop: StopToken
) -> dict[str, Any]:
    from echoes_ops.operations.preload import preload

    try:
        result = await preload(r, data, operator=operator, dry_run=dry_run, stop=stop)
    except BusyError:
        return {"result": "busy", "detail": "a preload is running (its lock is held)"}
    outcome = "unchanged" if result.skipped else ("would_load" if dry_run else "loaded")
    return {
        "result": outcome,
        "version": result.version,
        "previous_version": result.previous_version,
        "keys_written": result.keys_written,
        "keys_removed": result.keys_removed,
    }


async def _players(
    r: AnyRedis,
    source: Source,
    report: WarmupReport,
    *,
    handle: lock.LockHandle | None,
    dry_run: bool,
    do_sessions: bool,
    do_inventories: bool,
    batch_size: int,
    script_batch: int,
    session_ttl: int,
    inventory_ttl: int,
    deadline: float | None,
    clock: Callable[[], float],
    progress: Progress | None,
    stop_token: StopToken,
) -> None:
    """Stream the characters and write them. Three stages overlap: PostgreSQL reads the
    next batch and Redis runs the previous batch's scripts while this batch is encoded."""
    sha = str(await r.script_load(scripts_warmup.WARMUP_PLAYERS))
    max_epoch = clock() + codec.MAX_FUTURE_SKEW
    header = (
        "1" if dry_run else "0",
        repr(codec.MIN_PLAUSIBLE_EPOCH),
        repr(max_epoch),
        str(session_ttl),
        str(inventory_ttl),
        "1" if do_sessions else "0",
        str(len(source.columns.fields)),
        "pairs" if do_inventories else "sessions",
        "0",  # measure: set on some calls (Encoded.commands)
        *(name for _, name, _ in source.columns.fields),
    )
    sizer = StepBudget(size=FIRST_STEP, target=STEP_TARGET_S, low=1, high=script_batch)
    last_extend = time.perf_counter()
    try:
        cursor = await source.characters.cursor(*source.characters_args)
    except PG_ERRORS as exc:
        raise query_error(exc, "characters", source.where) from None

    reading: asyncio.Future[Batch | None] | None = None
    writing: asyncio.Future[Written] | None = None
    written: Encoded | None = None
    cluster = isinstance(r, RedisCluster)
    fields = len(source.columns.fields)

    async with contextlib.AsyncExitStack() as stack:
        # one server: a step of CALLS_IN_FLIGHT script calls at a time, on its own connection
        line = None
        if not isinstance(r, RedisCluster):
            line = await stack.enter_async_context(StepConnection(r))

        scripts = (scripts_warmup.WARMUP_PLAYERS,)

        pacers: dict[str, Pacer] = {}  # cluster: each node's pacing, for the whole run

        async def run(commands: list[Command], per_step: int) -> list[Any]:
            async def stepped(calls: Sequence[Command]) -> list[Any]:
                return await bulk(
                    r, calls, chunk=per_step, stepped=True, raise_on_error=False, pacers=pacers
                )

            return _raised(await reloading(r, scripts, stepped, commands))

        async def send(commands: list[bytes]) -> list[Any]:
            assert line is not None
            return _raised(await reloading(r, scripts, line.packed, commands))

        measured, plain = headers(header)
        heads = (PackedHead.of(sha, measured), PackedHead.of(sha, plain))

        try:
            reading = asyncio.ensure_future(read_batch(source, cursor, batch_size))
            while True:
                waited = time.perf_counter()
                batch = await reading
                encoding = time.perf_counter()
                report.waited_postgres_s += encoding - waited
                reading = None
                if batch is None:
                    break
                reading = asyncio.ensure_future(read_batch(source, cursor, batch_size))
                encoded = await encode_yielding(
                    batch,
                    source.columns,
                    report,
                    pairs=do_inventories,
                    max_epoch=max_epoch,
                    packed=not cluster,
                )
                report.encoding_s += time.perf_counter() - encoding
                if writing is not None:
                    assert written is not None
                    task, writing = writing, None
                    _done(report, written, await _waited(report, task), sizer, progress)
                    stop = None
                    if stop_token():
                        stop = "interrupted"
                    elif deadline is not None and time.perf_counter() >= deadline:
                        stop = "max_seconds"
                    elif handle is not None and time.perf_counter() - last_extend > LOCK_TTL / 3:
                        if await lock.extend(r, handle.key, handle.token, handle.ttl_ms / 1000):
                            last_extend = time.perf_counter()
                        else:
                            stop = "lock_lost"
                    if stop is not None:
                        # this batch is read but not written: stop here
                        report.partial = True
                        report.stopped_because = stop
                        break
                writing = asyncio.ensure_future(
                    write_cluster(run, encoded, sha, header, sizer.size, fields)
                    if cluster
                    else write_stepwise(send, encoded, heads, sizer, CALLS_IN_FLIGHT)
                )
                written = encoded
            if writing is not None:
                assert written is not None
                task, writing = writing, None
                _done(report, written, await _waited(report, task), sizer, progress)
        finally:
            # never leave a read or a write running behind an error
            if reading is not None:
                await _settle(reading, cancel=True)
            if writing is not None:
                await _settle(writing, cancel=False)  # let sent scripts finish and be read


def _raised(replies: list[Any]) -> list[Any]:
    """``replies``, after raising the first error reply among them."""
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    return replies


async def _waited(report: WarmupReport, task: asyncio.Future[Written]) -> Written:
    waited = time.perf_counter()
    try:
        return await task
    finally:
        report.waited_redis_s += time.perf_counter() - waited


def _done(
    report: WarmupReport,
    encoded: Encoded,
    written: Written,
    sizer: StepBudget,
    progress: Progress | None,
) -> None:
    tally(report, written.calls, written.replies)
    left = written.inventories_left  # cluster: left alone with their session
    report.inventories.skipped_fresher += left.count("F")
    report.inventories.skipped_unknown += left.count("X")
    for n, reply in zip(written.sizes, written.replies, strict=True):
        if reply[2] >= 0 and not written.observed:  # the calls that measured their CPU time
            sizer.observe(n, reply[2] / 1e6)
    report.characters += encoded.characters
    report.inventories.rows += encoded.inventory_rows
    report.batches += 1
    report.script_calls += len(written.replies)
    if progress is not None:
        progress(report.characters)


async def _settle(task: asyncio.Future[Any], *, cancel: bool) -> None:
    """Wait for a read or write that an error or the deadline overtook; its own outcome no
    longer matters (the error that stopped the run, if any, is the one reported)."""
    if cancel and not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, OpsError, ResponseError, *PG_ERRORS):
        await task
