"""How long ``REDIS_ENABLED`` takes to reach running workers, with Redis down and up.

Run:  .venv/bin/python benchmarks/flags_propagation.py [--workers 4] [--flips 20] [--cli-flips 5]

Starts a private redis-server and a private PostgreSQL (``echoes-ops db migrate`` applied),
then ``--workers`` reference workers, each its own OS process with 25 connected players and
``database_url`` set (so each LISTENs on PostgreSQL). Every worker process timestamps (wall
clock) the moment its worker accepts a change, and from where (PostgreSQL NOTIFY or the
Redis ``config_changed`` message). Phases:

1. Redis stopped, via the operation: ``set_flag`` called in this process, alternating
   true/false ``--flips`` times. Latency per flip = last worker's accept time minus the
   call's start ("call"), and minus the PostgreSQL ``updated_at`` of the change ("commit",
   which is the start of the setting transaction). A ``false`` is applied the moment it
   is accepted; a ``true`` with Redis down is accepted and waits for Redis to return
   (reported separately).
2. Redis stopped, via the CLI: ``echoes-ops flags set REDIS_ENABLED false --yes`` as a
   subprocess (interpreter start-up included), alternating with ``true``, ``--cli-flips``
   times each; latency = last worker's accept time minus the subprocess spawn.
3. Redis running: ``set_flag`` with the Redis mirror and message, ``--flips`` times
   alternating (each waits until every worker reports the new mode); latency of the
   ``false`` flips as in 1, and which path reached each worker first (all flips).

Prints p50/p95/max per phase. Every wait is bounded; servers and workers are stopped on
the way out, Ctrl-C included.
"""

from __future__ import annotations

import os
import sys

# Run as a script, benchmarks/ is first on sys.path: put the repository root there instead.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ruff: noqa: E402

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import queue
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
LOCATIONS = ["overpass", "gas_station", "ruins", "bunker"]


# -- worker processes ----------------------------------------------------------------------


def worker_process(index: int, redis_url: str, dsn: str, reports: Any, stop: Any) -> None:
    asyncio.run(_worker_main(index, redis_url, dsn, reports, stop))


async def _worker_main(index: int, redis_url: str, dsn: str, reports: Any, stop: Any) -> None:
    from echoes_ops.client.connect import make_client
    from echoes_ops.config import Settings
    from echoes_ops.contract.session import Session
    from echoes_ops.runtime.worker import Worker, WorkerOptions

    worker_id = f"bench-{index + 1}"
    client = make_client(Settings.from_dsn(redis_url).redis_target(), client_name=worker_id)
    worker = Worker(
        client,
        WorkerOptions(
            worker_id=worker_id,
            location_ids=LOCATIONS,
            run_spawn_task=False,
            database_url=dsn,
            idle_ping=0.5,
            dead_after=1.5,
            max_backoff=0.25,
        ),
    )
    original = worker.flags.apply

    def traced(update: Any) -> bool:
        accepted = original(update)
        if accepted:
            reports.put(
                ("accepted", worker_id, update.version, update.value, update.source, time.time())
            )
        return accepted

    worker.flags.apply = traced  # type: ignore[method-assign]
    assert worker.flags.listener is not None
    worker.flags.listener.on_update = traced
    await worker.start()
    for cid in range(index * 25 + 1, index * 25 + 26):
        await worker.connect_player(
            Session(character_id=cid, username=f"p{cid}", location_id=LOCATIONS[cid % 4])
        )
    await _wait(
        lambda: worker.flags.listener is not None and worker.flags.listener.connected.is_set()
    )
    reports.put(("ready", worker_id, None, None, None, time.time()))
    reported_mode = None
    while not stop.is_set():
        if worker.mode != reported_mode:
            reported_mode = worker.mode
            reports.put(("mode", worker_id, worker.flags.version, worker.mode, None, time.time()))
        await asyncio.sleep(0.005)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(worker.stop(), timeout=5)
    with contextlib.suppress(Exception):
        await client.aclose()


