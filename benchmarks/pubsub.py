"""Pub/sub delivery: latency, loss and duplicates from publish to the player's inbox.

Run:  .venv/bin/python benchmarks/pubsub.py                    # ~1.5 min
      .venv/bin/python benchmarks/pubsub.py --skip-ceiling --rounds 5
      .venv/bin/python benchmarks/pubsub.py --quick            # smoke run, ~25 s

Starts a private redis-server, then:

1. Delivery: 4 worker processes, each a reference ``Worker`` (unchanged) with 250 of the
   1,000 players connected, placed once in the 71 gamedata locations (they do not move).
   A separate publisher process sends ``location_update`` envelopes at ``--rate`` msg/s
   on an absolute schedule (message i at t0 + i/rate) to random locations, half of them
   excluding one member (the actor). Each message is written to the socket on its own
   as soon as it is due, ``sent_at`` stamped as it is built; only when the publisher is
   behind schedule does it build up to 8 due messages before one write, each still with
   its own ``sent_at`` (at most a few tens of µs early, which can only add latency).
   Measured twice in the same run against the same server, with the same messages:
   ``routing="local"`` (ours: in-memory index) and ``routing="plan"`` (the plan: SMEMBERS
   per message per worker). Latency is ``sent_at`` to the delivery in the player's inbox
   (the worker's ``on_delivery`` hook), over every delivery. Loss is counted per worker
   (every worker subscribes to every location, so each should receive every message) and
   per inbox (the publisher knows the placement, so it knows how many deliveries each
   message should make); duplicates are the worker's own count plus any extra inbox
   deliveries.
2. Ceiling: 1 worker process (local routing, 250 players; a fresh one per step) while the
   publish rate ramps up; per step the achieved rate (what the publishers really sent),
   p50/p95/p99 and loss; the ceiling is the highest achieved rate with p99 < 10 ms and
   nothing lost. After the first failing step the gap is bisected ``--refine`` times.

The machine is shared: each window also reports how much CPU other processes used while
it ran (from /proc, approximate); a window where they used more than 15% of a core is
marked NOISY, and a failing ceiling step that was noisy is run once more.

Every wait is bounded and the script stops its redis-server and all child processes on
the way out, Ctrl-C included. ``--inbox-size`` and ``--gc-freeze`` are experiments on the
workers' garbage-collector pauses (see docs/benchmarks/pubsub.md). ``--profile FILE`` runs the
delivery phase (local routing) with cProfile in worker 1 and prints where its time went
(latencies are then inflated).
"""

from __future__ import annotations

import os
import sys

# Run as a script, Python puts benchmarks/ first on sys.path, where a module named like a
# standard one (a benchmarks/inspect.py, say) would shadow it for every import below: put
# the repository root there instead.
# ruff: noqa: E402
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import contextlib
import multiprocessing as mp
import queue
import random
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.machine import machine_busy, process_cpu
from benchmarks.pubsub_report import (
    NOISY,
    STEP_HEAD,
    analyse,
    passed,
    print_ceiling,
    print_delivery,
    print_profile,
    print_step,
)
from benchmarks.pubsub_workers import (
    PublisherSpec,
    TierSpec,
    WorkerSpec,
    publisher_process,
    worker_process,
)
from echoes_ops.gamedata import load_gamedata
from echoes_ops.local.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
PUBLISHER_RATE = 20_000  # msg/s one publisher process is given at most
CEILING_STEPS = (1_000, 2_000, 4_000, 8_000, 12_000, 16_000, 24_000, 32_000)


