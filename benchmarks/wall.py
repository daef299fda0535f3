"""Whole-command times: each user-facing gamedata command timed as a process, from start to
exit, against the plan's approach timed the same way in the same run.

Run:  .venv/bin/python benchmarks/wall.py                    # bundled, 22,000 and 220,000 entries
      .venv/bin/python benchmarks/wall.py --worlds bundled,22k --runs 5

Worlds: the bundled gamedata, and 22,000- and 220,000-entry worlds written by
``benchmarks/worldgen.py`` (20,000 items + 2,000 locations, and ten times that) into a
temporary folder. One private redis-server is started here. Each command runs as
``echoes-ops ...`` with ``ECHOES_OPS_CACHE_DIR`` pointing at a private cache folder:

- ``validate``: empty cache (the files are parsed and validated);
- ``validate (cached)``: the world is in the cache;
- ``preload, first load``: empty Redis, empty cache;
- ``preload, unchanged``: Redis already holds the world, empty cache (parse, validate, encode,
  compare the content hash, check every key exists);
- ``preload, unchanged, cached``: Redis holds the world and the cache has it (and preload's
  note of its content hash and keys);
- ``preload, first load, cached world``: empty Redis (a new server, or after a flush), the
  cache has the world: read back from the cache instead of parsed, then encoded and written;
- ``plan: load + HSET loop``: ``benchmarks/plan_load.py``, empty Redis: the files read with
  ``yaml.safe_load`` and one awaited HSET per key, as the plan's game server does.

Audit records go to the Redis stream only: ``DATABASE_URL`` is not passed on (with
PostgreSQL configured, every preload also imports asyncpg and writes its record there, about
30 ms more; ``--database-url URL`` measures that). Each figure is the median of ``--runs`` runs (``--big-runs`` on the 220,000-entry world; the
plan runs once there unless ``--big-plan-runs``) with the peak resident memory of that process
(``os.wait4``'s rusage of the child, which also gives its CPU time: on a busy machine the CPU
column moves less than the wall column). The last column is the plan's median over the row's
(for ``preload, first load``: the same work, end to end). The load average is printed before and after: compare ratios within
one run, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.worldgen import make_world, write_yaml
from echoes_ops.local.redis_server import RedisServer

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORLDS = {"bundled": None, "22k": (20_000, 2_000), "220k": (200_000, 20_000)}


@dataclass
class Timing:
    seconds: list[float]
    cpu: list[float]
    peak_kib: list[int]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu)

    @property
    def peak_mib(self) -> float:
        return max(self.peak_kib) / 1024


def run_once(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall time from start to exit, the child's CPU time (user + system) and its peak RSS
    (KiB)."""
    started = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    error = child.stderr.read().decode() if child.stderr else ""
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {child.returncode}: {error.strip()}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


class Bench:
    def __init__(self, redis_url: str, work: Path, database_url: str | None = None) -> None:
        self.redis = redis.Redis.from_url(redis_url)
        self.redis_url = redis_url
        self.cache = work / "cache"
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("ECHOES_OPS_", "REDIS_")) and k != "DATABASE_URL"
        }
        self.env = {
            **inherited,
            "REDIS_URL": redis_url,
            "ECHOES_OPS_CACHE_DIR": str(self.cache),
            "ECHOES_OPS_OPERATOR": "bench",
            **({"DATABASE_URL": database_url} if database_url else {}),
        }

    def clear_cache(self) -> None:
        shutil.rmtree(self.cache, ignore_errors=True)

    def measure(
        self, cmd: list[str], runs: int, before: list[str], after_first: list[str] | None = None
    ) -> Timing:
        """Run ``cmd`` ``runs`` times; ``before`` (of "flush", "clear") is done before each."""
        timing = Timing([], [], [])
        for _ in range(runs):
            if "flush" in before:
                self.redis.flushall()
            if "clear" in before:
                self.clear_cache()
            seconds, cpu, peak = run_once(cmd, self.env)
            timing.seconds.append(seconds)
            timing.cpu.append(cpu)
            timing.peak_kib.append(peak)
        return timing

    def world(self, folder: Path, runs: int, plan_runs: int) -> list[tuple[str, Timing | None]]:
        ops = [str(BIN / "echoes-ops")]
        validate = [*ops, "validate", "--gamedata", str(folder)]
        preload = [*ops, "preload", "--gamedata", str(folder)]
        rows: list[tuple[str, Timing | None]] = []
        rows.append(("validate", self.measure(validate, runs, ["clear"])))
        rows.append(("validate (cached)", self.measure(validate, runs, [])))
        rows.append(("preload, first load", self.measure(preload, runs, ["flush", "clear"])))
        rows.append(("preload, unchanged", self.measure(preload, runs, ["clear"])))
        run_once(preload, self.env)  # the cache and preload's note are there now
        rows.append(("preload, unchanged, cached", self.measure(preload, runs, [])))
        rows.append(("preload, first load, cached world", self.measure(preload, runs, ["flush"])))
        plan = [
            sys.executable,
            str(REPO / "benchmarks" / "plan_load.py"),
            str(folder),
            self.redis_url,
        ]
        rows.append(
            (
                "plan: load + HSET loop",
                self.measure(plan, plan_runs, ["flush"]) if plan_runs else None,
            )
        )
        return rows


