"""Game-latency probe: what each echoes-ops operation costs the game, as the game feels it.

Run:  .venv/bin/python benchmarks/impact.py            # 200,000 sessions in 1,000,000 keys
      .venv/bin/python benchmarks/impact.py --small    # 20,000 / 100,000: proves it runs
      .venv/bin/python benchmarks/impact.py --only reconcile,stats --rate 500
      .venv/bin/python benchmarks/impact.py --only stats --wrap 'env ECHOES_OPS_NICE=0'

Builds, in a private redis-server (and a private PostgreSQL for warmup), a tier of SESSIONS
session hashes (5% stale) with presence sets, filler keys up to KEYS keys, and CHARACTERS
characters with inventories in PostgreSQL (ids apart from the live sessions, so warmup has
work to do). A probe process then plays game traffic through the reference runtime
(:class:`echoes_ops.runtime.tier.Tier`) at a fixed rate: heartbeats (the session's Lua
touch), moves (the MULTI of presence SREM/SADD and the session HSET/EXPIRE) and location
PUBLISHes, one after another on a schedule. Each call's latency is measured from the time
it was due, so a stall delays the calls behind it and they count it too.

In one run: the probe alone (idle baseline), then the probe while each operation runs as a
separate process (the CLI command an operator types, or the dashboard's polls through the
same source the dashboard uses): preload (first load, then a routine change of 10 entries;
then `--online`: the 10 entries changed back, and `--force` rewriting every key),
warmup (with inventories), ``sessions list --stale 300``, ``reconcile`` (dry run), ``stats``,
``doctor``, the dashboard's polls, and ``simulate`` as the reference load. Per operation it
prints the probe's p50/p99/max, the p99 against the idle p99, and the longest command on the
server (SLOWLOG, threshold 0, reset before each operation; the probe's own commands and the
simulated workers' are told apart by client name), and how many of ours took over 1 ms.

To tell why the probe slows down, each row also has: the probe calls' own round trips
(``call p99``; the rest of the p99 is lateness behind earlier calls), redis-server's and the
operation's CPU over the operation's wall time, and the share of it the probe and the server
spent runnable but waiting for a CPU (``/proc/PID/schedstat``). ``--wrap PREFIX`` (repeatable)
runs every CLI operation again behind a command prefix in the same run: ``nice -n 19``,
``taskset -c 1``, ``env ECHOES_OPS_NICE=0`` (the CLI at full CPU priority), ``env
ECHOES_OPS_WALK_DUTY=1`` (walks unpaced), or ``env PYTHONPATH=DIR`` with an older
``echoes_ops`` package in DIR (``git archive REV echoes_ops | tar -x -C DIR``) for a
before/after in one run.

The machine's load average is printed at the start, after each operation and at the end: a
loaded machine inflates every figure, the ratios to the idle baseline of the same run survive
it best.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import multiprocessing as mp
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from impact_probe import (
    BUDGET_MS,
    PROBE_WORKER,
    SLOWLOG_LEN,
    longest_commands,
    probe_process,
    runqueue_waits,
    server_cpu,
    slowlog_reset,
)
from inspect_scale import populate
from worldgen import make_world, write_yaml

from echoes_ops.client.connect import open_redis
from echoes_ops.config import Settings
from echoes_ops.local.redis_server import RedisServer

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LIVE_FIRST_ID = 1_000_001


# Between operations the benchmark reads and resets a SLOWLOG of up to SLOWLOG_LEN entries
# (threshold 0 logs scripts' inner calls too): that holds the server for up to ~0.4 s
# (LATENCY's "command" event at 141-422 ms in a run at 08:20), and the probe's calls queued
# behind it are still catching up when the next operation starts, which charged the
# benchmark's own bookkeeping to that operation (reconcile +82 ms, stats +72 ms). The window
# opens once the probe has had SETTLE_S to catch up; calls due before it are not counted.
SETTLE_S = 1.0
STALL_MS = 10  # latency-monitor-threshold: server events at least this long are reported


async def server_stall(r: Any) -> tuple[float, str]:
    """The longest latency event (LATENCY LATEST: a command, an expire cycle, a fork...)
    since the last LATENCY RESET, in ms, with its event name; (0, "-") when none."""
    rows = await r.execute_command("LATENCY", "LATEST")
    events = [(float(row[3]), str(row[0])) for row in rows or []]
    return max(events, default=(0.0, "-"))


@dataclasses.dataclass
class Row:
    label: str
    samples: list[float]  # probe latencies, ms (from the time each call was due)
    calls: list[float]  # the same calls' own round trips, ms (lateness left out)
    longest_ms: float  # longest command of the operation (not the probe's)
    longest_name: str
    over_budget: int  # the operation's commands over BUDGET_MS
    commands: int
    seconds: float
    server_cpu: float  # redis-server's main-thread CPU seconds during the operation
    op_cpu: float  # the operation's own process CPU seconds
    waits: tuple[float, float]  # seconds the probe / redis-server waited for a CPU (runqueue)
    stall: tuple[float, str] = (0.0, "-")  # the server's longest latency event (LATENCY), ms


# -- the operations ------------------------------------------------------------------------


def cli(*args: str) -> list[str]:
    return [str(BIN / "echoes-ops"), *args]


def run_cli(cmd: list[str], env: dict[str, str]) -> float:
    """Run ``cmd`` (behind ``ECHOES_IMPACT_WRAP``, an experiment's command prefix such as
    ``nice -n 19`` or ``taskset -c 1``); return the CPU seconds it used."""
    wrap = env.get("ECHOES_IMPACT_WRAP", "").split()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([*wrap, *cmd], env=env, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):  # doctor exits 1 on a failed check: still measured
        raise SystemExit(f"{' '.join(cmd[1:])} exited {done.returncode}: {done.stderr.strip()}")
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def dashboard_polls(url: str, cycles: int) -> float:
    """The dashboard's polls (snapshot, tier census, drift), ``cycles`` times, through the
    source the dashboard's poller calls; the CPU seconds this thread used."""
    from echoes_ops.tui.source import RedisSource

    async def go() -> None:
        source = RedisSource(Settings.from_dsn(url), read_only=True)
        try:
            await source.open()
            for _ in range(cycles):
                await source.snapshot()
                await source.tier()
                await source.drift()
        finally:
            await source.close()

    started = time.thread_time()
    asyncio.run(go())
    return time.thread_time() - started


