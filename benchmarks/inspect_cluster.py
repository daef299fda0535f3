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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from impact_holds import longest_exec, reset_holds
from inspect_scale import STALE, populate

from benchmarks.machine import load_average, load_line, processes_cpu
from echoes_ops.client.connect import open_redis
from echoes_ops.config import Settings
from echoes_ops.local.redis_cluster import RedisCluster
from echoes_ops.local.redis_server import RedisServer
from echoes_ops.operations.locations import list_locations
from echoes_ops.operations.reconcile import reconcile
from echoes_ops.operations.sessions import list_sessions

SLOWLOG_US = 500


SHOW_OVER_MS = 1.0  # slow commands listed per operation (by node and command)


def _command_name(entry: dict[str, Any]) -> str:
    """``EVALSHA 1a2b3c4d``, ``SCAN``, ``HGETALL``: what kind of command a SLOWLOG entry is."""
    command = entry.get("command", "")
    if isinstance(command, bytes):
        command = command.decode("utf-8", "replace")
    words = str(command).split()
    if not words:
        return "?"
    name = words[0].upper()
    if name in ("EVALSHA", "EVALSHA_RO", "FCALL") and len(words) > 1:
        return f"{name} {words[1][:8]}"
    return name


def sched(pids: list[int]) -> tuple[float, int]:
    """Seconds the processes ``pids`` spent runnable but waiting for a CPU, and how often
    they were switched out involuntarily (mid-work), so far (/proc schedstat and status)."""
    waited, involuntary = 0.0, 0
    for pid in pids:
        with open(f"/proc/{pid}/schedstat") as f:
            waited += int(f.read().split()[1]) / 1e9
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("nonvoluntary_ctxt_switches"):
                    involuntary += int(line.split()[1])
    return waited, involuntary


async def script_stats(nodes: list[aioredis.Redis]) -> tuple[int, float]:
    """EVALSHA calls and the seconds the servers measured them run (INFO commandstats,
    nested commands included), summed over ``nodes``, so far."""
    calls, usec = 0, 0.0
    for node in nodes:
        stats = await node.info("commandstats")
        entry = stats.get("cmdstat_evalsha") or {}
        calls += int(entry.get("calls", 0))
        usec += float(entry.get("usec", 0))
    return calls, usec / 1e6


async def slow_entries(nodes: list[aioredis.Redis]) -> list[tuple[str, str, float]]:
    """(node port, command kind, ms) of every SLOWLOG entry on ``nodes`` but SLOWLOG's own."""
    found = []
    for node in nodes:
        port = str(node.connection_pool.connection_kwargs.get("port"))
        for entry in await node.slowlog_get(10_000):
            name = _command_name(entry)
            if name != "SLOWLOG":
                found.append((port, name, entry["duration"] / 1000))
        exec_ms = await longest_exec(node)  # SLOWLOG never lists EXEC (impact_holds.py)
        if exec_ms:
            found.append((port, "EXEC", exec_ms))
    return found


def slow_summary(entries: list[tuple[str, str, float]]) -> list[str]:
    """One line per (node, command kind) with an entry over SHOW_OVER_MS: count and max."""
    groups: dict[tuple[str, str], list[float]] = {}
    for port, name, ms in entries:
        if ms > SHOW_OVER_MS:
            groups.setdefault((port, name), []).append(ms)
    return [
        f"    node {port} {name}: {len(ms)} over {SHOW_OVER_MS:g} ms, "
        f"{sum(m > 2 for m in ms)} over 2 ms, max {max(ms):.2f} ms"
        for (port, name), ms in sorted(groups.items())
    ]


@dataclass
class Timing:
    wall: float  # median seconds
    cpu: float  # median seconds of this process's CPU
    slow: list[tuple[str, str, float]]  # (node port, command kind, ms) from every SLOWLOG
    waited: float  # seconds the servers were runnable but had no CPU (all runs)
    involuntary: int  # times the servers were switched out mid-work (all runs)
    server_cpu: float = 0.0  # median CPU seconds of the primaries (or the one server)
    replica_cpu: float = 0.0  # median CPU seconds of the replicas
    steps: int = 0  # median EVALSHA calls on the primaries
    script_s: float = 0.0  # median seconds the primaries measured those calls run

    @property
    def longest(self) -> float:
        return max((ms for _, _, ms in self.slow), default=0.0)


async def timed(
    nodes: list[aioredis.Redis],
    pids: list[int],
    call: Callable[[], Awaitable[Any]],
    runs: int,
    replica_pids: list[int] | None = None,
) -> Timing:
    """Median wall and CPU seconds of ``call``, the slow commands on every node, how long
    the servers waited for a CPU meanwhile, and the CPU the servers used (``pids``: the
    primaries, or the one server; ``replica_pids``: the replicas)."""
    walls, cpus, slow = [], [], []
    servers, replicas, steps, scripts = [], [], [], []
    waited, involuntary = 0.0, 0
    others = replica_pids or []
    for _ in range(runs):
        for node in nodes:
            await node.slowlog_reset()
            await reset_holds(node)
        calls0, script0 = await script_stats(nodes)
        wait0, inv0 = sched(pids)
        server0, replica0 = processes_cpu(pids), processes_cpu(others)
        cpu = time.process_time()
        started = time.perf_counter()
        await call()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
        servers.append(processes_cpu(pids) - server0)
        replicas.append(processes_cpu(others) - replica0)
        wait1, inv1 = sched(pids)
        waited += wait1 - wait0
        involuntary += inv1 - inv0
        calls1, script1 = await script_stats(nodes)
        steps.append(calls1 - calls0)
        scripts.append(script1 - script0)
        slow += await slow_entries(nodes)
    return Timing(
        statistics.median(walls),
        statistics.median(cpus),
        slow,
        waited,
        involuntary,
        statistics.median(servers),
        statistics.median(replicas),
        int(statistics.median(steps)),
        statistics.median(scripts),
    )