def entries(folder: Path) -> int:
    import yaml

    total = 0
    for path in folder.rglob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        document = yaml.load(text, Loader=loader) or {}
        total += sum(len(v or []) for v in document.values())
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", default="bundled,22k,220k")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--big-runs", type=int, default=3)
    parser.add_argument("--big-plan-runs", type=int, default=1)
    parser.add_argument(
        "--worlds-dir",
        type=Path,
        help="write the generated worlds here and reuse them on later runs (default: a "
        "temporary folder, removed at the end)",
    )
    parser.add_argument(
        "--database-url",
        help="audit to this PostgreSQL as well (as an operator with DATABASE_URL set does)",
    )
    args = parser.parse_args()
    chosen = [w.strip() for w in args.worlds.split(",") if w.strip()]
    load_before = os.getloadavg()
    results: list[tuple[str, int, list[tuple[str, Timing | None]]]] = []
    with tempfile.TemporaryDirectory(prefix="echoes-wall-") as tmp:
        work = Path(tmp)
        server = RedisServer(work / "redis")
        server.start()
        try:
            bench = Bench(server.url, work, args.database_url)
            for name in chosen:
                if WORLDS[name] is None:
                    folder = REPO / "gamedata"
                    count = entries(folder)
                else:
                    items, locations = WORLDS[name]
                    folder = (args.worlds_dir or work) / name
                    if not (folder / "items.yaml").exists():
                        write_yaml(make_world(items, locations), folder)
                    count = items + locations
                big = count > 100_000
                runs = args.big_runs if big else args.runs
                plan_runs = args.big_plan_runs if big else args.runs
                results.append((name, count, bench.world(folder, runs, plan_runs)))
                if args.worlds_dir is None and folder != REPO / "gamedata":
                    shutil.rmtree(folder)
        finally:
            server.stop()
    load_after = os.getloadavg()
    print(
        f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}; "
        f"after: {' '.join(f'{x:.2f}' for x in load_after)}; {os.cpu_count()} cores; "
        f"audit to {'PostgreSQL and ' if args.database_url else ''}the Redis stream"
    )
    print()
    print("| world | command | wall (median) | CPU (median) | runs | peak RSS | plan / this |")
    print("|---|---|---|---|---|---|---|")
    for name, count, rows in results:
        plan = dict(rows).get("plan: load + HSET loop")
        for command, timing in rows:
            if timing is None:
                print(f"| {name} ({count:,}) | {command} | not run | | 0 | | |")
                continue
            ratio = ""
            if plan is not None and command != "plan: load + HSET loop":
                ratio = f"{plan.median / timing.median:.1f}x"
            print(
                f"| {name} ({count:,}) | {command} | {timing.median:.3f} s | "
                f"{timing.median_cpu:.3f} s | {len(timing.seconds)} | {timing.peak_mib:.0f} MiB | "
                f"{ratio} |"
            )


if __name__ == "__main__":
    main()