# -- placement ------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    locations: tuple[str, ...]
    where: dict[int, str]  # character id -> location
    owner: dict[int, int]  # character id -> worker index

    @classmethod
    def build(cls, locations: tuple[str, ...], players: int, workers: int, seed: int) -> Placement:
        rng = random.Random(seed)
        where = {cid: rng.choice(locations) for cid in range(1, players + 1)}
        owner = {cid: (cid - 1) % workers for cid in where}
        return cls(locations, where, owner)

    def players_of(self, worker: int) -> tuple[tuple[int, str], ...]:
        return tuple((cid, loc) for cid, loc in self.where.items() if self.owner[cid] == worker)

    def members(self, workers: set[int]) -> dict[str, tuple[int, ...]]:
        out: dict[str, list[int]] = {}
        for cid, loc in self.where.items():
            if self.owner[cid] in workers:
                out.setdefault(loc, []).append(cid)
        return {loc: tuple(cids) for loc, cids in out.items()}


# -- child processes ------------------------------------------------------------------


@dataclass
class Children:
    """Every child process started here, so the finally block can end them all."""

    ctx: Any
    processes: list[Any] = field(default_factory=list)
    commands: dict[str, Any] = field(default_factory=dict)  # worker id -> its command queue
    stopped: set[str] = field(default_factory=set)

    def start(self, target: Any, args: tuple[Any, ...], name: str) -> Any:
        process = self.ctx.Process(target=target, args=args, name=name, daemon=True)
        # A Ctrl-C reaches the whole process group: keep SIGINT blocked while the child
        # starts (the mask is inherited), so it cannot interrupt the child's imports; the
        # child ignores SIGINT and unblocks it, and the parent alone decides when to stop.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        self.processes.append(process)
        return process

    def stop_workers(self, worker_ids: list[str], timeout: float = 15.0) -> None:
        for wid in worker_ids:
            if wid not in self.stopped:
                self.stopped.add(wid)
                # the queue stays referenced: a child may still be unpickling it
                with contextlib.suppress(Exception):
                    self.commands[wid].put(("stop",))
        deadline = time.monotonic() + timeout
        for process in self.processes:
            if process.name in worker_ids:
                process.join(timeout=max(0.1, deadline - time.monotonic()))
                if process.is_alive():  # a worker left behind would stay subscribed
                    process.kill()
                    process.join(timeout=2.0)

    def end_all(self) -> None:
        self.stop_workers(list(self.commands), timeout=10.0)
        for process in self.processes:
            process.join(timeout=2.0)
            if process.is_alive():
                process.kill()
                process.join(timeout=2.0)


def _wait_for(replies: Any, kind: str, count: int, timeout: float) -> dict[Any, Any]:
    """Collect ``count`` replies of ``kind`` (keyed by sender); raise on an error reply."""
    got: dict[Any, Any] = {}
    deadline = time.monotonic() + timeout
    while len(got) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{len(got)}/{count} '{kind}' replies within {timeout:.0f} s")
        try:
            item = replies.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue
        if item[0] == "error":
            raise RuntimeError(f"child {item[1]}: {item[2]}")
        if item[0] == kind:
            got[item[1]] = item[2]
    return got


