"""Preload throughput: echoes-ops's atomic preload against the plan's approach, and
``preload --online`` against the server-time budget.

Run:  .venv/bin/python benchmarks/preload.py [--items 20000] [--locations 2000] [--runs 5]

Both sides start from the same in-memory GameData and an empty database of one private
redis-server started here, and both include encoding the values. The plan's approach is its
``preload_game_data``: one HSET per key, each awaited before the next. Reports the median of
``--runs`` runs of each, keys/s and the ratio, plus how long the atomic swap held the server.

With ``--cluster`` the same table follows for a private local cluster (3 primaries, 3
replicas), SLOWLOG read on every primary.

Then, in the same run, ``preload --online`` for a first load and for a routine change of 10
entries, with SLOWLOG at threshold 0 (reset before each): every command the server ran, its
p50/p99/max and the longest step, the mixed window, beside the atomic swap's EXEC for the same
change (INFO commandstats: SLOWLOG lists the commands inside EXEC, not EXEC). The load
average is printed: a preempted redis-server stretches single commands, so read the max of
a loaded run with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataclasses import replace

from benchmarks.machine import load_average
from benchmarks.worldgen import make_world
from echoes_ops.client.connect import open_redis
from echoes_ops.client.nodes import primary_clients
from echoes_ops.config import Settings
from echoes_ops.contract import keys
from echoes_ops.gamedata.models import GameData
from echoes_ops.local.redis_cluster import RedisCluster as LocalCluster
from echoes_ops.local.redis_server import RedisServer
from echoes_ops.operations.preload import preload
from echoes_ops.operations.preload_online import OnlineReport


async def plan_approach(r, data: GameData) -> None:
    """The plan's preload: per-field JSON/str encoding, one awaited HSET per key."""
    for loc in data.locations.values():
        record = loc.to_record()
        mapping = {
            k: json.dumps(v) if isinstance(v, dict | list) else str(v) for k, v in record.items()
        }
        await r.hset(f"location:{loc.id}:cache", mapping=mapping)
    for item in data.items.values():
        record = item.to_record()
        mapping = {
            k: json.dumps(v) if isinstance(v, dict | list | bool) else str(v)
            for k, v in record.items()
        }
        await r.hset(keys.item_def_key(item.id), mapping=mapping)


def changed(data: GameData, count: int, tag: str) -> GameData:
    """``data`` with the descriptions of its first ``count`` items set to ``tag``."""
    items = dict(data.items)
    for item_id in sorted(items)[:count]:
        items[item_id] = replace(items[item_id], description=tag)
    return replace(data, items=items)


async def slowlog_run(r, data: GameData, *, online: bool) -> tuple[list[int], float, tuple]:
    """Run one preload with SLOWLOG at threshold 0; return every command's duration (us),
    the EXEC time from commandstats (ms), and the result with the longest command's name."""
    nodes = await primary_clients(r)  # [r] on one server, every primary on a cluster
    for node in nodes:
        await node.config_set("slowlog-log-slower-than", 0)
        await node.config_set("slowlog-max-len", 2_000_000)
        await node.slowlog_reset()
        await node.config_resetstat()
    result = await preload(r, data, operator="bench", online=online)
    entries, exec_ms = [], 0.0
    for node in nodes:
        # the benchmark's own SLOWLOG/CONFIG calls are not the preload's
        entries += [
            e
            for e in await node.slowlog_get(2_000_000)
            if e["command"].split()[0].upper() not in (b"SLOWLOG", b"CONFIG")
        ]
        stats = await node.info("commandstats")
        await node.config_set("slowlog-log-slower-than", 10_000)
        exec_ms += stats.get("cmdstat_exec", {}).get("usec", 0) / 1000
    durations = sorted(int(e["duration"]) for e in entries)
    top = max(entries, key=lambda e: e["duration"], default=None)
    name = top["command"].split()[0].decode() if top is not None else ""
    return durations, exec_ms, (result, name)


async def cluster_budget(data: GameData, runs: int, folder: Path) -> list[str]:
    """The budget table on a private local cluster (the code of ``local up --cluster``)."""
    cluster = LocalCluster(folder / "cluster")
    cluster.start()
    try:
        settings = Settings.load(
            env={
                "REDIS_URL": cluster.url.replace("?cluster=true", ""),
                "REDIS_CLUSTER": "true",
                "REDIS_CLUSTER_NODES": ",".join(cluster.seeds),
            }
        )
        async with open_redis(settings.redis_target()) as r:
            return await budget_runs(r, data, runs, cluster=True)
    finally:
        cluster.stop()


def pct(values: list[int], share: float) -> int:
    return values[min(len(values) - 1, int(len(values) * share))] if values else 0


