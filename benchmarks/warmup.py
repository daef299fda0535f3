"""Warmup throughput: ``echoes-ops warmup`` against the naive approach, in the same run.

Run:  .venv/bin/python -m benchmarks.warmup [--characters 100000] [--runs 3]
      [--with-naive-inventories] [--phases] [--memory] [--server-split] [--client-split]
      [--instructions]

Starts a private PostgreSQL and a private redis-server in a temporary folder, seeds the
reference schema with ``--characters`` characters (2-8 inventory rows each, all active in
the last six hours: ``echoes_ops.local.demo``), then measures, each from an empty Redis:

- naive: fetch the active characters with one query, then per character one awaited HSET
  and one awaited EXPIRE (two round trips), and the same with one awaited MULTI/HSET/EXPIRE/
  EXEC (one round trip; the contract's atomic write). The faster of the two is the baseline.
- naive with inventories (``--with-naive-inventories``, slow): the 1-round-trip naive plus,
  per character, the plan's ``cache_inventory`` (awaited DEL, RPUSH, EXPIRE).
- warmup --what sessions, and warmup sessions + inventories (the CLI's default less static
  data): the operation the CLI runs, end to end (PostgreSQL connect and snapshot, prepare,
  lock, cursor streaming, Lua compare-and-write, lock release).
- warmup again over unchanged data (every key compared, none written).

Rows/s are characters per second; the full warmup also prints PostgreSQL rows/s (characters
plus inventory rows read). Medians of ``--runs`` runs (naive runs once per run too).
``--phases`` times each stage of a full warmup on its own (PostgreSQL reads, encoding,
hiredis packing, Redis execution, with the server's own EVALSHA time from INFO
commandstats) and accounts the CPU of one pipelined run per process (this one, from
``time.process_time``; redis-server, from INFO cpu; the PostgreSQL cluster's processes,
from /proc) to show where the time goes; ``--memory`` compares the peak Python memory
(tracemalloc) of a streamed warmup with fetching every row at once; ``--server-split``
shows where the server's time per character goes (``benchmarks/warmup_server.py``),
``--client-split`` where this process's and PostgreSQL's goes, each stage alone
(``benchmarks/warmup_client.py``); ``--instructions`` counts the server split in
instructions on a redis-server under callgrind (``benchmarks/warmup_instructions.py``:
figures that do not move with the machine's load).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from benchmarks.machine import load_average, main_thread_waits, postgres_cpu
from benchmarks.warmup_client import client_split
from benchmarks.warmup_instructions import CallgrindServer
from benchmarks.warmup_server import phases, server_split
from echoes_ops.client.connect import open_redis
from echoes_ops.config import Settings
from echoes_ops.contract import codec, keys
from echoes_ops.gamedata import load_gamedata
from echoes_ops.local.demo import DemoSummary, seed_demo
from echoes_ops.local.postgres_server import PostgresServer
from echoes_ops.local.redis_server import RedisServer
from echoes_ops.operations.warmup import (
    DEFAULT_CHARACTERS_QUERY,
    DEFAULT_INVENTORY_QUERY,
    warmup,
)

REPO = Path(__file__).resolve().parent.parent
WINDOW = 7 * 60  # minutes: the demo spreads activity over the last six hours
FULL = ["sessions", "inventories"]


def session_mapping(row: asyncpg.Record) -> dict[str, str]:
    return codec.encode_mapping(
        {
            "location_id": row["location_id"],
            "username": row["username"],
            "hp": row["hp"],
            "max_hp": row["max_hp"],
            "stamina": row["stamina"],
            "max_stamina": row["max_stamina"],
            "level": row["level"],
            "xp": row["xp"],
            "last_movement_time": row["last_movement_time"],
            "websocket_connected": "false",
            "last_heartbeat": row["last_active_at"].timestamp(),
        }
    )


async def naive(r: Any, dsn: str, *, atomic: bool, inventories: bool = False) -> int:
    """Fetch every active row, then write each character with awaited commands."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(DEFAULT_CHARACTERS_QUERY, WINDOW)
        owned: dict[int, list[str]] = {}
        if inventories:
            for item in await conn.fetch(DEFAULT_INVENTORY_QUERY, [row["id"] for row in rows]):
                owned.setdefault(item["character_id"], []).append(codec.encode_json(dict(item)))
    finally:
        await conn.close()
    for row in rows:
        key = keys.session_key(row["id"])
        mapping: Any = session_mapping(row)
        if atomic:
            pipe = r.pipeline(transaction=True)
            pipe.hset(key, mapping=mapping)
            pipe.expire(key, keys.SESSION_TTL)
            await pipe.execute()
        else:
            await r.hset(key, mapping=mapping)
            await r.expire(key, keys.SESSION_TTL)
        if inventories:
            ikey = keys.inventory_key(row["id"])
            await r.delete(ikey)
            items = owned.get(row["id"])
            if items:
                await r.rpush(ikey, *items)
            await r.expire(ikey, keys.INVENTORY_TTL)
    return len(rows)