class Bench:
    def __init__(
        self,
        args: argparse.Namespace,
        server: RedisServer,
        children: Children,
        tier: TierSpec | None = None,
    ):
        self.args = args
        self.server = server
        self.tier = tier or TierSpec(
            server.url, ((server.host, server.port),), pids=(server.pid() or 0,)
        )
        self.children = children
        self.ctx = children.ctx
        self.replies = self.ctx.Queue()
        self.windows = 0
        self.pids: dict[str, int] = {}
        self.phases = 0

    def start_workers(
        self, placement: Placement, indexes: list[int], routing: str, prefix: str
    ) -> list[str]:
        ids = []
        for index in indexes:
            wid = f"{prefix}-{index + 1}"
            profile = self.args.profile if (self.args.profile and index == 0) else None
            spec = WorkerSpec(
                tier=self.tier,
                worker_id=wid,
                routing=routing,
                location_ids=placement.locations,
                players=placement.players_of(index),
                profile_path=profile,
                inbox_size=self.args.inbox_size,
                gc_freeze=self.args.gc_freeze,
            )
            commands = self.ctx.Queue()
            self.children.commands[wid] = commands
            self.children.stopped.discard(wid)
            self.children.start(worker_process, (spec, commands, self.replies), wid)
            ids.append(wid)
        self.pids.update(_wait_for(self.replies, "ready", len(ids), timeout=90))
        return ids

    def window(
        self,
        worker_ids: list[str],
        members: dict[str, tuple[int, ...]],
        locations: tuple[str, ...],
        rate: float,
        seconds: float,
    ) -> dict[str, Any]:
        """Publish at ``rate`` for ``seconds``, wait for the workers to drain, analyse."""
        self.windows += 1
        tag = f"w{self.windows}p"
        total = max(1, round(rate * seconds))
        publishers = max(1, -(-int(rate) // PUBLISHER_RATE))
        go, t0, out = self.ctx.Event(), self.ctx.Value("d", 0.0), self.ctx.Queue()
        host, port = self.tier.nodes[0]
        for index in range(publishers):
            spec = PublisherSpec(
                host=host,
                port=port,
                index=index,
                publishers=publishers,
                rate=rate,
                count=len(range(index, total, publishers)),
                tag=tag,
                seed=hash((self.args.seed, rate, seconds, index)),  # same messages per routing
                location_ids=locations,
                members=members,
                subscribers=len(worker_ids),
                tier=self.tier,
            )
            self.children.start(publisher_process, (spec, go, t0, out), f"publisher-{index}")
        _wait_for(out, "ready", publishers, timeout=60)
        ours = [self.pids[w] for w in worker_ids] + [*self.tier.pids, os.getpid()]
        before = (time.monotonic(), machine_busy(), sum(process_cpu(p) for p in ours))
        t0.value = time.monotonic() + 0.05
        go.set()
        pubs = _wait_for(out, "done", publishers, timeout=seconds + 60)
        wall = time.monotonic() - before[0]
        used = machine_busy() - before[1]
        used -= sum(process_cpu(p) for p in ours) - before[2]
        used -= sum(p["cpu_s"] for p in pubs.values())
        for process in self.children.processes:
            if process.name.startswith("publisher-"):
                process.join(timeout=5)
        self.children.processes = [
            p
            for p in self.children.processes
            if p.is_alive() or not p.name.startswith("publisher-")
        ]
        for command in (self.children.commands[w] for w in worker_ids):
            command.put(("collect", 0.5, 30.0))
        reports = _wait_for(self.replies, "report", len(worker_ids), timeout=60)
        result = analyse(list(pubs.values()), reports)
        # a classic PUBLISH on a cluster counts only the receiving node's subscribers
        result["receivers_comparable"] = not (
            self.tier.cluster and self.tier.pubsub_mode == "classic"
        )
        result["foreign_cores"] = max(0.0, used / wall) if wall > 0 else 0.0
        return result

    def delivery(self, placement: Placement, routing: str) -> dict[str, Any]:
        workers = list(range(self.args.workers))
        self.phases += 1
        ids = self.start_workers(placement, workers, routing, f"bench{self.phases}-{routing}")
        try:
            members = placement.members(set(workers))
            self.window(ids, members, placement.locations, self.args.rate, self.args.warmup)
            result = self.window(
                ids, members, placement.locations, self.args.rate, self.args.duration
            )
        finally:
            self.children.stop_workers(ids)
        return result

    def ceiling(self, placement: Placement) -> list[dict[str, Any]]:
        """One fresh worker process per step, so a step does not inherit the previous
        steps' inboxes (the reference worker keeps up to ``inbox_size`` deliveries per
        player, and the garbage collector's pauses grow with what is kept)."""
        members = placement.members({0})
        steps: list[dict[str, Any]] = []

        def step(rate: float) -> bool:
            ids = self.start_workers(placement, [0], "local", f"bench-ceiling{len(steps) + 1}")
            try:
                locations = placement.locations
                self.window(ids, members, locations, min(rate, 1000), self.args.warmup)
                result = self.window(ids, members, locations, rate, self.args.step)
            finally:
                self.children.stop_workers(ids)
            result["target"] = rate
            steps.append(result)
            print_step(result)
            return passed(result)

        def step_twice_if_noisy(rate: float) -> bool:
            return step(rate) or (steps[-1]["foreign_cores"] > NOISY and step(rate))

        passing: float | None = None
        failing: float | None = None
        for rate in self.args.steps:
            if step_twice_if_noisy(rate):
                passing = rate
            else:
                failing = rate
                break
        if passing is not None and failing is not None:
            for _ in range(self.args.refine):
                mid = round((passing + failing) / 2 / 500) * 500
                if mid in (passing, failing):
                    break
                if step_twice_if_noisy(mid):
                    passing = mid
                else:
                    failing = mid
        return steps


# -- main -------------------------------------------------------------------------------


def _alarm(signum: int, frame: Any) -> None:
    raise TimeoutError("the benchmark ran past its time limit")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per routing")
    parser.add_argument("--rate", type=float, default=1000.0, help="location messages/s")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--players", type=int, default=1000)
    parser.add_argument("--locations", type=int, default=0, help="generated ids (0: gamedata)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat local+plan N times")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds, not measured")
    parser.add_argument("--step", type=float, default=4.0, help="seconds per ceiling step")
    parser.add_argument("--steps", help="ceiling rates, msg/s (default: 1000,2000,4000,...,32000)")
    parser.add_argument("--refine", type=int, default=2, help="bisections after a failed step")
    parser.add_argument(
        "--inbox-size", type=int, default=32, help="WorkerOptions.inbox_size (default 32)"
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="experiment: gc.freeze() in each worker once its players are connected",
    )
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--skip-ceiling", action="store_true")
    parser.add_argument("--skip-delivery", action="store_true", help="only the ceiling")
    parser.add_argument("--profile", metavar="FILE", help="cProfile worker 1 (local only)")
    args = parser.parse_args()
    if args.quick:
        args.duration = min(args.duration, 3.0)
        args.warmup, args.step, args.refine = 0.5, 1.5, 0
        args.steps = args.steps or "1000,4000,16000"
    args.steps = [float(s) for s in (args.steps or "").split(",") if s.strip()] or CEILING_STEPS
    return args


def main() -> None:
    args = parse_args()
    if args.locations:
        locations = tuple(f"loc_{i:03d}" for i in range(args.locations))
    else:
        locations = tuple(sorted(load_gamedata(ROOT / "gamedata").locations))
    args.location_count = len(locations)
    placement = Placement.build(locations, args.players, args.workers, args.seed)
    budget = 120 + 2 * args.rounds * (args.duration + args.warmup + 30)
    budget += 0 if args.skip_ceiling else 2 * (len(args.steps) + args.refine) * (args.step + 45)
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(budget))
    children = Children(mp.get_context("spawn"))
    rounds: list[dict[str, dict[str, Any]]] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pubsub-bench-") as tmp:
        server = RedisServer(Path(tmp))
        try:
            server.start()
            bench = Bench(args, server, children)
            routings = ["local"] if args.profile else ["local", "plan"]
            for _ in range(0 if args.skip_delivery else args.rounds):
                rounds.append({r: bench.delivery(placement, r) for r in routings})
            if rounds:
                print_delivery(args, rounds)
            if args.profile:
                print_profile(args.profile)
            elif not args.skip_ceiling:
                print(
                    f"\nCeiling: 1 worker process, local routing, {len(placement.players_of(0))} "
                    f"players, {args.step:g} s per step"
                )
                print(STEP_HEAD)
                print("-" * len(STEP_HEAD))
                print_ceiling(bench.ceiling(placement))
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
        finally:
            signal.alarm(0)
            with contextlib.suppress(KeyboardInterrupt):
                children.end_all()
            server.stop()
    print(f"\ntotal {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