async def budget_runs(r, data: GameData, runs: int, *, cluster: bool = False) -> list[str]:
    """The online mode against the atomic swap, first load and a change of 10 entries (on
    a cluster there is no atomic swap: preload is always stepped per slot)."""
    rows = []
    for label, prepare, target in (
        ("first load", None, data),
        ("change of 10 entries", data, changed(data, 10, "edited")),
    ):
        for online in (True,) if cluster else (False, True):
            all_durations: list[int] = []
            execs, windows, steps, longest, names = [], [], [], [], []
            for _ in range(runs):
                await r.flushall()
                if prepare is not None:
                    await preload(r, prepare, operator="bench")
                durations, exec_ms, (result, name) = await slowlog_run(r, target, online=online)
                if not all_durations or durations[-1] > max(all_durations):
                    names.append(name)
                all_durations.extend(durations)
                execs.append(exec_ms)
                report = result.online
                if isinstance(report, OnlineReport):
                    windows.append(report.mixed_window_s)
                    steps.append(report.steps)
                    longest.append(report.longest_step_us / 1000)
            all_durations.sort()
            rows.append(
                (
                    f"{label}, {'cluster' if cluster else '--online' if online else 'atomic'}",
                    pct(all_durations, 0.5),
                    pct(all_durations, 0.99),
                    all_durations[-1] if all_durations else 0,
                    max(execs),
                    max(windows) if windows else None,
                    statistics.median(steps) if steps else None,
                    names[-1] if names else "",
                )
            )
    where = "Redis Cluster 3 primaries / 3 replicas, every primary" if cluster else "one server"
    lines = [
        f"\nserver-time budget on {where} (SLOWLOG threshold 0, {runs} run(s) each, commands "
        "pooled):",
        f"{'run':<34} {'p50 us':>7} {'p99 us':>7} {'max us':>8} {'EXEC ms':>8} "
        f"{'mixed window':>13} {'steps':>6}  longest command",
    ]
    for name, p50, p99, top, exec_ms, window, nsteps, top_name in rows:
        shown = f"{window:.3f} s" if window is not None else "none"
        lines.append(
            f"{name:<34} {p50:>7} {p99:>7} {top:>8} {exec_ms:>8.1f} {shown:>13} "
            f"{'' if nsteps is None else int(nsteps):>6}  {top_name}"
        )
    lines.append(
        "(atomic: the commands inside EXEC are listed one by one; EXEC ms is the hold. "
        f"load average {load_average()})"
    )
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--locations", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--budget-only", action="store_true", help="only the --online / budget table"
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="also the budget table on a local 3+3 Redis Cluster, in the same run",
    )
    args = parser.parse_args()
    data = make_world(args.items, args.locations)
    total = args.items + args.locations
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            async with open_redis(Settings.from_dsn(server.url).redis_target()) as r:
                if args.budget_only:
                    print("\n".join(await budget_runs(r, data, args.runs)))
                    if args.cluster:
                        print("\n".join(await cluster_budget(data, args.runs, Path(tmp))))
                    return
                ours, plans, swaps, forced = [], [], [], []
                for _ in range(args.runs):
                    await r.flushall()
                    started = time.perf_counter()
                    await plan_approach(r, data)
                    plans.append(time.perf_counter() - started)
                    await r.flushall()
                    await r.config_resetstat()
                    started = time.perf_counter()
                    result = await preload(r, data, operator="bench")
                    ours.append(time.perf_counter() - started)

                    assert result.keys_written == total, result.keys_written
                    stats = await r.info("commandstats")
                    swaps.append(stats["cmdstat_exec"]["usec"] / 1000)
                    started = time.perf_counter()
                    await preload(r, data, operator="bench", force=True)
                    forced.append(time.perf_counter() - started)
                    assert await r.dbsize() == total + 2  # + version, location index
                budget = await budget_runs(r, data, args.runs)
        finally:
            server.stop()
    plan_s, ours_s, forced_s = (statistics.median(x) for x in (plans, ours, forced))
    print(
        f"keys: {total:,} ({args.items:,} items, {args.locations:,} locations); "
        f"median of {args.runs} runs"
    )
    print(f"plan approach (awaited HSET per key): {plan_s:.3f} s  {total / plan_s:,.0f} keys/s")
    print(
        f"echoes-ops preload (empty Redis):     {ours_s:.3f} s  {total / ours_s:,.0f} keys/s  "
        f"ratio {plan_s / ours_s:.1f}x"
    )
    print(
        f"echoes-ops preload --force (reload):  {forced_s:.3f} s  {total / forced_s:,.0f} keys/s  "
        f"ratio {plan_s / forced_s:.1f}x"
    )
    print(
        f"the atomic EXEC held the server: median {statistics.median(swaps):.1f} ms, "
        f"max {max(swaps):.1f} ms (server-side, INFO commandstats)"
    )
    print("\n".join(budget))
    if args.cluster:
        with tempfile.TemporaryDirectory() as tmp:
            print("\n".join(await cluster_budget(data, args.runs, Path(tmp))))


if __name__ == "__main__":
    asyncio.run(main())