def routine_change(world: Any, folder: Path, entries: int) -> None:
    """The same world with ``entries`` items renamed, written to ``folder``."""
    items = dict(world.items)
    for item_id in list(items)[:entries]:
        items[item_id] = dataclasses.replace(items[item_id], name=items[item_id].name + " (mk2)")
    write_yaml(dataclasses.replace(world, items=items), folder)


# -- the run -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} CPUs)"


async def build_tier(url: str, args: argparse.Namespace) -> None:
    async with open_redis(Settings.from_dsn(url).redis_target(), socket_timeout=300) as r:
        started = time.perf_counter()
        # live sessions from id 1,000,001: warmup's characters (1..N) have no fresher session
        await populate(r, args.sessions, args.keys, args.locations, first_id=LIVE_FIRST_ID)
        await r.config_set("slowlog-log-slower-than", 0)
        await r.config_set("slowlog-max-len", SLOWLOG_LEN)
        await r.config_set("latency-monitor-threshold", STALL_MS)
        print(f"tier: {await r.dbsize():,} keys in {time.perf_counter() - started:.1f} s")


async def seed_postgres(dsn: str, characters: int) -> None:
    from echoes_ops.gamedata import load_gamedata
    from echoes_ops.local.demo import seed_demo

    data = load_gamedata(REPO / "gamedata")
    started = time.perf_counter()
    summary = await seed_demo(
        dsn,
        location_ids=sorted(data.locations),
        item_ids=sorted(data.items),
        characters=characters,
    )
    print(
        f"postgresql: {summary.characters:,} characters, {summary.inventory_rows:,} inventory "
        f"rows in {time.perf_counter() - started:.1f} s"
    )