async def timed(coro: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await coro
    return time.perf_counter() - started, result


def line(label: str, seconds: float, rows: int, base: float | None = None) -> str:
    ratio = f"  {base / seconds:5.1f}x naive" if base else ""
    return f"  {label:<46} {seconds:7.3f} s {rows / seconds:>9,.0f} rows/s{ratio}"


# SLOWLOG threshold while a warmup runs. Not 0: redis-server 7.0 logs the commands a script
# runs as well (HSET, EXPIRE, RPUSH, ... four or more per character), and at threshold 0
# making those entries cost the server about a third more CPU per character in one run on
# this machine (first fill, 30,000 characters: 0.72-1.08 s against 0.61-0.78 s), charged to
# the calls' measured time, so the warmup also cut smaller calls. A script's own commands
# take microseconds; its calls, about half a millisecond, are all logged.
SLOWLOG_THRESHOLD_US = 100


async def slowlog_setup(r: Any) -> None:
    await r.config_set("slowlog-log-slower-than", SLOWLOG_THRESHOLD_US)
    await r.config_set("slowlog-max-len", 1_000_000)


async def slowlog_reset(r: Any) -> None:
    """Before a run: SLOWLOG and the command counts emptied."""
    await r.slowlog_reset()
    await r.config_resetstat()


async def slowlog(r: Any) -> tuple[int, float, float, int, int, int]:
    """EVALSHA calls since :func:`slowlog_reset`: count (from INFO commandstats), median,
    p99 and longest, in microseconds (wall time on the server, from SLOWLOG: on a busy
    machine it includes the time the OS stopped redis-server), and how many took over 1 ms
    and 2 ms. Calls under :data:`SLOWLOG_THRESHOLD_US` are not in the SLOWLOG; a
    percentile that falls among them is given as the threshold (at most that)."""
    stats = await r.info("commandstats")
    total = int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    entries = await r.execute_command("SLOWLOG", "GET", "-1")
    durations = sorted(int(e[2]) for e in entries if _name(e[3][0]).upper() == "EVALSHA")
    if not total:
        return 0, 0.0, 0.0, 0, 0, 0
    below = max(total - len(durations), 0)

    def at(rank: int) -> float:
        return float(durations[rank - below]) if rank >= below else float(SLOWLOG_THRESHOLD_US)

    return (
        total,
        at((total - 1) // 2),
        at(int(0.99 * (total - 1))),
        durations[-1] if durations else SLOWLOG_THRESHOLD_US,
        sum(d > 1000 for d in durations),
        sum(d > 2000 for d in durations),
    )


def bench_settings(redis_url: str) -> Settings:
    """Settings for the benchmark's own client: a long timeout, as reading the SLOWLOG of
    every call of a 100,000-character run moves tens of megabytes on a busy machine."""
    return Settings.load(env={"REDIS_URL": redis_url, "REDIS_TIMEOUT": "120"})


def _name(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


async def redis_cpu(r: Any) -> float:
    info = await r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def full_run(r: Any, pg: PostgresServer, *, fresh: bool) -> dict[str, Any]:
    """One warmup --what sessions,inventories with its CPU per process and SLOWLOG."""
    if fresh:
        await r.flushall()
    await slowlog_reset(r)
    pid = int((await r.info("server"))["process_id"])
    waited_before, switches_before = main_thread_waits(pid)
    before_redis, before_pg = await redis_cpu(r), postgres_cpu(pg.pid())
    before_py = time.process_time()
    seconds, report = await timed(
        warmup(r, pg.url, operator="bench", what=FULL, active_within=WINDOW)
    )
    waited_after, switches_after = main_thread_waits(pid)
    calls, median, p99, longest, over_1ms, over_2ms = await slowlog(r)
    return {
        # redis-server's main thread: time runnable but waiting for a CPU, and times it lost
        # the CPU while it had work (long calls that did not do more work: preemption)
        "srv_waited_s": (waited_after - waited_before) / 1e9,
        "srv_preempted": switches_after - switches_before,
        "seconds": seconds,
        "report": report,
        "cpu_python": time.process_time() - before_py,
        "cpu_redis": await redis_cpu(r) - before_redis,
        "cpu_postgres": postgres_cpu(pg.pid()) - before_pg,
        "calls": calls,
        "median_us": median,
        "p99_us": p99,
        "max_us": longest,
        "over_1ms": over_1ms,
        "over_2ms": over_2ms,
    }


def cpu_and_slowlog(python: float, run: dict[str, Any]) -> str:
    """One run's CPU per process and its script calls' SLOWLOG, as one text."""
    cpu = python + run["cpu_redis"] + run["cpu_postgres"]
    return (
        f"CPU: Python {python:.2f} s, redis-server {run['cpu_redis']:.2f} s, PostgreSQL "
        f"{run['cpu_postgres']:.2f} s = {cpu:.2f} CPU-s; {run['calls']:,} EVALSHA, SLOWLOG "
        f"median {run['median_us'] / 1000:.2f} ms, p99 {run['p99_us'] / 1000:.2f} ms, longest "
        f"{run['max_us'] / 1000:.2f} ms, {run.get('over_1ms', 0):,.0f} over 1 ms and "
        f"{run.get('over_2ms', 0):,.0f} over 2 ms"
    )


def split_line(label: str, run: dict[str, Any]) -> str:
    report = run["report"]
    split = report.as_dict()["time_split_s"]
    return (
        f"  {label}: wall {run['seconds']:.2f} s = waiting for PostgreSQL "
        f"{split['postgres_wait']:.2f} s + encoding {split['encoding']:.2f} s + waiting for "
        f"Redis {split['redis_wait']:.2f} s (+ setup); Redis ran the calls "
        f"{split['redis_server']:.2f} s\n"
        f"  {'':{len(label)}}  {cpu_and_slowlog(run['cpu_python'], run)}; longest call's own "
        f"CPU time {report.longest_call_us / 1000:.2f} ms; redis-server waited for a CPU "
        f"{run['srv_waited_s']:.2f} s and lost it {run['srv_preempted']:,} times while busy"
    )


async def measure(args: argparse.Namespace, r: Any, pg: PostgresServer) -> None:
    pg_url = pg.url
    results: dict[str, list[float]] = {}
    runs: dict[str, list[dict[str, Any]]] = {"full": [], "again": []}

    def record(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    await slowlog_setup(r)
    rows = 0
    for _ in range(args.runs):
        if not args.no_naive:
            await r.flushall()
            seconds, rows = await timed(naive(r, pg_url, atomic=False))
            record("naive2", seconds)
            await r.flushall()
            seconds, _ = await timed(naive(r, pg_url, atomic=True))
            record("naive1", seconds)
        if args.with_naive_inventories:
            await r.flushall()
            seconds, _ = await timed(naive(r, pg_url, atomic=True, inventories=True))
            record("naive_inv", seconds)
        await r.flushall()
        seconds, report = await timed(
            warmup(r, pg_url, operator="bench", what=["sessions"], active_within=WINDOW)
        )
        rows = report.characters
        assert report.sessions.written == rows, report.as_dict()
        record("sessions", seconds)
        run = await full_run(r, pg, fresh=True)
        report = run["report"]
        assert report.sessions.written == rows, report.as_dict()
        assert report.inventories.written == rows, report.as_dict()
        record("full", run["seconds"])
        record("full_pg_rows", report.characters + report.inventories.rows)
        runs["full"].append(run)
        run = await full_run(r, pg, fresh=False)
        report = run["report"]
        assert report.sessions.unchanged == rows, report.as_dict()
        assert report.changed == 0, report.as_dict()
        record("again", run["seconds"])
        runs["again"].append(run)

    med = {name: statistics.median(values) for name, values in results.items()}
    base = min(med["naive1"], med["naive2"]) if "naive1" in med else None
    print(f"{rows:,} characters; median of {args.runs} run(s); rows/s = characters per second")
    if base is not None:
        print(line("naive, awaited HSET then awaited EXPIRE", med["naive2"], rows, base))
        print(line("naive, one awaited MULTI/HSET/EXPIRE/EXEC", med["naive1"], rows, base))
    if "naive_inv" in med:
        print(line("naive + plan's cache_inventory (DEL/RPUSH/EXPIRE)", med["naive_inv"], rows))
    print(line("warmup --what sessions", med["sessions"], rows, base))
    print(line("warmup --what sessions,inventories", med["full"], rows, base))
    if "naive_inv" in med:
        print(f"  {'':<46} {med['naive_inv'] / med['full']:5.1f}x naive with inventories")
    pg_rows = int(med["full_pg_rows"])
    print(
        f"  {'':<46} {pg_rows / med['full']:>19,.0f} PostgreSQL rows/s "
        f"({pg_rows:,} rows: characters and inventory rows)"
    )
    print(line("warmup again, unchanged data (no writes)", med["again"], rows, base))
    print("where the time goes (the median run of each; the stages overlap, so the waits")
    print("are what the loop could not hide):")
    for name, label in (("full", "sessions,inventories"), ("again", "again, unchanged")):
        ordered = sorted(runs[name], key=lambda run: float(run["seconds"]))
        print(split_line(label, ordered[len(ordered) // 2]))
    longest = max(run["max_us"] for name in runs for run in runs[name])
    print(
        f"  budget: longest EVALSHA of all runs {longest / 1000:.2f} ms (goal: p99 <= 1 ms, "
        "max <= 2 ms)"
    )


async def cpu(r: Any, pg: PostgresServer, what: list[str]) -> None:
    """Where the CPU of one full warmup goes: this process, redis-server, PostgreSQL."""
    await r.flushall()
    before_redis = await r.info("cpu")
    before_pg = postgres_cpu(pg.pid())
    before_py = time.process_time()
    started = time.perf_counter()
    await warmup(r, pg.url, operator="bench", what=what, active_within=WINDOW)
    wall = time.perf_counter() - started
    py = time.process_time() - before_py
    pg_cpu = postgres_cpu(pg.pid()) - before_pg
    after_redis = await r.info("cpu")
    redis_cpu = sum(
        float(after_redis[k]) - float(before_redis[k]) for k in ("used_cpu_user", "used_cpu_sys")
    )
    total = py + redis_cpu + pg_cpu
    print(
        f"CPU of one warmup --what {','.join(what)}: wall {wall:.2f} s; Python {py:.2f} s, "
        f"redis-server {redis_cpu:.2f} s, PostgreSQL {pg_cpu:.2f} s = {total:.2f} CPU-s "
        f"(needs >= {total / 2:.2f} s on 2 free cores)"
    )


async def memory(r: Any, pg_url: str) -> None:
    await r.flushall()
    tracemalloc.start()
    await warmup(r, pg_url, operator="bench", what=FULL, active_within=WINDOW)
    streamed = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    tracemalloc.start()
    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch(DEFAULT_CHARACTERS_QUERY, WINDOW)
        items = await conn.fetch(DEFAULT_INVENTORY_QUERY, [row["id"] for row in rows])
    finally:
        await conn.close()
    everything = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(
        f"peak Python memory: streamed warmup {streamed / 1e6:.1f} MB; fetching all "
        f"{len(rows):,} characters and {len(items):,} inventory rows at once "
        f"{everything / 1e6:.1f} MB (rows only, before any encoding)"
    )


async def seed(pg_url: str, characters: int) -> DemoSummary:
    """The reference schema with ``characters`` characters (2-8 inventory rows each, all
    active in the last six hours), vacuumed and analyzed: what every warmup benchmark reads."""
    data = load_gamedata(REPO / "gamedata")
    summary = await seed_demo(
        pg_url,
        location_ids=sorted(data.locations),
        item_ids=sorted(data.items),
        characters=characters,
    )
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("VACUUM ANALYZE characters")
        await conn.execute("VACUUM ANALYZE inventory")
    finally:
        await conn.close()
    return summary


async def run(args: argparse.Namespace, pg: PostgresServer, redis_url: str) -> None:
    pg_url = pg.url
    started = time.perf_counter()
    summary = await seed(pg_url, args.characters)
    print(
        f"seeded {summary.characters:,} characters and {summary.inventory_rows:,} inventory "
        f"rows in {time.perf_counter() - started:.1f} s"
    )
    if args.nice:
        # this process only: the servers were started before, at the niceness they had
        os.nice(args.nice)
    print(f"load average before: {load_average()}; this process at nice {os.nice(0)}")
    async with open_redis(bench_settings(redis_url).redis_target()) as r:
        await measure(args, r, pg)
        if args.phases:
            await phases(r, pg_url, WINDOW)
            await cpu(r, pg, ["sessions"])
            await cpu(r, pg, FULL)
        if args.memory:
            await memory(r, pg_url)
        if args.server_split:
            await server_split(r, pg_url, WINDOW, step=args.step, rounds=args.split_rounds)
        if args.client_split:
            await client_split(r, pg_url, WINDOW, rounds=args.split_rounds)
        if args.instructions:
            await instructions(pg_url, args.step)
    print(f"load average after: {load_average()}")


async def instructions(pg_url: str, step: int) -> None:
    """The server split counted in instructions, on a redis-server under callgrind."""
    with tempfile.TemporaryDirectory(prefix="echoes-callgrind-") as where:
        counter = CallgrindServer(Path(where))
        counter.start()
        try:
            async with open_redis(bench_settings(counter.url).redis_target()) as r:
                await server_split(r, pg_url, WINDOW, step=step, rounds=1, counter=counter)
        finally:
            counter.stop(timeout=60.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--characters", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--with-naive-inventories", action="store_true")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baselines")
    parser.add_argument("--phases", action="store_true")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument(
        "--server-split",
        action="store_true",
        help="where the server's time per character goes: the script's calls, the same "
        "arguments to a script doing nothing, the same writes as plain commands "
        "(benchmarks/warmup_server.py)",
    )
    parser.add_argument(
        "--client-split",
        action="store_true",
        help="where this process's and PostgreSQL's CPU per character goes: each stage of a "
        "first fill alone (benchmarks/warmup_client.py)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="the server split's ways counted in instructions, on a redis-server under "
        "valgrind's callgrind (benchmarks/warmup_instructions.py; use --characters 3000)",
    )
    parser.add_argument("--step", type=int, default=20, help="players per call (--server-split)")
    parser.add_argument("--split-rounds", type=int, default=3)
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="lower this process's CPU priority by N once the servers run (10: as the CLI, "
        "ECHOES_OPS_NICE, runs warmup)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="echoes-warmup-bench-") as tmp:
        pg = PostgresServer(Path(tmp) / "pg")
        redis_server = RedisServer(Path(tmp) / "redis")
        pg.start()
        redis_server.start()
        try:
            asyncio.run(run(args, pg, redis_server.url))
        finally:
            redis_server.stop()
            pg.destroy()


if __name__ == "__main__":
    main()
