"""Game-latency probe: what each echoes-ops operation costs the game, as the game feels it.

Run:  .venv/bin/python benchmarks/impact.py            # 200,000 sessions in 1,000,000 keys
      .venv/bin/python benchmarks/impact.py --small    # 20,000 / 100,000: proves it runs
      .venv/bin/python benchmarks/impact.py --only reconcile,stats --rate 500
      .venv/bin/python benchmarks/impact.py --only stats --wrap 'env ECHOES_OPS_NICE=0'
      .venv/bin/python benchmarks/impact.py --repeat 3   # the figures to quote (below)
      .venv/bin/python benchmarks/impact.py --only stats --realtime plain,rt,rt+probe

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

``--repeat N``: one window's p99 moves by milliseconds from run to run for the same code
(the probe's p99 over a few seconds is its few worst calls, and one hiccup of the machine
makes them), so one pass says little near the 1 ms line. With N > 1 every operation runs N
times, in rounds (the operations of a round in turn, so a quiet or busy minute of the
machine touches all of them alike), each window just after an idle window of its own as
long as the operation took the time before (so both p99 come from about as many calls):
each repetition's Δp99 is against the probe's p99 of the moments just before it. A summary
per operation follows: the median of its N Δp99 (the one figure to quote), their min and
max, and the pooled Δp99 (all its windows' calls against all their idle windows'). Each
operation starts from the same tier every time (``Op.setup``, outside the windows: the first
load from no static data, the 10-entry changes from the world they change, warmup with its
characters gone from Redis), so repetitions and ``--wrap`` rows do the same work.

``--realtime plain,rt,rt+probe``: every operation under each scheduling model, in the same
run, each window against an idle window of the same model: as the machine schedules, with
redis-server at SCHED_RR (a CPU whenever it needs one, as on a host of its own), and with the
probe at SCHED_RR too (a game worker on its own host). What is left of a Δp99 under
``rt+probe`` is the server's work for the operation; the rest was contention for this
machine's CPUs (docs/benchmarks/impact.md, "Contention or server work").

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
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from impact_ops import (
    Op,
    cli,
    dashboard_polls,
    loaded,
    routine_change,
    run_cli,
    unwarm,
    wipe_static,
)
from impact_probe import (
    PROBE_WORKER,
    SLOWLOG_LEN,
    longest_commands,
    probe_process,
    runqueue_waits,
    server_cpu,
    slowlog_reset,
)
from impact_report import STALL_MS, Row, report, report_summary
from inspect_scale import populate
from worldgen import make_world, write_yaml

from benchmarks.machine import load_line
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
# --repeat: an operation's idle window lasts as long as the operation did the time before
# (at least --idle-seconds), so both p99 are taken over about as many probe calls
IDLE_MAX_S = 30.0


async def server_stall(r: Any) -> tuple[float, str]:
    """The longest latency event (LATENCY LATEST: a command, an expire cycle, a fork...)
    since the last LATENCY RESET, in ms, with its event name; (0, "-") when none."""
    rows = await r.execute_command("LATENCY", "LATEST")
    events = [(float(row[3]), str(row[0])) for row in rows or []]
    return max(events, default=(0.0, "-"))


# -- the run -------------------------------------------------------------------------------


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


def operations(args: argparse.Namespace, work: Path, url: str, env: dict[str, str]) -> list[Op]:
    world = make_world(args.items, args.world_locations)
    first, changed = work / "world", work / "world-changed"
    write_yaml(world, first)
    routine_change(world, changed, 10)
    ops: list[Op] = [
        Op(
            "preload, first load",
            lambda: run_cli(cli("preload", "--gamedata", str(first), "-y"), env),
            wipe_static,
        ),
        Op(
            "preload, 10 entries changed",
            lambda: run_cli(cli("preload", "--gamedata", str(changed), "-y"), env),
            loaded(first, env),
        ),
        # the stepped writer for a live tier (#16 item 2): the 10 entries changed back, then
        # every key rewritten (as much as a first load writes), each step inside the budget
        Op(
            "preload --online, 10 changed",
            lambda: run_cli(cli("preload", "--online", "--gamedata", str(first), "-y"), env),
            loaded(changed, env),
        ),
        Op(
            "preload --online --force",
            lambda: run_cli(
                cli("preload", "--online", "--force", "--gamedata", str(first), "-y"), env
            ),
        ),
    ]
    if args.characters:
        ops.append(
            Op(
                f"warmup ({args.characters:,} characters)",
                lambda: run_cli(
                    cli("warmup", "--what", "sessions,inventories", "--active-within", "600"), env
                ),
                unwarm(args.characters),
            )
        )
    ops += [
        Op(
            "sessions list --stale 300",
            lambda: run_cli(cli("sessions", "list", "--stale", "300", "--json"), env),
        ),
        Op("reconcile (dry run)", lambda: run_cli(cli("reconcile", "--json"), env)),
        Op("stats", lambda: run_cli(cli("stats", "--json"), env)),
        Op("doctor", lambda: run_cli(cli("doctor", "--json", "--gamedata", str(changed)), env)),
        Op("dashboard polls", lambda: dashboard_polls(url, args.poll_cycles)),
        Op(
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
        ops = [op for op in ops if any(op.label.startswith(w) for w in wanted)]
    if args.wrap:  # an experiment: each CLI operation again behind each command prefix
        ops = [
            Op(f"{op.label} [{wrap}]" if wrap else op.label, _wrapped(op.run, env, wrap), op.setup)
            for op in ops
            for wrap in ["", *args.wrap]
            if not wrap or not op.label.startswith("dashboard")  # in-process: nothing to wrap
        ]
    models = realtime_models(args.realtime)
    if models != ["plain"]:  # the same operations under each scheduling model
        ops = [
            dataclasses.replace(op, label=f"{op.label} [{model}]", model=model)
            if model != "plain"
            else op
            for op in ops
            for model in models
        ]
    return ops


# --realtime: the processes each scheduling model runs at SCHED_RR (0: the probe, 1: the server)
MODELS = {"plain": (), "rt": (1,), "rt+probe": (0, 1)}


def realtime_models(text: str) -> list[str]:
    models = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise SystemExit(f"--realtime: models are {', '.join(MODELS)} (got {text!r})")
    return models


def scheduling(pids: tuple[int, int], model: str) -> None:
    """The probe and redis-server at SCHED_RR as ``model`` says (such a process has a CPU
    whenever it is runnable, as on a host of its own; needs CAP_SYS_NICE), the others back
    at the usual SCHED_OTHER."""
    for i, pid in enumerate(pids):
        if i in MODELS[model]:
            os.sched_setscheduler(pid, os.SCHED_RR, os.sched_param(1))
        else:
            os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))


class Windows:
    """Measures windows of the probe's calls against one server (see :meth:`window`)."""

    def __init__(self, r: Any, pids: tuple[int, int], idle_seconds: float) -> None:
        self.r = r
        self.pids = pids
        self.idle_seconds = idle_seconds
        # (label, start, end, longest, server CPU, op CPU, run-queue waits, stall, round, idle)
        self.taken: list[tuple[Any, ...]] = []

    async def window(
        self, op: Op | None, round_: int, idle: int | None, seconds: float = 0.0
    ) -> int:
        """One window (``op`` None: the probe alone for ``seconds``, at least
        ``idle_seconds``), opened ``SETTLE_S`` after the SLOWLOG's reset; its index.
        ``idle``: the index of the idle window it is compared with."""
        r = self.r
        await slowlog_reset(r)
        await asyncio.sleep(SETTLE_S)  # the probe catches up on the reset's stall
        await r.execute_command("LATENCY", "RESET")
        started, cpu, waits = time.time(), await server_cpu(r), runqueue_waits(self.pids)
        if op is None:
            await asyncio.sleep(max(seconds, self.idle_seconds))  # the probe plays alone
            op_cpu = 0.0
        else:
            op_cpu = await asyncio.to_thread(op.run)
        ended = time.time()
        stall = await server_stall(r)  # before the SLOWLOG read below adds its own
        spent = await server_cpu(r) - cpu
        waited = tuple(b - a for a, b in zip(waits, runqueue_waits(self.pids), strict=True))
        longest = (0.0, "-", 0, 0)
        if op:
            top = await longest_commands(r, {PROBE_WORKER})
            longest = (top.ms, top.name, top.over_budget, top.count)
        label = op.label if op else "idle (probe alone)"
        self.taken.append(
            (label, started, ended, longest, spent, op_cpu, waited, stall, round_, idle)
        )
        print(f"  {label} #{round_}: {ended - started:.1f} s  ({load_line()})", flush=True)
        return len(self.taken) - 1

    def rows(self, samples: list[tuple[float, float, float]]) -> list[Row]:
        rows: list[Row] = []
        for label, start, end, top, used, op_cpu, waited, stall, round_, idle in self.taken:
            within = [(ms, call) for at, ms, call in samples if start <= at <= end]
            rows.append(
                Row(
                    label,
                    [ms for ms, _ in within],
                    [call for _, call in within],
                    top[0],
                    top[1],
                    top[2],
                    top[3],
                    end - start,
                    used,
                    op_cpu,
                    waited,
                    stall,
                    idle=None if idle is None else rows[idle],
                    round=round_,
                )
            )
        return rows