def operations(
    args: argparse.Namespace, work: Path, url: str, env: dict[str, str]
) -> list[tuple[str, Any]]:
    world = make_world(args.items, args.world_locations)
    first, changed = work / "world", work / "world-changed"
    write_yaml(world, first)
    routine_change(world, changed, 10)
    ops: list[tuple[str, Any]] = [
        (
            "preload, first load",
            lambda: run_cli(cli("preload", "--gamedata", str(first), "-y"), env),
        ),
        (
            "preload, 10 entries changed",
            lambda: run_cli(cli("preload", "--gamedata", str(changed), "-y"), env),
        ),
        # the stepped writer for a live tier (#16 item 2): the 10 entries changed back, then
        # every key rewritten (as much as a first load writes), each step inside the budget
        (
            "preload --online, 10 changed",
            lambda: run_cli(cli("preload", "--online", "--gamedata", str(first), "-y"), env),
        ),
        (
            "preload --online --force",
            lambda: run_cli(
                cli("preload", "--online", "--force", "--gamedata", str(first), "-y"), env
            ),
        ),
    ]
    if args.characters:
        ops.append(
            (
                f"warmup ({args.characters:,} characters)",
                lambda: run_cli(
                    cli("warmup", "--what", "sessions,inventories", "--active-within", "600"), env
                ),
            )
        )
    ops += [
        (
            "sessions list --stale 300",
            lambda: run_cli(cli("sessions", "list", "--stale", "300", "--json"), env),
        ),
        ("reconcile (dry run)", lambda: run_cli(cli("reconcile", "--json"), env)),
        ("stats", lambda: run_cli(cli("stats", "--json"), env)),
        ("doctor", lambda: run_cli(cli("doctor", "--json", "--gamedata", str(changed)), env)),
        ("dashboard polls", lambda: dashboard_polls(url, args.poll_cycles)),
        (
            f"simulate ({args.sim_players} players)",
            lambda: run_cli(
                cli(
                    "simulate",
                    "--workers",
                    "2",
                    "--players",
                    str(args.sim_players),
                    "--duration",
                    str(args.sim_seconds),
                    "--gamedata",
                    str(REPO / "gamedata"),
                    "--yes",
                    "--json",
                ),
                env,
            ),
        ),
    ]
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        ops = [op for op in ops if any(op[0].startswith(w) for w in wanted)]
    return ops


async def measure(args: argparse.Namespace, work: Path, url: str, env: dict[str, str]) -> list[Row]:
    ops = operations(args, work, url, env)
    if args.wrap:  # an experiment: each CLI operation again behind each command prefix
        ops = [
            (f"{label} [{wrap}]" if wrap else label, _wrapped(run, env, wrap))
            for label, run in ops
            for wrap in ["", *args.wrap]
            if not wrap or not label.startswith("dashboard")  # in-process: nothing to wrap
        ]
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    receive, send = ctx.Pipe(duplex=False)
    probe = ctx.Process(target=probe_process, args=(url, args.rate, ready, stop, send))
    probe.start()
    if not ready.wait(60):
        raise SystemExit("the probe did not start")
    windows: list[Any] = []
    exclude = {PROBE_WORKER}
    async with open_redis(Settings.from_dsn(url).redis_target(), socket_timeout=300) as r:
        pids = (probe.pid or 0, int((await r.info("server"))["process_id"]))
        await slowlog_reset(r)
        started, cpu, waits = time.time(), await server_cpu(r), runqueue_waits(pids)
        time.sleep(args.idle_seconds)  # the probe plays alone
        spent = await server_cpu(r) - cpu
        waited = tuple(b - a for a, b in zip(waits, runqueue_waits(pids), strict=True))
        windows.append(
            (
                "idle (probe alone)",
                started,
                time.time(),
                (0.0, "-", 0, 0),
                spent,
                0,
                waited,
                (0.0, "-"),
            )
        )
        for label, run in ops:
            await slowlog_reset(r)
            await asyncio.sleep(SETTLE_S)  # the probe catches up on the reset's stall
            await r.execute_command("LATENCY", "RESET")
            started, cpu, waits = time.time(), await server_cpu(r), runqueue_waits(pids)
            op_cpu = await asyncio.to_thread(run)
            ended = time.time()
            stall = await server_stall(r)  # before the SLOWLOG read below adds its own
            spent = await server_cpu(r) - cpu
            waited = tuple(b - a for a, b in zip(waits, runqueue_waits(pids), strict=True))
            longest = await longest_commands(r, exclude)
            windows.append((label, started, ended, longest, spent, op_cpu, waited, stall))
            print(f"  {label}: {ended - started:.1f} s  ({load()})", flush=True)
    stop.set()
    samples = receive.recv()
    probe.join(30)
    rows = []
    for label, start, end, (top, name, over, count), used, op_cpu, waited, stall in windows:
        within = [(ms, call) for at, ms, call in samples if start <= at <= end]
        rows.append(
            Row(
                label,
                [ms for ms, _ in within],
                [call for _, call in within],
                top,
                name,
                over,
                count,
                end - start,
                used,
                op_cpu,
                waited,
                stall,
            )
        )
    return rows


def _wrapped(run: Any, env: dict[str, str], wrap: str) -> Any:
    def go() -> float:
        env["ECHOES_IMPACT_WRAP"] = wrap
        try:
            return float(run())
        finally:
            env["ECHOES_IMPACT_WRAP"] = ""

    return go


