"""Pub/sub on Redis Cluster: classic vs sharded, beside one server, in one run.

Run:  .venv/bin/python benchmarks/pubsub_cluster.py                  # ~6 min
      .venv/bin/python benchmarks/pubsub_cluster.py --quick          # smoke run, ~2 min
      .venv/bin/python benchmarks/pubsub_cluster.py --skip-ceiling

Starts a private redis-server and a private 3-primary / 3-replica cluster (the code of
``echoes-ops local up --cluster``), then measures three setups with the machinery of
``benchmarks/pubsub.py`` (same workers, publishers, placement and analysis):

- ``single``: one server, classic PUBLISH (the plan);
- ``cluster classic``: the cluster, PUBLISH / SUBSCRIBE: each message is published on the
  primary owning its channel's slot and forwarded by the cluster bus to every node;
- ``cluster sharded``: the cluster, SPUBLISH / SSUBSCRIBE (``REDIS_PUBSUB_MODE=sharded``):
  each message stays on the primary owning its slot; each worker holds one subscribed
  connection per primary that owns one of its channels.

For each: delivery (``--workers`` reference worker processes with ``--players`` players in
the gamedata's locations, ``--rate`` location messages/s for ``--duration`` s) with
p50/p95/p99 publish-to-inbox latency and loss; and the per-worker ceiling (one worker
process, rising rates, the highest achieved rate with p99 < 10 ms and nothing lost). The
publishers spread over the primaries in both cluster modes (the owner of the channel's
slot), so the modes differ only in the bus forwarding and the subscriptions. Each window
reports the CPU other processes used; figures from a NOISY window are suspect (the machine
is shared). The load average is printed at the start and the end.
"""

from __future__ import annotations

import os
import sys

# ruff: noqa: E402
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import contextlib
import json
import multiprocessing as mp
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from benchmarks.machine import load_average
from benchmarks.pubsub import CEILING_STEPS, ROOT, Bench, Children, Placement, _alarm
from benchmarks.pubsub_report import P99_LIMIT_MS, STEP_HEAD, passed
from benchmarks.pubsub_workers import TierSpec
from echoes_ops.gamedata import load_gamedata
from echoes_ops.local.redis_cluster import RedisCluster
from echoes_ops.local.redis_server import RedisServer

SLOTS = 16384


def single_tier(server: RedisServer) -> TierSpec:
    return TierSpec(server.url, ((server.host, server.port),), pids=(server.pid() or 0,))


def cluster_tier(cluster: RedisCluster, mode: str) -> TierSpec:
    """The cluster's primaries and which one owns each slot (CLUSTER SLOTS)."""
    client = redis.Redis(host=cluster.host, port=cluster.nodes[0].port, password=cluster.password)
    try:
        ranges = client.execute_command("CLUSTER SLOTS")
    finally:
        client.close()
    nodes: list[tuple[str, int]] = []
    owner = bytearray(SLOTS)
    for start, end, primary, *_replicas in ranges:
        host = primary[0].decode() if isinstance(primary[0], bytes) else str(primary[0])
        address = (host, int(primary[1]))
        if address not in nodes:
            nodes.append(address)
        owner[int(start) : int(end) + 1] = bytes([nodes.index(address)]) * (
            int(end) - int(start) + 1
        )
    url = cluster.url.split("?", 1)[0]
    pids = tuple(node.pid() or 0 for node in cluster.nodes)
    return TierSpec(url, tuple(nodes), bytes(owner), cluster=True, pubsub_mode=mode, pids=pids)


def ceiling_of(steps: list[dict[str, Any]]) -> float | None:
    good = [s for s in steps if passed(s)]
    return max((s["achieved"] for s in good), default=None)


