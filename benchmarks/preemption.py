"""Are our longest commands the server's work or the server losing its CPU mid-command?

Run:  .venv/bin/python benchmarks/preemption.py                        # 200,000 / 1,000,000
      .venv/bin/python benchmarks/preemption.py --keys 200000 --nice 10,idle
      .venv/bin/python benchmarks/preemption.py --ops reconcile,sessions --nice 10,idle,10,idle

Builds the inspection tier of ``inspect_scale.py`` in a private redis-server and runs each
walk (``reconcile`` dry run, ``sessions list --stale 300``, ``stats``, ``doctor``) once per
``--nice`` value (``ECHOES_OPS_NICE`` of the CLI: a nice level or ``idle``), in the order
given (repeat values, ABAB, to see the spread). Per run it prints, from SLOWLOG (threshold
0, scripts' inner calls included) our SCAN/EVALSHA steps' median, p99 and max and how many
took over 1 and 2 ms, with the longest ones; the spread of the durations of steps of the
same size (a step of the same size taking 10x as long did not do 10x the work); and, from
``/proc`` of redis-server's main thread, its CPU time, its run-queue wait (schedstat: time
runnable but not running) and its involuntary context switches (times it lost the CPU
while it had work) during the walk. Long steps together with run-queue wait and steps of
the same size at a tenth of the time are preemption, not step size.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from inspect_scale import populate

from benchmarks.machine import load_line
from echoes_ops.client.connect import open_redis
from echoes_ops.config import Settings
from echoes_ops.local.redis_server import RedisServer

BIN = Path(sys.executable).parent
OPS = {
    "reconcile": ["reconcile", "--json"],
    "sessions": ["sessions", "list", "--stale", "300", "--json"],
    "stats": ["stats", "--json"],
    "doctor": ["doctor", "--json"],
}
STEPS = ("EVALSHA", "EVALSHA_RO", "SCAN", "SSCAN", "HSCAN")


def thread_figures(pid: int) -> tuple[int, int, int]:
    """redis-server's main thread: ns on a CPU, ns runnable waiting, involuntary switches."""
    ran, waited, _ = (int(x) for x in Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split())
    status = Path(f"/proc/{pid}/task/{pid}/status").read_text()
    switches = int(status.split("nonvoluntary_ctxt_switches:")[1].split()[0])
    return ran, waited, switches


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="echoes-preempt-") as tmp:
        server = RedisServer(Path(tmp) / "redis", extra_args=["--enable-debug-command", "yes"])
        server.start()
        try:
            target = Settings.from_dsn(server.url).redis_target()
            async with open_redis(target, socket_timeout=300) as r:
                await populate(r, args.sessions, args.keys, 500, first_id=1_000_001)
                await r.config_set("slowlog-max-len", 1_000_000)
                pid = int((await r.info("server"))["process_id"])
                env = {
                    k: v
                    for k, v in os.environ.items()
                    if not k.startswith(("ECHOES_OPS_", "REDIS_"))
                }
                env.update(REDIS_URL=server.url, ECHOES_OPS_OPERATOR="preemption-bench")
                for nice in args.nice.split(","):
                    for op in args.ops.split(","):
                        await r.config_set("slowlog-log-slower-than", 0)
                        await r.slowlog_reset()
                        before, started = thread_figures(pid), time.perf_counter()
                        done = subprocess.run(
                            [str(BIN / "echoes-ops"), *OPS[op]],
                            env={**env, "ECHOES_OPS_NICE": nice},
                            capture_output=True,
                            text=True,
                            check=False,
                        )
                        wall = time.perf_counter() - started
                        after = thread_figures(pid)
                        await r.config_set("slowlog-log-slower-than", 10_000)
                        entries = await r.slowlog_get(1_000_000)
                        report(op, nice, done.returncode, wall, before, after, entries)
        finally:
            server.stop()


def report(
    op: str,
    nice: str,
    code: int,
    wall: float,
    before: tuple[int, int, int],
    after: tuple[int, int, int],
    entries: list[dict[str, Any]],
) -> None:
    ran, waited, switches = (a - b for a, b in zip(after, before, strict=True))
    print(
        f"== {op} at nice {nice}: exit {code}, {wall:.2f} s, load {os.getloadavg()[0]:.2f}; "
        f"server CPU {ran / 1e9:.2f} s, run-queue wait {waited / 1e6:.0f} ms, "
        f"involuntary switches {switches}"
    )
    steps = []
    for entry in entries:
        words = text(entry["command"]).split()
        if words and words[0].upper() in STEPS:
            steps.append((int(entry["duration"]), words))
    if not steps:
        print("   no steps in SLOWLOG")
        return
    durations = sorted(d for d, _ in steps)
    over = [d for d in durations if d > 2000]
    print(
        f"   {len(durations)} steps: median {statistics.median(durations) / 1000:.2f}, p99 "
        f"{durations[int(0.99 * len(durations))] / 1000:.2f}, max {durations[-1] / 1000:.2f} ms; "
        f"over 1 ms {sum(d > 1000 for d in durations)}, over 2 ms {len(over)}"
    )
    for duration, words in sorted(steps, key=lambda s: -s[0])[:3]:
        print(f"     {duration / 1000:.2f} ms  {' '.join(words)[:100]}")
    by_size: dict[str, list[int]] = {}
    for duration, words in steps:
        by_size.setdefault(step_size(words), []).append(duration)
    for size, same in sorted(by_size.items(), key=lambda kv: -len(kv[1]))[:3]:
        same.sort()
        print(
            f"     steps of size {size}: {len(same)}, median "
            f"{statistics.median(same) / 1000:.2f}, max {same[-1] / 1000:.2f} ms"
        )


def step_size(words: list[str]) -> str:
    """A step's size: SCAN's COUNT; a Lua step's first number after its cursor (ARGV)."""
    upper = [w.upper() for w in words]
    if "COUNT" in upper:
        return words[upper.index("COUNT") + 1]
    return next((w for w in words[4:] if w.isdigit()), "?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--ops", default="reconcile,sessions", help=f"of {', '.join(OPS)}")
    parser.add_argument("--nice", default="10,idle,10,idle", help="ECHOES_OPS_NICE per run")
    args = parser.parse_args()
    print(load_line())
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