def report(rows: list[Row]) -> None:
    idle_p99 = percentile(rows[0].samples, 0.99)
    print(
        f"\n{'operation':<34}{'secs':>6}{'calls':>6}{'p50 ms':>7}{'p99 ms':>8}{'Δp99':>8}"
        f"{'max ms':>8}{'call p99':>9}{'srv%':>5}{'op%':>5}{'rq p':>5}{'rq s':>5}"
        f"{'longest cmd':>16}{'>1ms':>6}{'srv stall':>18}"
    )
    for row in rows:
        p50 = statistics.median(row.samples) if row.samples else float("nan")
        p99 = percentile(row.samples, 0.99)
        top = max(row.samples) if row.samples else float("nan")
        longest = f"{row.longest_ms:.2f} {row.longest_name}" if row.commands else "-"
        print(
            f"{row.label:<34}{row.seconds:>6.1f}{len(row.samples):>6}{p50:>7.2f}{p99:>8.2f}"
            f"{p99 - idle_p99:>+8.2f}{top:>8.2f}{percentile(row.calls, 0.99):>9.2f}"
            f"{100 * row.server_cpu / row.seconds:>5.0f}{100 * row.op_cpu / row.seconds:>5.0f}"
            f"{100 * row.waits[0] / row.seconds:>5.1f}{100 * row.waits[1] / row.seconds:>5.1f}"
            f"{longest:>16}{row.over_budget:>6}"
            f"{(f'{row.stall[0]:.0f} {row.stall[1]}' if row.stall[0] else '-'):>18}"
        )
    print(
        f"\nbudget: the probe's p99 within {BUDGET_MS:.0f} ms of idle (Δp99), every command of "
        "ours at most 1 ms p99 / 2 ms max (longest cmd, >1ms counts ours over 1 ms).\n"
        "p50/p99/max count from the time each probe call was due (a stall delays the calls "
        "behind it); call p99 is the calls' own round trips. srv% is redis-server's CPU, op% "
        "the operation's process CPU, rq p / rq s the share of the wall time the probe / "
        "redis-server spent runnable but waiting for a CPU (schedstat), in %. srv stall is "
        f"the server's longest latency event of at least {STALL_MS} ms (LATENCY LATEST: a "
        "command, inner script calls included, an expire cycle, ...).\n"
        "simulate is the reference load: the game itself (its workers' commands), not an "
        "echoes-ops operation. The first-load and --force preload's atomic EXEC is the "
        "documented exception to the budget (preload --online is the stepped writer for a "
        "live tier)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a small tier that runs in a minute")
    parser.add_argument("--sessions", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--locations", type=int, default=500)
    parser.add_argument("--characters", type=int, default=100_000, help="0: no warmup row")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--world-locations", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=300.0, help="probe calls per second")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--poll-cycles", type=int, default=5)
    parser.add_argument("--sim-players", type=int, default=1000)
    parser.add_argument("--sim-seconds", type=int, default=15)
    parser.add_argument("--only", help="comma-separated operation prefixes (idle always runs)")
    parser.add_argument(
        "--wrap",
        action="append",
        default=[],
        help="experiment: run each CLI operation again behind this command prefix "
        "(e.g. --wrap 'nice -n 19' --wrap 'taskset -c 1'), same run, rows side by side",
    )
    args = parser.parse_args()
    if args.small:
        args.sessions, args.keys, args.characters = 20_000, 100_000, 2_000
        args.items, args.world_locations, args.locations = 2_000, 200, 100
        args.idle_seconds, args.poll_cycles = 3.0, 2
        args.sim_players, args.sim_seconds = 200, 3
    print(load())
    with tempfile.TemporaryDirectory(prefix="echoes-impact-") as tmp:
        work = Path(tmp)
        server = RedisServer(work / "redis", extra_args=["--enable-debug-command", "yes"])
        server.start()
        pg = None
        try:
            env = {
                **{
                    k: v
                    for k, v in os.environ.items()
                    if not k.startswith(("ECHOES_OPS_", "REDIS_", "DATABASE_"))
                },
                "REDIS_URL": server.url,
                "ECHOES_OPS_CACHE_DIR": str(work / "cache"),
                "ECHOES_OPS_OPERATOR": "impact-bench",
            }
            if args.characters:
                from echoes_ops.local.postgres_server import PostgresServer

                pg = PostgresServer(work / "pg")
                pg.start()
                asyncio.run(seed_postgres(pg.url, args.characters))
                env["DATABASE_URL"] = pg.url
            asyncio.run(build_tier(server.url, args))
            rows = asyncio.run(measure(args, work, server.url, env))
            report(rows)
        finally:
            server.stop()
            if pg is not None:
                pg.destroy()
    print(load())


if __name__ == "__main__":
    main()
