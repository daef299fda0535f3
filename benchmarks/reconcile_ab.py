"""Reconcile (dry run) before and after a change, in the same run: this tree against a git
revision, on the same data, with the naive walk beside them.

Run:  .venv/bin/python benchmarks/reconcile_ab.py --base 884dbc9 [--sessions 200000]
      [--keys 1000000] [--rounds 2]

Builds the tier of ``inspect_scale.py`` (SESSIONS sessions, 500 presence sets, filler up to
KEYS keys) in a private redis-server, extracts the ``echoes_ops`` package of ``--base``
(``git archive``) into a temporary folder, then per round runs ``reconcile`` of the base and
of this tree (ABBA order, each in a fresh process that times the call alone) and the naive
walk of ``inspect_scale.py`` once. Per run: wall time, the process's CPU, redis-server's CPU
(INFO cpu), the number of findings, the 99th percentile of the walk's steps (EVALSHA) and
the longest command of any kind (SLOWLOG, threshold 0, reset before each run); the load average before and after. CPU seconds and
ratios within a round are what survive a busy machine.
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
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inspect_scale import naive_reconcile, populate, server_cpu

from benchmarks.machine import load_average
from echoes_ops.client.connect import open_redis
from echoes_ops.config import Settings
from echoes_ops.local.redis_server import RedisServer

REPO = Path(__file__).resolve().parent.parent
RUNNER = """
import asyncio, json, sys, time
from echoes_ops.client.connect import open_redis
from echoes_ops.config import Settings
from echoes_ops.operations.reconcile import reconcile

async def main():
    async with open_redis(Settings.from_dsn(sys.argv[1]).redis_target(), socket_timeout=120) as r:
        await r.ping()
        cpu, started = time.process_time(), time.perf_counter()
        report = await reconcile(r)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({"wall": wall, "cpu": cpu, "drift": report.drift, "code": __import__("echoes_ops").__file__}))

asyncio.run(main())
"""


async def slowlog_ms(r) -> tuple[float, float, str]:
    """The steps' (EVALSHA) p99 and the longest command of any kind (ms) since the last
    reset (SLOWLOG at 0 us), and the longest command's name."""
    names = [
        (e["duration"] / 1000, _text(e.get("command", "")).split(" ")[0].upper())
        for e in await r.slowlog_get(100_000)
    ]
    entries = sorted(e for e in names if e[1] not in ("SLOWLOG", "INFO", "CONFIG"))
    if not entries:
        return 0.0, 0.0, ""
    steps = [e for e in entries if e[1] == "EVALSHA"] or entries  # the walk's steps
    return steps[int(0.99 * (len(steps) - 1))][0], entries[-1][0], entries[-1][1]


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


async def one(r, url: str, tree: Path) -> dict[str, Any]:
    await r.slowlog_reset()
    before = await server_cpu(r)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # run from the tree's folder: ``python -c`` puts the working directory first on the path
    out = subprocess.run(
        [sys.executable, "-c", RUNNER, url],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    if not str(result["code"]).startswith(str(tree)):
        raise SystemExit(f"ran {result['code']}, not the code of {tree}")
    result["server_cpu"] = await server_cpu(r) - before
    result["p99_ms"], result["max_ms"], result["longest"] = await slowlog_ms(r)
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--sessions", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"load average {load_average()} ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory(prefix="echoes-reconcile-ab-") as tmp:
        base = Path(tmp) / "base"
        base.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", args.base, "echoes_ops"],
            capture_output=True,
            check=True,
        )
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
        server = RedisServer(Path(tmp) / "redis", extra_args=["--enable-debug-command", "yes"])
        server.start()
        try:
            async with open_redis(
                Settings.from_dsn(server.url).redis_target(), socket_timeout=120
            ) as r:
                await populate(r, args.sessions, args.keys, 500)
                print(f"populated {await r.dbsize():,} keys")
                await r.config_set("slowlog-log-slower-than", 0)
                await r.config_set("slowlog-max-len", 100_000)
                sides: dict[str, list[dict[str, Any]]] = {args.base: [], "this tree": []}
                trees = {args.base: base, "this tree": REPO}
                naive: list[float] = []
                header = f"{'side':<12}{'wall':>8}{'cpu':>8}{'server':>8}{'p99':>8}{'max':>8}"
                print(f"{header}{'drift':>9}  longest command")
                for round_ in range(args.rounds):
                    order = [args.base, "this tree"]
                    for side in order + order[::-1] if round_ % 2 == 0 else order[::-1] + order:
                        got = await one(r, server.url, trees[side])
                        sides[side].append(got)
                        print(
                            f"{side:<12}{got['wall']:>7.2f}s{got['cpu']:>7.2f}s"
                            f"{got['server_cpu']:>7.2f}s{got['p99_ms']:>6.2f}ms"
                            f"{got['max_ms']:>6.2f}ms{int(got['drift']):>9,}  {got['longest']}"
                        )
                    await r.config_set("slowlog-log-slower-than", -1)
                    started = time.perf_counter()
                    await naive_reconcile(r)
                    naive.append(time.perf_counter() - started)
                    await r.config_set("slowlog-log-slower-than", 0)
                    print(f"{'naive':<12}{naive[-1]:>7.2f}s")
                print("medians:")
                for side, runs in sides.items():
                    wall = statistics.median(x["wall"] for x in runs)
                    print(
                        f"{side:<12}{wall:>7.2f}s{statistics.median(x['cpu'] for x in runs):>7.2f}s"
                        f"{statistics.median(x['server_cpu'] for x in runs):>7.2f}s"
                        f"  max {max(x['max_ms'] for x in runs):.2f} ms"
                        f"  naive/this {statistics.median(naive) / wall:.1f}x"
                    )
        finally:
            server.stop()
    print(f"load average {load_average()}")


if __name__ == "__main__":
    asyncio.run(main())
