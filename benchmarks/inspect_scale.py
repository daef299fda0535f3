"""Inspection at scale: sessions list --stale, reconcile and locations list on a big server.

Run:  .venv/bin/python benchmarks/inspect_scale.py [--sessions 200000] [--keys 1000000]
      .venv/bin/python benchmarks/inspect_scale.py --cluster   # cluster vs one server

(Named inspect_scale.py, not inspect.py: a script folder holding an ``inspect.py`` shadows
the standard library's ``inspect`` module for every script run from that folder.)

Builds, in a private redis-server, SESSIONS session hashes (5% with a heartbeat older than
the stale threshold), presence sets over LOCATIONS locations holding every player, and
filler keys up to KEYS keys in all. Then times, in the same run:

- ``list_sessions(stale_after=300)`` (what ``sessions list --stale 300 --json`` runs) against
  the naive approach: KEYS, then one awaited HGETALL per session;
- ``reconcile`` (dry run) against a naive detector: KEYS for sets and sessions, SMEMBERS and
  HGETALL one key at a time;
- ``list_locations`` against KEYS + one awaited SCARD per set;

and reads SLOWLOG (threshold 500 us) for the longest single command each approach ran, a
transaction's whole EXEC included (INFO latencystats: SLOWLOG never lists EXEC, see
benchmarks/impact_holds.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from impact_holds import longest_exec, reset_holds

from benchmarks.machine import load_average
from echoes_ops.client.bulk import bulk
from echoes_ops.client.connect import open_redis
from echoes_ops.config import Settings
from echoes_ops.contract import keys
from echoes_ops.local.redis_server import RedisServer
from echoes_ops.operations.locations import list_locations
from echoes_ops.operations.reconcile import reconcile
from echoes_ops.operations.sessions import list_sessions

STALE = 300.0
SLOWLOG_US = 500


async def populate(
    r, sessions: int, total_keys: int, locations: int, first_id: int = 1, *, by_set: bool = False
) -> None:
    """The tier; filler keys by DEBUG POPULATE, or (``by_set``: a cluster, where DEBUG POPULATE
    would make keys of slots the node does not serve) the same keys and values by SET."""
    rng = random.Random(7)
    now = time.time()
    locs = [f"loc_{i}" for i in range(locations)]
    commands = []
    for loc in locs:
        commands.append(("HSET", keys.location_cache_key(loc), "id", loc, "name", loc.title()))
    commands.append(("SADD", keys.LOCATION_INDEX_KEY, *locs))  # as preload writes it
    for cid in range(first_id, first_id + sessions):
        loc = rng.choice(locs)
        beat = now - (rng.uniform(STALE + 10, 3600) if rng.random() < 0.05 else rng.uniform(0, 60))
        commands.append(
            (
                "HSET",
                keys.session_key(cid),
                "worker_id",
                f"w{cid % 4}",
                "location_id",
                loc,
                "username",
                f"p{cid}",
                "hp",
                "90",
                "max_hp",
                "100",
                "stamina",
                "40",
                "max_stamina",
                "50",
                "level",
                "7",
                "xp",
                "1200",
                "websocket_connected",
                "true",
                "in_combat",
                "false",
                "last_movement_time",
                f"{beat:.3f}",
                "last_heartbeat",
                f"{beat:.3f}",
            )
        )
        commands.append(("EXPIRE", keys.session_key(cid), "1800"))
        commands.append(("SADD", keys.presence_key(loc), str(cid)))
        if len(commands) >= 30_000:
            await bulk(r, commands)
            commands = []
    await bulk(r, commands)
    filler = total_keys - sessions - 2 * locations
    if filler > 0 and by_set:
        for start in range(0, filler, 50_000):
            part = range(start, min(filler, start + 50_000))
            await bulk(r, [("SET", f"filler:{n}", f"value:{n}") for n in part])
    elif filler > 0:
        await r.execute_command("DEBUG", "POPULATE", filler, "filler")


@asynccontextmanager
async def private_server() -> AsyncIterator[Any]:
    """A client of a private redis-server with DEBUG allowed (populate's filler keys),
    stopped on the way out."""
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), extra_args=["--enable-debug-command", "yes"])
        server.start()
        try:
            target = Settings.from_dsn(server.url).redis_target()
            async with open_redis(target, socket_timeout=120) as r:
                yield r
        finally:
            server.stop()


async def naive_stale(r) -> int:
    now = time.time()
    found = 0
    for key in await r.keys("player:*:session"):
        fields = await r.hgetall(key)
        beat = float(fields.get("last_heartbeat", "0") or 0)
        if beat > 1e9 and now - beat > STALE:
            found += 1
    return found


async def naive_reconcile(r) -> int:
    members: dict[str, list[str]] = {}
    for key in await r.keys("location:*:players"):
        for member in await r.smembers(key):
            members.setdefault(member, []).append(key)
    drift = 0
    for key in await r.keys("player:*:session"):
        fields = await r.hgetall(key)
        cid = key.split(":")[1]
        if keys.presence_key(fields.get("location_id", "x")) not in members.get(cid, []):
            drift += 1
    return drift


async def naive_locations(r) -> int:
    total = 0
    for key in await r.keys("location:*:players"):
        total += await r.scard(key)
    return total


async def server_cpu(r) -> float:
    """The redis-server's own CPU seconds so far (user + system, INFO cpu)."""
    cpu = await r.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def timed(r, label: str, coro_factory, runs: int) -> tuple[float, float, object, Usage]:
    """Median seconds over ``runs``, the longest command (ms) SLOWLOG saw meanwhile, the
    last result, and the median CPU seconds of this process and of the server."""
    samples, clients, servers = [], [], []
    longest = 0.0
    result = None
    for _ in range(runs):
        await r.slowlog_reset()
        await reset_holds(r)
        server_before = await server_cpu(r)
        cpu = time.process_time()
        started = time.perf_counter()
        result = await coro_factory()
        samples.append(time.perf_counter() - started)
        clients.append(time.process_time() - cpu)
        servers.append(await server_cpu(r) - server_before)
        entries = await r.slowlog_get(10_000)
        if entries:
            longest = max(longest, max(e["duration"] for e in entries) / 1000)
        # SLOWLOG never lists EXEC: a transaction's whole hold from latencystats
        longest = max(longest, await longest_exec(r))
    usage = Usage(statistics.median(clients), statistics.median(servers))
    return statistics.median(samples), longest, result, usage


@dataclass
class Usage:
    client_s: float  # CPU seconds of this process (decoding, the detector)
    server_s: float  # CPU seconds of the redis-server (the Lua steps, the reads)


def tier_arguments(parser: argparse.ArgumentParser) -> None:
    """The tier's shape that :func:`populate` builds (``--sessions``, ``--keys``,
    ``--locations``): the same options and defaults in every benchmark that uses it."""
    parser.add_argument("--sessions", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--locations", type=int, default=500)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    tier_arguments(parser)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--only",
        choices=["sessions", "reconcile", "locations"],
        action="append",
        help="time only these rows (repeatable; default: all three)",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="the same data on a local 3-primary cluster against one server, in one run",
    )
    parser.add_argument(
        "--ungated",
        action="store_true",
        help="with --cluster: also the sessions walk with every primary's steps at once",
    )
    parser.add_argument(
        "--gates",
        default="",
        metavar="N,M",
        help="with --cluster: also the sessions walk with the nodes' CPU gate of N places, "
        "then M, ... (0: no gate), in the same run (the product's gate: this machine's CPUs)",
    )
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="with --cluster: run every redis-server SCHED_RR (root), so that other processes "
        "never deschedule one mid-command: a diagnostic of the commands' own cost under load",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="lower this process's CPU priority by N first (as the CLI does with "
        "ECHOES_OPS_NICE), so the servers are measured beside a client that yields to them",
    )
    parser.add_argument(
        "--favour",
        type=int,
        default=0,
        metavar="N",
        help="with --cluster: after populating, run the servers and this client at nice -N "
        "(root), so other processes barely run: a quiet machine emulated on a shared one",
    )
    args = parser.parse_args()
    if args.nice:
        os.nice(args.nice)
    if args.cluster:
        from inspect_cluster import run_cluster

        await run_cluster(args)
        return
    print(f"load average {load_average()} ({os.cpu_count()} CPUs)")
    async with private_server() as r:
        started = time.perf_counter()
        await populate(r, args.sessions, args.keys, args.locations)
        print(f"populated {await r.dbsize():,} keys in {time.perf_counter() - started:.1f} s")
        await r.config_set("slowlog-log-slower-than", SLOWLOG_US)
        await r.config_set("slowlog-max-len", 10_000)
        runs = args.runs
        rows = [
            (
                "sessions list --stale",
                lambda: list_sessions(r, stale_after=STALE),
                lambda: naive_stale(r),
            ),
            ("reconcile (dry run)", lambda: reconcile(r), lambda: naive_reconcile(r)),
            ("locations list", lambda: list_locations(r), lambda: naive_locations(r)),
        ]
        if args.only:
            rows = [row for row in rows if row[0].split()[0] in args.only]
        print(
            f"{'what':<24}{'echoes-ops':>12}{'longest cmd':>13}{'naive':>10}"
            f"{'longest cmd':>13}{'ratio':>8}{'client cpu':>12}{'server cpu':>12}"
        )
        for label, ours, naive in rows:
            ours_s, ours_max, result, usage = await timed(r, label, ours, runs)
            naive_s, naive_max, _, _ = await timed(r, label, naive, 1)
            print(
                f"{label:<24}{ours_s * 1000:>10.0f}ms{ours_max:>11.2f}ms"
                f"{naive_s * 1000:>8.0f}ms{naive_max:>11.2f}ms{naive_s / ours_s:>7.1f}x"
                f"{usage.client_s:>11.2f}s{usage.server_s:>11.2f}s"
            )
            if label.startswith("sessions"):
                print(f"{'':<24}{result.total:,} stale of {result.scanned:,} sessions")
        print("longest cmd: SLOWLOG >= 0.5 ms (0 = none); cpu: median of our runs")
        print(f"load average {load_average()}")


if __name__ == "__main__":
    asyncio.run(main())
