"""Inspection at scale on Redis Cluster (issue #14 item 7): ``inspect_scale.py --cluster``.

The same tier (``inspect_scale.populate``: SESSIONS sessions, presence sets, filler keys up to
KEYS, filler written with SET on both so the data are identical) in a private redis-server
and in a private local cluster of 3 primaries and 3 replicas (the code of ``local up
--cluster``). In the same run, each on both: ``sessions list --stale 300`` (list_sessions),
``reconcile`` (dry run) and ``locations list``, median of RUNS, with the longest command on
any node (SLOWLOG, threshold 500 us, reset before each run, read on every node). The cluster
walks run on the three primaries in parallel. Goals: the cluster at least 1.5x faster than
the single node, no command over 2 ms on any node.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from inspect_scale import STALE, populate

from echoes_ops.client.connect import open_redis
from echoes_ops.config import Settings
from echoes_ops.local.redis_cluster import RedisCluster
from echoes_ops.local.redis_server import RedisServer
from echoes_ops.operations.locations import list_locations
from echoes_ops.operations.reconcile import reconcile
from echoes_ops.operations.sessions import list_sessions

SLOWLOG_US = 500


async def longest_ms(nodes: list[aioredis.Redis]) -> float:
    longest = 0.0
    for node in nodes:
        for entry in await node.slowlog_get(10_000):
            if not str(entry.get("command", "")).upper().startswith("SLOWLOG"):
                longest = max(longest, entry["duration"] / 1000)
    return longest


async def timed(
    nodes: list[aioredis.Redis], call: Callable[[], Awaitable[Any]], runs: int
) -> tuple[float, float, float]:
    """Median wall seconds, median process CPU seconds, longest command (ms) on any node."""
    walls, cpus, longest = [], [], 0.0
    for _ in range(runs):
        for node in nodes:
            await node.slowlog_reset()
        cpu = time.process_time()
        started = time.perf_counter()
        await call()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
        longest = max(longest, await longest_ms(nodes))
    return statistics.median(walls), statistics.median(cpus), longest


async def run_cluster(args: argparse.Namespace) -> None:
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory(prefix="echoes-inspect-cluster-") as tmp:
        single = RedisServer(Path(tmp) / "single")
        cluster = RedisCluster(Path(tmp) / "cluster")
        single.start()
        cluster.start()
        node_clients = [
            aioredis.Redis(host=cluster.host, port=node.port, decode_responses=True)
            for node in cluster.nodes
        ]
        one_client = aioredis.Redis(host=single.host, port=single.port, decode_responses=True)
        try:
            one_target = Settings.from_dsn(single.url).redis_target()
            many_target = Settings.from_dsn(cluster.url).redis_target()
            async with (
                open_redis(one_target, socket_timeout=120) as one,
                open_redis(many_target, socket_timeout=120) as many,
            ):
                for label, r in (("one server", one), ("cluster", many)):
                    started = time.perf_counter()
                    await populate(r, args.sessions, args.keys, args.locations, by_set=True)
                    print(f"populated {label} in {time.perf_counter() - started:.1f} s")
                sizes = [await c.dbsize() for c in node_clients]
                print(f"keys: one server {await one_client.dbsize():,}; cluster nodes {sizes}")
                for node in (*node_clients, one_client):
                    await node.config_set("slowlog-log-slower-than", SLOWLOG_US)
                    await node.config_set("slowlog-max-len", 10_000)
                rows = [
                    ("sessions list --stale", lambda r: list_sessions(r, stale_after=STALE)),
                    ("reconcile (dry run)", lambda r: reconcile(r)),
                    ("locations list", lambda r: list_locations(r)),
                ]
                print(
                    f"{'what':<24}{'one server':>12}{'cpu':>8}{'longest':>10}"
                    f"{'cluster':>10}{'cpu':>8}{'longest':>10}{'speedup':>9}"
                )
                for label, op in rows:
                    one_s, one_cpu, one_max = await timed(
                        [one_client], lambda op=op: op(one), args.runs
                    )
                    many_s, many_cpu, many_max = await timed(
                        node_clients, lambda op=op: op(many), args.runs
                    )
                    print(
                        f"{label:<24}{one_s * 1000:>10.0f}ms{one_cpu:>7.2f}s{one_max:>8.2f}ms"
                        f"{many_s * 1000:>8.0f}ms{many_cpu:>7.2f}s{many_max:>8.2f}ms"
                        f"{one_s / many_s:>8.2f}x"
                    )
            print("longest: the longest command on any node (SLOWLOG >= 0.5 ms; 0 = none)")
            print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        finally:
            for client in (*node_clients, one_client):
                await client.aclose()
            cluster.stop()
            single.stop()