async def measure(args: argparse.Namespace, work: Path, url: str, env: dict[str, str]) -> list[Row]:
    """One idle window, then each operation's (``--repeat 1``); or ``--repeat N`` rounds in
    each of which every operation's window follows an idle window of its own, so that each
    is compared with the probe's p99 of the minutes around it."""
    ops = operations(args, work, url, env)
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    receive, send = ctx.Pipe(duplex=False)
    probe = ctx.Process(target=probe_process, args=(url, args.rate, ready, stop, send))
    probe.start()
    if not ready.wait(60):
        raise SystemExit("the probe did not start")
    async with open_redis(Settings.from_dsn(url).redis_target(), socket_timeout=300) as r:
        pids = (probe.pid or 0, int((await r.info("server"))["process_id"]))
        windows = Windows(r, pids, args.idle_seconds)
        # each operation after an idle window of its own with --repeat, and when the server's
        # scheduling changes between operations (each compared with the same scheduling)
        models = realtime_models(args.realtime)
        own_idle = args.repeat > 1 or len(models) > 1
        scheduling(pids, models[0])
        idle = None if own_idle else await windows.window(None, 1, None)
        took: dict[str, float] = {}  # each operation's last wall time
        for round_ in range(1, args.repeat + 1):
            for op in ops:
                if op.setup is not None:
                    await op.setup(r)
                paired = idle
                if len(models) > 1:
                    scheduling(pids, op.model)
                if own_idle:
                    # as long as the operation took last time (a p99 of as many calls),
                    # IDLE_MAX_S at most
                    length = min(took.get(op.label, 0.0), IDLE_MAX_S)
                    paired = await windows.window(None, round_, None, length)
                at = await windows.window(op, round_, paired)
                took[op.label] = windows.taken[at][2] - windows.taken[at][1]
        scheduling(pids, "plain")
    stop.set()
    samples = receive.recv()
    probe.join(30)
    return windows.rows(samples)