async def _wait(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("worker not ready")
        await asyncio.sleep(0.01)


# -- the parent ------------------------------------------------------------------------------


class Bench:
    def __init__(self, workers: int, redis_url: str, dsn: str) -> None:
        ctx = mp.get_context("spawn")
        self.reports = ctx.Queue()
        self.stop = ctx.Event()
        self.processes = [
            ctx.Process(
                target=worker_process,
                args=(i, redis_url, dsn, self.reports, self.stop),
                daemon=True,
            )
            for i in range(workers)
        ]
        self.count = workers
        self.accepted: dict[str, list[tuple[str, float, str, str]]] = {}  # version -> entries
        self.modes: dict[str, str] = {}

    def start(self) -> None:
        for p in self.processes:
            p.start()
        ready: set[str] = set()
        deadline = time.monotonic() + 60
        while len(ready) < self.count:
            kind, wid, *_ = self._get(deadline)
            if kind == "ready":
                ready.add(wid)

    def _get(self, deadline: float) -> tuple[Any, ...]:
        item = self.reports.get(timeout=max(0.01, deadline - time.monotonic()))
        kind, wid, version, value, source, at = item
        if kind == "accepted":
            self.accepted.setdefault(version, []).append((wid, at, source, value))
        elif kind == "mode":
            self.modes[wid] = value
        return item

    def wait_version(
        self, version: str, timeout: float = 10.0
    ) -> list[tuple[str, float, str, str]]:
        deadline = time.monotonic() + timeout
        while len(self.accepted.get(version, [])) < self.count:
            try:
                self._get(deadline)
            except queue.Empty:
                raise TimeoutError(f"not every worker accepted version {version}") from None
        return self.accepted[version]

    def wait_modes(self, mode: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not (len(self.modes) == self.count and set(self.modes.values()) == {mode}):
            with contextlib.suppress(queue.Empty):
                self._get(deadline)
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers did not all reach {mode} mode: {self.modes}")

    def close(self) -> None:
        self.stop.set()
        for p in self.processes:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()


def pct(samples: list[float]) -> str:
    if not samples:
        return "no samples"
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return (
        f"p50 {statistics.median(ordered) * 1000:7.1f} ms   p95 {pick(0.95):7.1f} ms   "
        f"max {ordered[-1] * 1000:7.1f} ms   (n={len(ordered)})"
    )


async def set_once(dsn: str, value: str, redis_target: Any) -> tuple[float, str]:
    from echoes_ops.operations.flags import LazyRedis, set_flag

    started = time.time()
    async with LazyRedis(redis_target) as lazy:
        result = await set_flag(
            dsn, "REDIS_ENABLED", value, reason="benchmark", operator="bench", redis=lazy
        )
    assert result.version is not None
    return started, result.version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--flips", type=int, default=20)
    parser.add_argument("--cli-flips", type=int, default=5)
    args = parser.parse_args()

    from echoes_ops.config import Settings
    from echoes_ops.local.postgres_server import PostgresServer
    from echoes_ops.local.redis_server import RedisServer
    from echoes_ops.operations.migrations import migrate

    with tempfile.TemporaryDirectory(prefix="flags-bench-") as tmp:
        redis_server = RedisServer(Path(tmp) / "redis")
        pg = PostgresServer(Path(tmp) / "pg")
        bench: Bench | None = None
        try:
            redis_server.start()
            pg.start()
            dsn = pg.url
            asyncio.run(migrate(dsn))
            target = Settings.from_dsn(redis_server.url).redis_target()
            asyncio.run(set_once(dsn, "true", target))
            bench = Bench(args.workers, redis_server.url, dsn)
            bench.start()
            print(f"{args.workers} worker processes ready (25 players each)")

            # 1. Redis stopped, the operation
            redis_server.stop()
            call_false, commit_false, call_true = [], [], []
            value = "false"
            for _ in range(args.flips):
                started, version = asyncio.run(set_once(dsn, value, target))
                last = max(at for _, at, _, _ in bench.wait_version(version))
                if value == "false":
                    call_false.append(last - started)
                    commit_false.append(last - int(version) / 1e6)
                else:
                    call_true.append(last - started)
                value = "true" if value == "false" else "false"
            print("\n1. Redis stopped; set_flag() in-process -> every worker (PostgreSQL NOTIFY)")
            print(f"   false, from the call:   {pct(call_false)}")
            print(f"   false, from the commit: {pct(commit_false)}")
            print(f"   true accepted (waits for Redis to apply): {pct(call_true)}")

            # 2. Redis stopped, the CLI as a subprocess
            env = {**os.environ, "DATABASE_URL": dsn, "REDIS_URL": redis_server.url}
            cli_false: list[float] = []
            for flip in range(args.cli_flips * 2):
                value = "false" if flip % 2 else "true"
                started = time.time()
                done = subprocess.run(
                    [str(BIN / "echoes-ops"), "flags", "set", "REDIS_ENABLED", value,
                     "--reason", "benchmark", "--yes", "--json"],
                    env=env, capture_output=True, text=True, check=False,
                )  # fmt: skip
                if done.returncode != 0:
                    raise RuntimeError(done.stderr.strip())
                version = json.loads(done.stdout)["version"]
                last = max(at for _, at, _, _ in bench.wait_version(version))
                if value == "false":
                    cli_false.append(last - started)
            print("\n2. Redis stopped; `echoes-ops flags set REDIS_ENABLED false --yes` subprocess")
            print(f"   false, from the spawn:  {pct(cli_false)}")

            # 3. Redis running: both paths
            redis_server.start()
            asyncio.run(set_once(dsn, "true", target))
            bench.wait_modes("redis")
            up_call, up_commit = [], []
            first: dict[str, int] = {}
            value = "false"
            for _ in range(args.flips):
                started, version = asyncio.run(set_once(dsn, value, target))
                entries = bench.wait_version(version)
                last = max(at for _, at, _, _ in entries)
                if value == "false":
                    up_call.append(last - started)
                    up_commit.append(last - int(version) / 1e6)
                for _, _, source, _ in entries:
                    first[source] = first.get(source, 0) + 1
                if value == "false":
                    bench.wait_modes("fallback")
                else:
                    bench.wait_modes("redis")
                value = "true" if value == "false" else "false"
            print("\n3. Redis running; set_flag() with mirror + config_changed -> every worker")
            print(f"   false, from the call:   {pct(up_call)}")
            print(f"   false, from the commit: {pct(up_commit)}")
            print(f"   first path to arrive:   {first}")
        finally:
            if bench is not None:
                if not redis_server.running():
                    with contextlib.suppress(Exception):
                        redis_server.start()
                bench.close()
            redis_server.stop()
            pg.destroy()


if __name__ == "__main__":
    main()