def usage_line(name: str, t: Timing) -> str:
    """Where one side's time went: the CPU of the client, the servers and replicas, the
    script steps (count, the servers' own measure of them), the run-queue wait."""
    per_step = t.script_s / t.steps * 1e6 if t.steps else 0.0
    return (
        f"    {name}: client cpu {t.cpu:.2f} s, servers cpu {t.server_cpu:.2f} s"
        f" (replicas {t.replica_cpu:.2f} s), {t.steps} steps, {t.script_s:.2f} s in"
        f" scripts ({per_step:.0f} us/step); servers waited {t.waited * 1000:.0f} ms for a"
        f" CPU, switched out mid-work {t.involuntary} times"
    )


async def with_gate(
    size: int,
    nodes: list[aioredis.Redis],
    pids: list[int],
    many: Any,
    call: Callable[[], Awaitable[Any]],
    args: argparse.Namespace,
    one: Timing,
    replica_pids: list[int],
) -> None:
    """The same cluster walk with the nodes' CPU gate (client/connect.py,
    TierCluster.local_step_gate) of ``size`` places instead (0: none, every primary's step
    at once), in the same run, for comparison."""
    import asyncio

    kept = {name: c.step_gate for name, c in many._node_clients.items()}
    gate = asyncio.Semaphore(size) if size > 0 else None
    for client in many._node_clients.values():
        client.step_gate = gate
    try:
        t = await timed(nodes, pids, call, args.runs, replica_pids)
    finally:
        for name, old in kept.items():
            many._node_clients[name].step_gate = old
    label = f"  gate {size}" if size else "  no gate (all at once)"
    print(
        f"{label:<24}{'':>12}{'':>8}{'':>10}{t.wall * 1000:>8.0f}ms"
        f"{t.cpu:>7.2f}s{t.longest:>8.2f}ms{one.wall / t.wall:>8.2f}x"
    )
    print(usage_line(label.strip(), t))
    for line in slow_summary(t.slow):
        print(line)


def gate_sizes(args: argparse.Namespace) -> list[int]:
    """The gate sizes to compare the sessions walk with (--gates, --ungated)."""
    sizes = [int(x) for x in args.gates.split(",") if x.strip()] if args.gates else []
    if args.ungated and 0 not in sizes:
        sizes.append(0)
    return sizes


async def run_cluster(args: argparse.Namespace) -> None:
    print(load_line())
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
                if args.only:
                    rows = [row for row in rows if row[0].split()[0] in args.only]
                print(
                    f"{'what':<24}{'one server':>12}{'cpu':>8}{'longest':>10}"
                    f"{'cluster':>10}{'cpu':>8}{'longest':>10}{'speedup':>9}"
                )
                print(f"one server is node {single.port}")
                one_pids = [single.pid() or 0]
                roles = [(await c.info("replication"))["role"] for c in node_clients]
                many_pids = [
                    node.pid() or 0
                    for node, role in zip(cluster.nodes, roles, strict=True)
                    if role == "master"
                ]
                replica_pids = [
                    node.pid() or 0
                    for node, role in zip(cluster.nodes, roles, strict=True)
                    if role != "master"
                ]
                if args.favour:
                    # a quiet machine, emulated on a shared one: the servers and this client
                    # share the CPUs among themselves as usual (CFS), others wait
                    for pid in (*one_pids, *many_pids, *replica_pids, os.getpid()):
                        os.setpriority(os.PRIO_PROCESS, pid, -args.favour)
                    print(f"servers and client at nice -{args.favour} (others barely run)")
                if args.realtime:
                    for pid in (*one_pids, *many_pids):  # never descheduled for others' work
                        os.sched_setscheduler(pid, os.SCHED_RR, os.sched_param(1))
                    print("servers run SCHED_RR: SLOWLOG shows the commands' own cost")
                for label, op in rows:
                    one_t = await timed([one_client], one_pids, lambda op=op: op(one), args.runs)
                    many_t = await timed(
                        node_clients, many_pids, lambda op=op: op(many), args.runs, replica_pids
                    )
                    print(
                        f"{label:<24}{one_t.wall * 1000:>10.0f}ms{one_t.cpu:>7.2f}s"
                        f"{one_t.longest:>8.2f}ms{many_t.wall * 1000:>8.0f}ms{many_t.cpu:>7.2f}s"
                        f"{many_t.longest:>8.2f}ms{one_t.wall / many_t.wall:>8.2f}x"
                    )
                    for name, t in (("one server", one_t), ("cluster", many_t)):
                        print(usage_line(name, t))
                    for line in slow_summary(one_t.slow + many_t.slow):
                        print(line)
                    if label.startswith("sessions"):
                        for size in gate_sizes(args):
                            await with_gate(
                                size,
                                node_clients,
                                many_pids,
                                many,
                                lambda op=op: op(many),
                                args,
                                one_t,
                                replica_pids,
                            )
            print("longest: the longest command on any node (SLOWLOG >= 0.5 ms; 0 = none)")
            print(f"load average {load_average()}")
        finally:
            for client in (*node_clients, one_client):
                await client.aclose()
            cluster.stop()
            single.stop()
