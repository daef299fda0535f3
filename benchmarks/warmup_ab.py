"""Warmup before and after a change, in the same run: this tree against a git revision.

Run:  .venv/bin/python -m benchmarks.warmup_ab --base 461e91b [--characters 100000]
      [--rounds 3]

Starts a private PostgreSQL and redis-server, seeds ``--characters`` characters, extracts
the ``echoes_ops`` package of ``--base`` (``git archive``) into a temporary folder, then
alternates ``warmup --what sessions,inventories`` of the base and of this tree (ABBA order),
each in a fresh process, from an empty Redis and again over unchanged data. Per run: wall
time, characters/s, CPU of each process (the warmup process, redis-server from INFO cpu,
the PostgreSQL cluster from /proc), EVALSHA count and SLOWLOG median/p99/longest (threshold
0), and the load average; then the medians per side. CPU seconds are the figure that
survives a busy machine; wall time is only comparable between sides of the same round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from benchmarks.machine import load_average, postgres_cpu
from benchmarks.warmup import (
    REPO,
    WINDOW,
    bench_settings,
    cpu_and_slowlog,
    redis_cpu,
    seed,
    slowlog,
    slowlog_reset,
    slowlog_setup,
)
from echoes_ops.client.connect import open_redis
from echoes_ops.local.postgres_server import PostgresServer
from echoes_ops.local.redis_server import RedisServer

# what each side runs, in its own process with its own echoes_ops first on the path
RUNNER = """
import asyncio, json, sys, time
import echoes_ops
from echoes_ops.client.connect import open_redis
from echoes_ops.config import Settings
from echoes_ops.operations.warmup import warmup

async def main(pg, url, window):
    async with open_redis(Settings.from_dsn(url).redis_target()) as r:
        cpu, wall = time.process_time(), time.perf_counter()
        report = await warmup(r, pg, operator="ab", what=["sessions", "inventories"],
                              active_within=int(window))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(json.dumps({"wall": wall, "cpu": cpu, "characters": report.characters,
                      "changed": report.changed, "package": echoes_ops.__file__}))

asyncio.run(main(*sys.argv[1:4]))
"""


def extract(base: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", base, "echoes_ops"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


async def one(
    r: Any, pg: PostgresServer, url: str, path: Path, *, fresh: bool, nice: int = 0
) -> dict[str, Any]:
    if fresh:
        await r.flushall()
    await slowlog_reset(r)
    before_redis, before_pg = await redis_cpu(r), postgres_cpu(pg.pid())
    out = subprocess.run(
        ["nice", "-n", str(nice), sys.executable, "-c", RUNNER, pg.url, url, str(WINDOW)],
        env={**os.environ, "PYTHONPATH": str(path)},
        cwd=path,  # python -c puts the working folder first on the path
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise SystemExit(f"warmup failed:\n{out.stderr}")
    run: dict[str, Any] = json.loads(out.stdout)
    if Path(run.pop("package")).parent != path / "echoes_ops":
        raise SystemExit(f"the {path} side imported another echoes_ops")
    run["cpu_redis"] = await redis_cpu(r) - before_redis
    run["cpu_postgres"] = postgres_cpu(pg.pid()) - before_pg
    (
        run["calls"],
        run["median_us"],
        run["p99_us"],
        run["max_us"],
        run["over_1ms"],
        run["over_2ms"],
    ) = await slowlog(r)
    run["load"] = os.getloadavg()[0]
    return run


def show(side: str, kind: str, run: dict[str, Any]) -> str:
    return (
        f"  {side:<5} {kind:<6} {run['wall']:6.2f} s {run['characters'] / run['wall']:>8,.0f}/s"
        f"  {cpu_and_slowlog(run['cpu'], run)}  load {run['load']:.1f}"
    )


async def measure(args: argparse.Namespace, pg: PostgresServer, url: str, base: Path) -> None:
    await seed(pg.url, args.characters)
    sides = {"base": base, "new": REPO}
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    print(
        f"{args.characters:,} characters; base {args.base}; both sides at nice {args.nice}; "
        f"load average {load_average()}"
    )
    async with open_redis(bench_settings(url).redis_target()) as r:
        await slowlog_setup(r)
        # one first fill of each side, not counted: the first run of all starts cold (the
        # database's pages, the servers' allocations) and, in a median of two, weighed half
        # of the base's figure (session 8's run of record: 5.42 s against 4.63 s warm)
        for side in ("base", "new")[: args.warm_runs * 2]:
            run = await one(r, pg, url, sides[side], fresh=True, nice=args.nice)
            print(show(side, "warm", run) + "  (not counted)", flush=True)
        for n in range(args.rounds):
            for side in ("base", "new") if n % 2 == 0 else ("new", "base"):
                for kind, fresh in (("first", True), ("again", False)):
                    run = await one(r, pg, url, sides[side], fresh=fresh, nice=args.nice)
                    runs.setdefault((side, kind), []).append(run)
                    print(show(side, kind, run), flush=True)
    print(f"medians of {args.rounds} round(s):")
    for kind in ("first", "again"):
        for side in ("base", "new"):
            items = runs[(side, kind)]
            keys = (
                *("wall", "cpu", "cpu_redis", "cpu_postgres", "calls", "median_us", "p99_us"),
                *("over_1ms", "over_2ms"),
            )
            median = {key: statistics.median(run[key] for run in items) for key in keys}
            median["load"] = statistics.median(run["load"] for run in items)
            median["characters"] = items[0]["characters"]
            median["max_us"] = max(run["max_us"] for run in items)
            print(show(side, kind, median))
    print(f"load average after: {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--characters", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--warm-runs",
        type=int,
        choices=(0, 1),
        default=1,
        help="a first fill of each side before the rounds, not counted (0: none)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run both sides at this CPU niceness (10: as the CLI runs, ECHOES_OPS_NICE)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="echoes-warmup-ab-") as tmp:
        base = extract(args.base, Path(tmp))
        pg = PostgresServer(Path(tmp) / "pg")
        redis_server = RedisServer(Path(tmp) / "redis")
        pg.start()
        redis_server.start()
        try:
            asyncio.run(measure(args, pg, redis_server.url, base))
        finally:
            redis_server.stop()
            pg.destroy()


if __name__ == "__main__":
    main()
