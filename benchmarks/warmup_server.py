"""Where the time goes in a warmup: each stage alone (``benchmarks/warmup.py --phases``), and
the server's time per character (``benchmarks/warmup.py --server-split``; issue #16 item 3).

For ``--server-split``, the characters and inventories of the benchmark's dataset are read and encoded as warmup
does, then sent to an empty redis-server four ways, each measured by the server's own
figures (the main thread's CPU time from ``INFO cpu``, and ``INFO commandstats``):

- ``script, first fill``: warmup's own calls (``WARMUP_PLAYERS``, mode pairs, ``--step``
  players per call) in steps of two calls, as warmup sends them, on an empty Redis;
- ``script, unchanged``: the same calls again (every key read and compared, none written);
- ``arguments only``: the same calls to a script that does nothing: what passing the
  keys and arguments into Lua costs (reading them off the socket, the ``ARGV`` table);
- ``plain commands``: the writes of a first fill without Lua, pipelined: ``HSET`` (the
  session's fields), ``EXPIRE``, ``RPUSH`` (the inventory rows), ``EXPIRE`` per character:
  the floor for writing what the contract asks, compare and atomicity left out;
- ``the same in WATCH/EXISTS + MULTI/EXEC``: those writes in transactions of two calls'
  players, each checked by WATCH and EXISTS first: an alternative for the first fill that
  was measured and not adopted (``benchmarks/warmup_firstfill.py``).

With ``--instructions`` the same ways go to a second redis-server under callgrind, and the
instructions it executes per character are printed instead (``benchmarks/
warmup_instructions.py``: figures that do not move with the machine's load).

Each way runs ``--split-rounds`` times, interleaved; the least CPU of the rounds is shown
(on a shared machine the CPU time of the same work rises with the load), with the median.
CPU time rather than wall time: on a busy machine the OS stops redis-server in the middle of
its work, which wall time would count.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import hiredis

from benchmarks.warmup_firstfill import Transactions, first_fill
from benchmarks.warmup_instructions import CallgrindServer, counted
from echoes_ops.client.bulk import Command, StepConnection, bulk
from echoes_ops.contract import codec, keys, scripts_warmup
from echoes_ops.operations.warmup import DEFAULT_CHARACTERS_QUERY, DEFAULT_INVENTORY_QUERY
from echoes_ops.operations.warmup.encoding import Batch, CharacterColumns, Encoded, encode_rows
from echoes_ops.operations.warmup.queries import prepare, read_batch
from echoes_ops.operations.warmup.report import WarmupReport

# players per script call when the stages run alone (--phases); warmup sizes its calls itself
PHASE_STEP = 32
NOTHING = "return 0"  # a script that only receives its arguments
CALLS_PER_STEP = 2  # as warmup sends them on one server (operations/warmup/run.py)


async def read_batches(
    conn: asyncpg.Connection, window: int
) -> tuple[CharacterColumns, list[Batch], float]:
    """Every batch of the characters active in ``window`` minutes, read as warmup reads
    them (one snapshot, a cursor, one inventory query per batch), and the seconds the reads
    took (the queries' preparation left out)."""
    await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    source = await prepare(conn, "bench", DEFAULT_CHARACTERS_QUERY, DEFAULT_INVENTORY_QUERY, window)
    cursor = await source.characters.cursor(*source.characters_args)
    started = time.perf_counter()
    batches = []
    while (batch := await read_batch(source, cursor, 2000)) is not None:
        batches.append(batch)
    seconds = time.perf_counter() - started
    await conn.execute("ROLLBACK")
    return source.columns, batches, seconds


def header_of(columns: CharacterColumns, measure: str = "0") -> tuple[str, ...]:
    """``WARMUP_PLAYERS``'s arguments before the players (mode pairs, writing sessions)."""
    names = [name for _, name, _ in columns.fields]
    return (
        "0",
        repr(codec.MIN_PLAUSIBLE_EPOCH),
        repr(time.time() + codec.MAX_FUTURE_SKEW),
        str(keys.SESSION_TTL),
        str(keys.INVENTORY_TTL),
        "1",
        str(len(names)),
        "pairs",
        measure,
        *names,
    )


def encode_all(
    columns: CharacterColumns, batches: list[Batch], *, packed: bool = False
) -> list[Encoded]:
    report = WarmupReport(False, ["sessions", "inventories"], 1, time.time())
    encoded = []
    for batch in batches:
        item = Encoded(2, packed=packed)
        encode_rows(
            item,
            batch.characters,
            batch.inventory,
            columns,
            report,
            max_epoch=time.time() + codec.MAX_FUTURE_SKEW,
        )
        encoded.append(item)
    return encoded


def plain_writes(columns: CharacterColumns, encoded: list[Encoded]) -> list[Command]:
    """A first fill's writes as plain commands: what the script writes, without Lua."""
    names = [name for _, name, _ in columns.fields]
    commands: list[Command] = []
    for item in encoded:
        starts = [*item.starts, len(item.args)]
        for i, cid in enumerate(item.ids):
            args = item.args[starts[i] : starts[i + 1]]
            stamp, values, rows = args[0], args[1 : 1 + len(names)], args[2 + len(names) :]
            fields = [
                x for name, value in zip(names, values, strict=True) if value for x in (name, value)
            ]
            session = keys.session_key(cid)
            commands += [
                ("HSET", session, *fields, "last_heartbeat", stamp, "websocket_connected", "false"),
                ("EXPIRE", session, keys.SESSION_TTL),
            ]
            if rows:
                inventory = keys.inventory_key(cid)
                commands += [("RPUSH", inventory, *rows), ("EXPIRE", inventory, keys.INVENTORY_TTL)]
    return commands


async def phases(r: Any, pg_url: str, window: int) -> None:
    """Each stage of a full warmup alone, to see where the time goes."""
    conn = await asyncpg.connect(pg_url)
    try:
        columns, batches, read_s = await read_batches(conn, window)
        # the inventory query alone, rows decoded by asyncpg instead of JSON from PostgreSQL
        ids = [row[0] for row in await conn.fetch(DEFAULT_CHARACTERS_QUERY, window)]
        plain = await conn.prepare(DEFAULT_INVENTORY_QUERY)
        count = 0
        started = time.perf_counter()
        for i in range(0, len(ids), 2000):
            count += len(await plain.fetch(ids[i : i + 2000]))
        plain_s = time.perf_counter() - started
    finally:
        await conn.close()
    await r.flushall()
    sha = await r.script_load(scripts_warmup.WARMUP_PLAYERS)
    header = header_of(columns)  # measure flag set on some calls by Encoded.commands
    started = time.perf_counter()
    encoded = [item.commands(sha, header, PHASE_STEP)[0] for item in encode_all(columns, batches)]
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    for commands in encoded:
        for command in commands:
            hiredis.pack_command(command)
    pack_s = time.perf_counter() - started
    await r.config_resetstat()
    started = time.perf_counter()
    for commands in encoded:
        await bulk(r, commands)
    redis_s = time.perf_counter() - started
    server_s = (await r.info("commandstats"))["cmdstat_evalsha"]["usec"] / 1e6
    characters = sum(len(b.characters) for b in batches)
    print(f"stages of a full warmup of {characters:,} characters, each run alone:")
    print(
        f"  PostgreSQL reads (cursor + inventories as JSON, asyncpg decoding): {read_s:.3f} s"
        f"  [same inventory query without row_to_json: {plain_s:.3f} s for {count:,} rows]"
    )
    print(f"  encoding the script calls (Python):                  {encode_s:.3f} s")
    print(f"  packing them with hiredis (Python, C):               {pack_s:.3f} s")
    print(
        f"  sending and running them (packing included):         {redis_s:.3f} s, "
        f"of which the server ran EVALSHA {server_s:.3f} s"
    )


async def _main_thread_cpu(r: Any) -> float:
    info = await r.info("cpu")
    user = info.get("used_cpu_user_main_thread", info["used_cpu_user"])
    system = info.get("used_cpu_sys_main_thread", info["used_cpu_sys"])
    return float(user) + float(system)


SCRIPT_STATS = ("evalsha",)  # a script's own commands are counted in it and on their own
PLAIN_STATS = ("hset", "expire", "rpush")
FILL_STATS = ("watch", "exists", "exec")  # EXEC's time holds the time of its commands


async def _measured(
    r: Any, send: Callable[[], Awaitable[None]], counted: tuple[str, ...]
) -> tuple[float, float]:
    """Server CPU seconds of what ``send`` sends, and the commandstats seconds of the
    ``counted`` commands."""
    await r.config_resetstat()
    before = await _main_thread_cpu(r)
    await send()
    cpu = await _main_thread_cpu(r) - before
    stats = await r.info("commandstats")
    usec = sum(float(stats.get(f"cmdstat_{name}", {}).get("usec", 0)) for name in counted)
    return cpu, usec / 1e6


async def _stepped(r: Any, calls: list[Command]) -> None:
    """``calls`` in steps of two, as warmup sends them on one server."""
    async with StepConnection(r) as line:
        for at in range(0, len(calls), CALLS_PER_STEP):
            for reply in await line.calls(calls[at : at + CALLS_PER_STEP]):
                if isinstance(reply, Exception):
                    raise reply


Way = tuple[str, Callable[[], Awaitable[None]], tuple[str, ...], bool]
Measure = Callable[[Callable[[], Awaitable[None]], tuple[str, ...]], Awaitable[tuple[float, float]]]


def _ways(
    r: Any,
    warm_calls: list[Command],
    nothing_calls: list[Command],
    plain: list[Command],
    step: int,
    transactions: tuple[Transactions, list[Encoded]],
) -> list[Way]:
    """Each way: its label, what it sends, the commandstats it is counted in, and whether
    it starts from an empty Redis (the unchanged run follows the first fill)."""

    async def pipelined() -> None:
        await bulk(r, plain, chunk=4 * step)

    async def in_transactions() -> None:
        await first_fill(r, transactions[0], transactions[1], 2 * step)

    return [
        ("script, first fill", lambda: _stepped(r, warm_calls), SCRIPT_STATS, True),
        ("script, unchanged", lambda: _stepped(r, warm_calls), SCRIPT_STATS, False),
        ("arguments only (a script doing nothing)", lambda: _stepped(r, nothing_calls),
         SCRIPT_STATS, True),
        ("plain commands, no Lua (HSET, EXPIRE, RPUSH, EXPIRE)", pipelined, PLAIN_STATS, True),
        ("the same in WATCH/EXISTS + MULTI/EXEC (not adopted)", in_transactions, FILL_STATS,
         True),
    ]  # fmt: skip


async def server_split(
    r: Any,
    pg_url: str,
    window: int,
    *,
    step: int,
    rounds: int,
    counter: CallgrindServer | None = None,
) -> None:
    """The CPU-time split on ``r``; with ``counter`` (a redis-server under callgrind, ``r``
    its client) the instructions the server executes instead, once per way."""
    conn = await asyncpg.connect(pg_url)
    try:
        columns, batches, _ = await read_batches(conn, window)
    finally:
        await conn.close()
    encoded = encode_all(columns, batches)
    characters = sum(len(item.ids) for item in encoded)
    header = header_of(columns)
    warm_sha = await r.script_load(scripts_warmup.WARMUP_PLAYERS)
    nothing_sha = await r.script_load(NOTHING)
    warm_calls = [c for item in encoded for c in item.commands(warm_sha, header, step)[0]]
    nothing_calls = [(c[0], nothing_sha, *c[2:]) for c in warm_calls]
    plain = plain_writes(columns, encoded)
    names = [name for _, name, _ in columns.fields]
    build = Transactions(names, keys.SESSION_TTL, keys.INVENTORY_TTL)
    packed = encode_all(columns, batches, packed=True)
    ways = _ways(r, warm_calls, nothing_calls, plain, step, (build, packed))

    measure: Measure = lambda send, stats: _measured(r, send, stats)  # noqa: E731
    if counter is not None:
        server = counter

        async def instructions(
            send: Callable[[], Awaitable[None]], _: tuple[str, ...]
        ) -> tuple[float, float]:
            return float(await counted(server, send)), 0.0

        measure, rounds = instructions, 1
    # no SLOWLOG entries while measuring (each costs the server a copy of the command)
    slowlog = (await r.config_get("slowlog-log-slower-than"))["slowlog-log-slower-than"]
    await r.config_set("slowlog-log-slower-than", -1)
    figures: dict[str, list[tuple[float, float]]] = {}
    try:
        for _ in range(rounds):
            for label, send, stats, empty in ways:
                if empty:
                    await r.flushall()
                figures.setdefault(label, []).append(await measure(send, stats))
    finally:
        await r.config_set("slowlog-log-slower-than", slowlog)
    await r.flushall()
    shape = f"{characters:,} characters, {step} per call, {len(warm_calls):,} calls"
    if counter is not None:
        print(f"server instructions per character ({shape}; callgrind, one run of each):")
        for label, ((count, _),) in figures.items():
            print(f"  {label:55s} {count / characters:9,.0f}")
        return
    print(f"server time per character ({shape}; least of {rounds} rounds [median]):")
    for label, values in figures.items():
        cpu = [c / characters * 1e6 for c, _ in values]
        usec = [u / characters * 1e6 for _, u in values]
        print(
            f"  {label:55s} CPU {min(cpu):5.1f} us [{statistics.median(cpu):5.1f}]  "
            f"commands {min(usec):5.1f} us [{statistics.median(usec):5.1f}]"
        )