def _wrapped(run: Any, env: dict[str, str], wrap: str) -> Any:
    def go() -> float:
        env["ECHOES_IMPACT_WRAP"] = wrap
        try:
            return float(run())
        finally:
            env["ECHOES_IMPACT_WRAP"] = ""

    return go


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--small",
        action="store_true",
        help="a small tier that runs in a minute (sizes given as options are kept)",
    )
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
        "--repeat",
        type=int,
        default=1,
        help="run every operation N times, each window after an idle window of its own, and "
        "report per operation the median of its Δp99 against them and their spread",
    )
    parser.add_argument(
        "--wrap",
        action="append",
        default=[],
        help="experiment: run each CLI operation again behind this command prefix "
        "(e.g. --wrap 'nice -n 19' --wrap 'taskset -c 1'), same run, rows side by side",
    )
    parser.add_argument(
        "--realtime",
        default="plain",
        metavar="MODELS",
        help="scheduling models, comma-separated, every operation under each in the same run "
        "(each against an idle window of the same model): plain (as the machine schedules), rt "
        "(redis-server at SCHED_RR: a CPU whenever it needs one, as on a host of its own), "
        "rt+probe (the probe too, as a game worker on its own host). What is left of a Δp99 "
        "under rt+probe is the server's work for the operation; the rest, contention for this "
        "machine's CPUs. Needs CAP_SYS_NICE",
    )
    args = parser.parse_args()
    if args.small:  # its sizes, except those given on the command line
        small = {
            "sessions": 20_000,
            "keys": 100_000,
            "characters": 2_000,
            "items": 2_000,
            "world_locations": 200,
            "locations": 100,
            "idle_seconds": 3.0,
            "poll_cycles": 2,
            "sim_players": 200,
            "sim_seconds": 3,
        }
        given = {a.split("=")[0].removeprefix("--").replace("-", "_") for a in sys.argv[1:]}
        for name, value in small.items():
            if name not in given:
                setattr(args, name, value)
    print(load_line())
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
            report_summary(rows)
        finally:
            server.stop()
            if pg is not None:
                pg.destroy()
    print(load_line())


if __name__ == "__main__":
    main()