def summary_line(name: str, result: dict[str, Any] | None, ceiling: float | None) -> str:
    if result is None:
        lat = "-"
        loss = "-"
        noisy = ""
    else:
        p = result["latency"]
        lat = f"{p['p50']:>7.2f}{p['p95']:>8.2f}{p['p99']:>8.2f}"
        loss = f"{result['worker_lost']:>6}{result['inbox_missing']:>6}{result['duplicates']:>5}"
        noisy = " NOISY" if result["foreign_cores"] > 0.15 else ""
    top = "-" if ceiling is None else f"{ceiling:,.0f}"
    return f"{name:18}{lat:>23}{loss:>17}{top:>12}{noisy}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of delivery")
    parser.add_argument("--rate", type=float, default=1000.0, help="location messages/s")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--players", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds, not measured")
    parser.add_argument("--step", type=float, default=4.0, help="seconds per ceiling step")
    parser.add_argument("--steps", help="ceiling rates, msg/s (default: 1000,2000,4000,...)")
    parser.add_argument("--refine", type=int, default=2, help="bisections after a failed step")
    parser.add_argument("--setups", default="single,classic,sharded", help="which to run")
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--skip-ceiling", action="store_true")
    parser.add_argument("--json", metavar="FILE", help="also write every figure here")
    args = parser.parse_args()
    if args.quick:
        args.duration = min(args.duration, 3.0)
        args.warmup, args.step, args.refine = 0.5, 1.5, 0
        args.steps = args.steps or "1000,4000,16000"
    args.steps = [float(s) for s in (args.steps or "").split(",") if s.strip()] or CEILING_STEPS
    # what Bench reads from benchmarks/pubsub.py's own arguments
    args.inbox_size, args.gc_freeze, args.profile = 32, False, None
    return args


def main() -> None:
    args = parse_args()
    locations = tuple(sorted(load_gamedata(ROOT / "gamedata").locations))
    placement = Placement.build(locations, args.players, args.workers, args.seed)
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    per_setup = 2 * (args.duration + args.warmup + 30)
    if not args.skip_ceiling:
        per_setup += 2 * (len(args.steps) + args.refine) * (args.step + 45)
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(180 + len(setups) * per_setup))
    children = Children(mp.get_context("spawn"))
    results: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    print(f"load average at start: {load_average()} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory(prefix="pubsub-cluster-bench-") as tmp:
        server = RedisServer(Path(tmp) / "single")
        cluster = RedisCluster(Path(tmp) / "cluster")
        try:
            server.start()
            cluster.start()
            for setup in setups:
                tier = single_tier(server) if setup == "single" else cluster_tier(cluster, setup)
                bench = Bench(args, server, children, tier)
                name = "single" if setup == "single" else f"cluster {setup}"
                print(
                    f"\n== {name}: {len(tier.nodes)} primar{'y' if len(tier.nodes) == 1 else 'ies'}"
                )
                result = bench.delivery(placement, "local")
                print(summary_line(name, result, None), flush=True)
                steps: list[dict[str, Any]] = []
                if not args.skip_ceiling:
                    print(STEP_HEAD)
                    steps = bench.ceiling(placement)
                results[name] = {
                    "delivery": result,
                    "ceiling_steps": steps,
                    "ceiling": ceiling_of(steps),
                }
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
        finally:
            signal.alarm(0)
            with contextlib.suppress(KeyboardInterrupt):
                children.end_all()
            cluster.stop()
            server.stop()
    print(
        f"\nSummary ({args.workers} workers x {args.players:,} players, {args.rate:,.0f} msg/s "
        f"for {args.duration:g} s; ceiling: 1 worker, p99 < {P99_LIMIT_MS:g} ms, nothing lost)"
    )
    print(
        f"{'setup':18}{'p50':>7}{'p95':>8}{'p99 ms':>8}{'lost':>6}{'miss':>6}{'dup':>5}{'ceiling/s':>12}"
    )
    for name, got in results.items():
        print(summary_line(name, got["delivery"], got["ceiling"]))
    print(f"load average at end: {load_average()}; total {time.monotonic() - started:.0f} s")
    if args.json:
        slim = {
            name: {
                "delivery": {k: v for k, v in got["delivery"].items() if k != "worker_cpu"},
                "ceiling": got["ceiling"],
                "ceiling_steps": [
                    {
                        "target": s["target"],
                        "achieved": s["achieved"],
                        "latency": s["latency"],
                        "lost": s["worker_lost"],
                        "passed": passed(s),
                    }
                    for s in got["ceiling_steps"]
                ],
            }
            for name, got in results.items()
        }
        Path(args.json).write_text(json.dumps(slim, indent=2, default=str))


if __name__ == "__main__":
    main()
